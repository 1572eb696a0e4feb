"""What a creative domain (banner, music, film, …) declares, as one class per domain.

A domain gives the meaning of the attributes it reads, its admission rules, its renderers and
its feedback events with how they become a reward. The services hold no domain knowledge: the
admission gate runs `rules`, the API serves `render(fmt, …)` for every format in `formats`,
reports embed the same renderings, and the reward of a decision is `reward(events, weights)`.
A campaign names its domain (`domain`, default `banner`) and passes it `domain_options`, which
the domain validates with its `Options` model. docs/domains.md says how to add one.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["Domain", "DomainError", "Feedback", "NoOptions", "Rule", "options_of"]


class DomainError(ValueError):
    """An unknown domain, options it refuses, or a space it cannot work with."""


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Rule:
    """One admission rule: `check(attributes)` is None when it holds, else what is wrong.

    `reason` is the gate's stable reason code when it fails (`domain_rule` unless the rule
    predates domains, like the banner's `low_contrast`); `name` says which rule in the detail.
    """

    name: str
    check: Callable[[Mapping[str, object]], str | None]
    reason: str = "domain_rule"


@dataclass(frozen=True)
class Feedback:
    """A feedback event type: what it means and how it counts towards the reward.

    `value`: the event's `value` field scales its weight (a listened fraction); else each
    event counts 1. `once`: repeats of the type in one decision count once (a like).
    `default_weight`: its weight when the campaign's reward does not name it.
    """

    meaning: str
    default_weight: float = 0.0
    value: bool = False
    once: bool = True


class Domain(ABC):
    """Subclass, set the class attributes, implement `rules` and `render`."""

    name: ClassVar[str]
    meanings: ClassVar[Mapping[str, str]]  # attribute name → what the domain reads in it
    formats: ClassVar[Mapping[str, str]]  # render format (file suffix) → media type
    feedback: ClassVar[Mapping[str, Feedback]]  # event type → meaning and reward term
    Options: ClassVar[type[BaseModel]] = NoOptions

    def space_problems(
        self, attributes: Sequence[Mapping[str, Any]], options: BaseModel
    ) -> list[str]:
        """Why the campaign's attributes (record form) cannot carry this domain (a music
        campaign without a melody); empty when they can. Default: anything goes."""
        return []

    @abstractmethod
    def rules(self, options: BaseModel, campaign: Mapping[str, Any]) -> list[Rule]:
        """The admission rules for a campaign (its record: attributes, min_contrast, …)."""

    @abstractmethod
    def render(
        self,
        fmt: str,
        attributes: Mapping[str, object],
        campaign: Mapping[str, Any],
        view: Mapping[str, Any] | None = None,
    ) -> bytes:
        """The creative in format `fmt` (a key of `formats`). `view` holds display hints from
        the request (the banner's template, width, height); a domain ignores those it does
        not know. ValueError when the creative cannot be rendered (a malformed melody)."""

    def reward(
        self, events: Iterable[tuple[str, float | None]], weights: Mapping[str, float]
    ) -> float:
        """A decision's reward from its events (type, value): Σ weight × (value or 1), each
        type's weight from `weights` else its default; `once` types count once; unknown types
        count 0. Clipped to [0, 1] (the reward model's probability target)."""
        seen: set[str] = set()
        total = 0.0
        for kind, value in events:
            term = self.feedback.get(kind)
            if term is None or (term.once and kind in seen):
                continue
            seen.add(kind)
            weight = weights.get(kind, term.default_weight)
            scale = 1.0 if not term.value else min(1.0, max(0.0, float(value or 0.0)))
            total += weight * scale
        return min(1.0, max(0.0, total))

    def parse_options(self, raw: Mapping[str, Any] | str | None) -> BaseModel:
        """`domain_options` (a mapping, or the JSON text a Campaign record carries)."""
        return options_of(self, raw)


def options_of(domain: Domain, raw: Mapping[str, Any] | str | None) -> BaseModel:
    try:
        data = json.loads(raw) if isinstance(raw, str) and raw else (raw or {})
    except ValueError as exc:  # a record whose options text is not JSON
        raise DomainError(f"domain {domain.name!r} options are not JSON: {exc}") from None
    try:
        return domain.Options.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()
        )
        raise DomainError(f"domain {domain.name!r} options: {problems}") from None
