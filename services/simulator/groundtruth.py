"""The hidden reward model of a scenario, and its oracle.

`GroundTruth` answers, for an audience segment and a creative's attributes, the true click
probability and the expected reward under the campaign's reward definition. The oracle knows
the best catalog creative and the best creative of the whole space per segment, so the
simulator can score every decision (regret) without the services ever seeing any of this.
With slates (`audience.slate` > 1, film) a slot's reward also depends on what it was shown
beside: `slate_reward` (the viewer model and the definition are in slates.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.common.attribute_kinds import circular_distance
from services.common.campaign import (
    CategoricalAttribute,
    CircularAttribute,
    ColorAttribute,
    NumericAttribute,
    SequenceAttribute,
)
from services.simulator.feedback import feedback_for
from services.simulator.scenario import Scenario, TruthEffect
from services.simulator.slates import vote_chance

__all__ = ["Best", "GroundTruth", "hex_to_rgb", "rgb_to_hex"]

_ENUMERATE_LIMIT = 50_000


def hex_to_rgb(color: str) -> tuple[float, float, float]:
    c = color.lstrip("#")
    return (int(c[0:2], 16) / 255, int(c[2:4], 16) / 255, int(c[4:6], 16) / 255)


def rgb_to_hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * min(1.0, max(0.0, x))):02x}" for x in rgb)


@dataclass(frozen=True)
class Best:
    """A creative (attribute assignment) and its true click probability / expected reward."""

    attributes: dict[str, Any]
    p_click: float
    reward: float
    creative_id: str | None = None


class GroundTruth:
    """P(click | segment, creative) = sigmoid(base + effects + interactions), per scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.spec = scenario.campaign
        self._attrs = self.spec.attribute_map()
        self._segments = [s.name for s in scenario.audience.segments]
        w = self.spec.reward.effective_weights()
        conv = scenario.truth.conversion
        self._conv_rate = conv.rate if conv else 0.0
        self._conv_value = conv.value_mean if conv else 0.0
        # expected reward per click: click weight + conversion weight*P(conv|click) + value
        self._reward_per_click = w.click + self._conv_rate * (
            w.conversion + w.value * self._conv_value
        )
        # campaigns rewarded by their domain's feedback events: E[reward | engaged or not]
        self.feedback = (
            feedback_for(self.spec.domain, self.spec.reward.events)
            if self.spec.reward.kind == "events"
            else None
        )
        if self.feedback is not None:
            self._engaged, self._idle = self.feedback.expected(True), self.feedback.expected(False)
            # an engaged slot of a slate whose vote went elsewhere (slates.py)
            self._outvoted = (
                self.feedback.expected(True, voted=False)
                if scenario.audience.slate > 1
                else self._engaged
            )
        self._best_catalog: dict[tuple[str, tuple[float, ...]], Best] = {}
        self._optimum: dict[tuple[str, tuple[float, ...]], Best] = {}

    @property
    def segments(self) -> list[str]:
        return list(self._segments)

    # -- the model -------------------------------------------------------------------------
    def logit(self, segment: str, attributes: Mapping[str, Any], at_s: float = 0.0) -> float:
        """The true logit of P(click), `at_s` seconds into the run (drift changes it)."""
        truth = self.scenario.truth
        seg = truth.segments.get(segment)
        z = seg.base_logit if seg and seg.base_logit is not None else truth.base_logit
        for eff in truth.effects:
            z += self._effect(eff, segment, attributes.get(eff.attribute))
        for inter in truth.interactions:
            if inter.segments is not None and segment not in inter.segments:
                continue
            if all(attributes.get(k) == v for k, v in inter.when.items()):
                z += inter.logit
        for drift in truth.drift:
            if drift.segments is not None and segment not in drift.segments:
                continue
            if all(attributes.get(k) == v for k, v in drift.when.items()):
                z += drift.logit * drift.share(at_s)
        return z

    def p_click(self, segment: str, attributes: Mapping[str, Any], at_s: float = 0.0) -> float:
        z = self.logit(segment, attributes, at_s)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def expected_reward(
        self, segment: str, attributes: Mapping[str, Any], at_s: float = 0.0
    ) -> float:
        """E[reward] of showing this creative once, by the campaign's reward definition
        (for `events` rewards: the domain's mapping of engaged and idle reactions). A variant
        shown alone; a slot of a slate scores by `slate_reward`."""
        p = self.p_click(segment, attributes, at_s)
        if self.feedback is not None:
            return self._idle + p * (self._engaged - self._idle)
        return p * self._reward_per_click

    def slate_reward(self, p: float, opponents: Sequence[float]) -> float:
        """E[reward] of a slot of a slate that engages with probability `p`, shown beside
        slots engaging with `opponents` (the other shown slots; empty: no vote to win)."""
        if self.feedback is None:
            raise ValueError("slates need a campaign rewarded by its domain's events")
        won = vote_chance(p, opponents)
        engaged = won * self._engaged + (1 - won) * self._outvoted
        return self._idle + p * (engaged - self._idle)

    def _phase(self, at_s: float) -> tuple[float, ...]:
        """Where each drift stands (to 5 %): the oracle is cached per phase."""
        return tuple(round(d.share(at_s) * 20) / 20 for d in self.scenario.truth.drift)

    @property
    def conversion_rate(self) -> float:
        return self._conv_rate

    def _effect(self, eff: TruthEffect, segment: str, value: Any) -> float:
        over = eff.segments.get(segment)
        attr = self._attrs[eff.attribute]
        weight = over.weight if over and over.weight is not None else eff.weight
        if isinstance(attr, CategoricalAttribute):
            if over and over.values and value in over.values:
                return over.values[value]
            return eff.values.get(value, 0.0) if isinstance(value, str) else 0.0
        if isinstance(attr, NumericAttribute):
            x = _as_float(value)
            if x is None:
                return 0.0
            peak = over.peak if over and over.peak is not None else eff.peak
            assert peak is not None
            return -weight * ((x - peak) / (attr.max - attr.min)) ** 2
        if isinstance(attr, CircularAttribute):
            x = _as_float(value)
            peak = over.peak if over and over.peak is not None else eff.peak
            if x is None or peak is None:
                return 0.0
            return -weight * circular_distance(x, peak, attr.min, attr.max) ** 2
        if isinstance(attr, SequenceAttribute):
            target = over.steps if over and over.steps is not None else eff.steps
            shape = attr.shape()
            if target is None or not shape.is_valid(value):
                return -weight  # an unreadable sequence is as far as can be
            return -weight * shape.distance(shape.parse(value), shape.parse(target))
        rgb = _as_rgb(value)
        if rgb is None:
            return 0.0
        target = over.target if over and over.target is not None else eff.target
        assert target is not None
        t = hex_to_rgb(target)
        return -weight * sum((a - b) ** 2 for a, b in zip(rgb, t, strict=True))

    # -- the oracle ------------------------------------------------------------------------
    def best_catalog(self, segment: str, at_s: float = 0.0) -> Best:
        """The human (seed) creative with the highest expected reward in this segment."""
        key = (segment, self._phase(at_s))
        if key not in self._best_catalog:
            best: Best | None = None
            for seed in self.spec.seeds:
                r = self.expected_reward(segment, seed.attributes, at_s)
                if best is None or r > best.reward:
                    best = Best(
                        dict(seed.attributes),
                        self.p_click(segment, seed.attributes, at_s),
                        r,
                        self.spec.seed_id(seed),
                    )
            assert best is not None
            self._best_catalog[key] = best
        return self._best_catalog[key]

    def optimum(self, segment: str, at_s: float = 0.0) -> Best:
        """The best creative of the whole space (forbidden combinations excluded)."""
        key = (segment, self._phase(at_s))
        if key not in self._optimum:
            attrs = self._continuous_optimum(segment)
            cats = [a for a in self.spec.attributes if isinstance(a, CategoricalAttribute)]
            combos = math.prod(len(a.values) for a in cats)
            if combos <= _ENUMERATE_LIMIT:
                best_combo, best_z = None, -math.inf
                for values in itertools.product(*(a.values for a in cats)):
                    trial = {**attrs, **{a.name: v for a, v in zip(cats, values, strict=True)}}
                    if self.spec.is_forbidden(trial):
                        continue
                    z = self.logit(segment, trial, at_s)
                    if z > best_z:
                        best_combo, best_z = trial, z
                attrs = best_combo if best_combo is not None else attrs
            else:  # coordinate ascent: fine for additive effects, approximate with interactions
                attrs = {**attrs, **{a.name: a.values[0] for a in cats}}
                for _ in range(3):
                    for a in cats:
                        scored = [
                            (self.logit(segment, {**attrs, a.name: v}, at_s), v)
                            for v in a.values
                            if not self.spec.is_forbidden({**attrs, a.name: v})
                        ]
                        if scored:
                            attrs[a.name] = max(scored)[1]
            self._optimum[key] = Best(
                attrs,
                self.p_click(segment, attrs, at_s),
                self.expected_reward(segment, attrs, at_s),
            )
        return self._optimum[key]

    def _continuous_optimum(self, segment: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        by_attr = {e.attribute: e for e in self.scenario.truth.effects}
        for a in self.spec.attributes:
            eff = by_attr.get(a.name)
            over = eff.segments.get(segment) if eff else None
            if isinstance(a, NumericAttribute):
                peak = (over.peak if over and over.peak is not None else eff.peak) if eff else None
                out[a.name] = (
                    min(a.max, max(a.min, peak)) if peak is not None else (a.min + a.max) / 2
                )
            elif isinstance(a, ColorAttribute):
                target = (over.target if over and over.target else eff.target) if eff else None
                out[a.name] = (target or "#808080").lower()
            elif isinstance(a, CircularAttribute):
                peak = (over.peak if over and over.peak is not None else eff.peak) if eff else None
                out[a.name] = peak if peak is not None else a.min
            elif isinstance(a, SequenceAttribute):
                steps = (over.steps if over and over.steps else eff.steps) if eff else None
                first = self.spec.seeds[0].attributes[a.name]
                out[a.name] = a.canonical(steps if steps is not None else first)
        return out


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_rgb(value: Any) -> tuple[float, float, float] | None:
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            return hex_to_rgb(value)
        except ValueError:
            return None
    return None
