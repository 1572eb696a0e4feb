"""The simulated apps: users arrive, ask Decide, see a creative, maybe click — later.

Arrivals are a Poisson process. Each arrival is one request `n`: a user of a segment asks
inference's `POST /v1/decide`; the simulator sends an impression event to
`admuse.events.raw` (JSON, per docs/contracts.md) and, when the ground truth says so, a click
(and a conversion) after a lognormal delay. Outcomes for request `n` come from a random stream
seeded by (seed, n), so a run with the same seed draws the same users and outcomes whatever
order the concurrent requests finish in.

With `audience.slate: k` > 1 (film previews) an arrival is one viewer who sees k variants:
k concurrent Decide calls (same user and context), each its own decision and results row
(`slate` = the arrival's n, `slot`, `slate_shown`, `voted`), each slot's events drawn from
its own stream (seed, n, slot), and at most one `vote` for an engaged shown slot
(simulator/slates.py). A slot whose Decide fails or is held is left out of the preview.

Every event's fate is known: it is acknowledged by Kafka (`events_sent`) or counted as not
written (`events_unsent`, clicks among them `clicks_unsent`), and listed in `events.jsonl`
beside the results (event_id, type, decision_id, sent) for the fault suite's reconciliation.

Every answered request is scored by the oracle (true click probability of the creative served,
best catalog creative, best creative of the space) and written to `results.jsonl`; the truth
never leaves this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from services.common.privacy import stable_unit
from services.common.source_watermark import HeldEvents
from services.simulator.feedback import VOTE, Event
from services.simulator.groundtruth import GroundTruth
from services.simulator.live import ArmStats, LiveStats
from services.simulator.scenario import Delay, Scenario
from services.simulator.slates import choose_vote

__all__ = ["ArmStats", "LiveStats", "Player", "lognormal_delay"]

Send = Callable[[bytes, bytes], Awaitable[None]]


def lognormal_delay(rng: random.Random, delay: Delay) -> float:
    """A delay in seconds: lognormal with the given median and sigma, capped at max_s."""
    return min(delay.max_s, delay.median_s * math.exp(rng.gauss(0.0, delay.sigma)))


@dataclass(frozen=True)
class _Viewer:
    segment: str
    user: str
    consent: bool
    context: dict[str, str]


@dataclass(frozen=True)
class _Answer:
    """A Decide answer with a creative to show."""

    decision: dict[str, Any]
    decision_id: str
    creative_id: str
    attributes: dict[str, Any]
    arm: str
    latency_ms: float


@dataclass(frozen=True)
class _Outcome:
    """What the viewer did with one decision (hidden truth and the events it sends)."""

    p: float
    shown: bool
    clicked: bool  # for `events` rewards: the latent engagement
    reactions: list[Event]
    converted: bool
    value: float | None
    click_delay: float | None
    conv_delay: float | None
    react_at: float | None  # when the reactions start


class Player:
    """Plays a scenario's audience against a running Decide API."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        client: httpx.AsyncClient,
        send: Send,
        results_path: Path,
        seed: int = 0,
        rate: float | None = None,
        max_in_flight: int = 64,
        source: str = "admuse-simulator",
        held: HeldEvents | None = None,
    ) -> None:
        self.scenario = scenario
        self.truth = GroundTruth(scenario)
        self.client = client
        self._send = send
        self.results_path = results_path
        self.seed = seed
        self.rate = rate or scenario.audience.rate
        self.source = source
        self.held = held if held is not None else HeldEvents()  # what the watermark waits for
        self.stats = LiveStats()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._delayed: set[asyncio.Task[None]] = set()
        self._segments = scenario.audience.segments
        self._shares = scenario.shares()
        self._seed_ids = {scenario.campaign.seed_id(s) for s in scenario.campaign.seeds}
        self._out: Any = None
        self._events_out: Any = None
        self._t0_wall = 0.0

    # -- the run --------------------------------------------------------------------------
    async def run(
        self, duration_s: float, stop: asyncio.Event | None = None, drain_s: float = 15.0
    ) -> LiveStats:
        """Play for `duration_s` seconds (0: until `stop` is set), then drain delayed events."""
        stop = stop or asyncio.Event()
        self.results_path.parent.mkdir(parents=True, exist_ok=True)
        arrivals = random.Random(f"arrivals:{self.seed}")
        self._t0_wall = time.time()
        start = time.monotonic()
        self.stats.started = start
        next_at = start
        n = 0
        lag = asyncio.create_task(self._watch_loop_lag())
        events_path = self.results_path.with_name("events.jsonl")
        with (
            self.results_path.open("w", encoding="utf-8") as self._out,
            events_path.open("w", encoding="utf-8") as self._events_out,
        ):
            try:
                while not stop.is_set():
                    next_at += arrivals.expovariate(self.rate)
                    if duration_s and next_at - start >= duration_s:
                        break
                    wait = next_at - time.monotonic()
                    if wait > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), wait)
                        if stop.is_set():
                            break
                    self._arrive(n)
                    n += 1
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=30)
                if self._delayed and drain_s > 0:
                    await asyncio.wait(self._delayed, timeout=drain_s)
            finally:
                lag.cancel()
                for task in [*self._tasks, *self._delayed]:
                    task.cancel()
                await asyncio.gather(lag, *self._tasks, *self._delayed, return_exceptions=True)
                self._out.flush()
                self._events_out.flush()
        return self.stats

    async def _watch_loop_lag(self, every_s: float = 0.1) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(every_s)
            self.stats.loop_lag_ms.append((time.monotonic() - t - every_s) * 1000)

    def _arrive(self, n: int) -> None:
        if self._in_flight >= self._max_in_flight:
            self.stats.skipped += 1
            return
        task = asyncio.create_task(self._request(n))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request(self, n: int) -> None:
        rng = random.Random(f"request:{self.seed}:{n}")
        seg_index = rng.choices(range(len(self._segments)), weights=self._shares)[0]
        seg = self._segments[seg_index]
        user = (
            f"sim{self.seed}-{seg.name}-{rng.randrange(self.scenario.audience.users_per_segment)}"
        )
        consent = stable_unit(user, "consent") < self.scenario.audience.consent_share
        viewer = _Viewer(seg.name, user, consent, dict(seg.context))
        k = self.scenario.audience.slate
        self._in_flight += 1
        try:  # a slate's slots are asked for together, as an app filling a preview would
            slots = [None] if k == 1 else list(range(k))
            answers = await asyncio.gather(*(self._decide(n, viewer, i) for i in slots))
        finally:
            self._in_flight -= 1
        if k > 1:
            self._play_slate(n, viewer, answers)
        elif answers[0] is not None:
            self._play(n, rng, viewer, answers[0])

    async def _decide(self, n: int, viewer: _Viewer, slot: int | None) -> _Answer | None:
        """One Decide call; None (counted as an error or held) when it gives nothing to show."""
        self.stats.requests += 1
        t_req = time.monotonic()
        try:
            async with self._slots:
                resp = await self.client.post(
                    "/v1/decide",
                    json={
                        "campaign_id": self.scenario.campaign.campaign_id,
                        "user_id": viewer.user,
                        "context": dict(viewer.context),
                    },
                )
        except httpx.HTTPError as exc:
            self._error(n, f"{type(exc).__name__}", str(exc), slot)
            return None
        latency_ms = (time.monotonic() - t_req) * 1000
        if resp.status_code != 200:
            self._error(n, f"http {resp.status_code}", resp.text[:300], slot)
            return None
        try:
            decision = resp.json()
            if decision.get("status", "active") != "active":  # docs/contracts.md: no decision
                self.stats.held[str(decision["status"])] += 1
                return None
            return _Answer(
                decision,
                decision["decision_id"],
                decision["creative_id"],
                decision.get("attributes") or {},
                decision.get("arm", "?"),
                latency_ms,
            )
        except (ValueError, KeyError, TypeError) as exc:
            self._error(n, "bad response", f"{exc}: {resp.text[:300]}", slot)
            return None

    def _outcome(
        self, rng: random.Random, segment: str, answer: _Answer, at_s: float, vote: bool = True
    ) -> _Outcome:
        """What the viewer does with one shown decision (the draws' order is part of a seed's
        replay: banner and music runs draw exactly these numbers in this order)."""
        truth = self.truth
        p = truth.p_click(segment, answer.attributes, at_s)
        shown = rng.random() < self.scenario.audience.shown_share
        # for `events` rewards `clicked` is the latent engagement, sent as the domain's
        # reactions (feedback.py) instead of a click
        clicked = shown and rng.random() < p
        feedback = truth.feedback
        reactions = (
            feedback.events(clicked, rng, vote=vote) if feedback is not None and shown else []
        )
        converted = clicked and feedback is None and rng.random() < truth.conversion_rate
        conv = self.scenario.truth.conversion
        value = max(0.0, rng.gauss(conv.value_mean, conv.value_sd)) if converted and conv else None
        click_delay = lognormal_delay(rng, self.scenario.truth.click_delay) if clicked else None
        conv_delay = (
            lognormal_delay(rng, self.scenario.truth.conversion_delay) if converted else None
        )
        # reactions follow the engagement's delay (no draw without reactions: banner replays)
        react_at = (
            (click_delay or lognormal_delay(rng, self.scenario.truth.click_delay))
            if reactions
            else None
        )
        return _Outcome(p, shown, clicked, reactions, converted, value, click_delay, conv_delay,
                        react_at)  # fmt: skip

    def _play(self, n: int, rng: random.Random, viewer: _Viewer, answer: _Answer) -> None:
        truth, segment = self.truth, viewer.segment
        at_s = time.time() - self._t0_wall  # scenario time: drift changes the truth with it
        o = self._outcome(rng, segment, answer, at_s)
        # a decision never shown could earn nothing, whatever was chosen: no regret either
        expected = truth.expected_reward(segment, answer.attributes, at_s) if o.shown else 0.0
        oracle = truth.optimum(segment, at_s).reward if o.shown else 0.0
        catalog = truth.best_catalog(segment, at_s).reward
        self._record(n, viewer, answer, o, (expected, oracle, catalog))

    def _play_slate(self, n: int, viewer: _Viewer, answers: list[_Answer | None]) -> None:
        """One viewer, one preview of the slots that were answered (slates.py): each slot's
        own events, and at most one vote, for an engaged shown slot."""
        truth, segment = self.truth, viewer.segment
        at_s = time.time() - self._t0_wall
        outcomes = {
            i: self._outcome(
                random.Random(f"request:{self.seed}:{n}:slot{i}"), segment, a, at_s, vote=False
            )
            for i, a in enumerate(answers)
            if a is not None
        }
        shown = [i for i, o in outcomes.items() if o.shown]
        pick = choose_vote(
            [outcomes[i].p for i in shown],
            [outcomes[i].clicked for i in shown],
            random.Random(f"vote:{self.seed}:{n}"),
        )
        winner = shown[pick] if pick is not None else None
        best = truth.optimum(segment, at_s).p_click
        catalog = truth.best_catalog(segment, at_s).p_click
        for i, o in outcomes.items():
            answer = answers[i]
            assert answer is not None
            rivals = [outcomes[j].p for j in shown if j != i]  # the others on screen
            truths = (
                truth.slate_reward(o.p, rivals) if o.shown else 0.0,
                truth.slate_reward(best, rivals) if o.shown else 0.0,
                truth.slate_reward(catalog, rivals),
            )
            slate = {"slate": n, "slot": i, "slate_shown": len(shown), "voted": i == winner}
            self._record(n, viewer, answer, o, truths, slate)
        self.stats.slates += 1
        self.stats.slates_short += len(shown) < 2
        if winner is not None:  # after the viewer has seen every shown slot
            chosen = answers[winner]
            assert chosen is not None
            at = max(outcomes[i].react_at or 0.0 for i in shown) + VOTE[2]
            self._later(n, VOTE[0], {**self._base(viewer, chosen), "value": None}, at, "vote")
            self.stats.votes += 1

    def _base(self, viewer: _Viewer, answer: _Answer) -> dict[str, Any]:
        return {
            "campaign_id": self.scenario.campaign.campaign_id,
            "creative_id": answer.creative_id,
            "decision_id": answer.decision_id,
            "user_id": viewer.user,
            "consent": {"personalization": viewer.consent},
            "context": dict(viewer.context),
            "source": self.source,
        }

    def _record(
        self,
        n: int,
        viewer: _Viewer,
        answer: _Answer,
        o: _Outcome,
        truths: tuple[float, float, float],  # expected, oracle, best catalog reward
        slate: dict[str, Any] | None = None,
    ) -> None:
        """Send one decision's events (off the request path: a slow or absent Kafka must not
        hold a Decide slot), count it, and write its results row."""
        expected, oracle, catalog = truths
        creative_id, decision = answer.creative_id, answer.decision
        origin = "catalog" if creative_id in self._seed_ids else "generated"
        base = self._base(viewer, answer)
        tag = f"s{slate['slot']}-" if slate else ""
        if o.shown:
            self._later(n, "impression", base, 0.0, f"{tag}impression")
        if o.click_delay is not None and self.truth.feedback is None:
            self._later(n, "click", base, o.click_delay, f"{tag}click")
        for i, (kind, value, after) in enumerate(o.reactions):
            assert o.react_at is not None
            self._later(n, kind, {**base, "value": value}, o.react_at + after, f"{tag}{kind}{i}")
        if o.conv_delay is not None and o.click_delay is not None:
            self._later(n, "conversion", {**base, "value": o.value},
                        o.click_delay + o.conv_delay, f"{tag}conversion")  # fmt: skip

        s = self.stats
        a = s.arm(answer.arm)
        a.impressions += o.shown
        a.unshown += not o.shown
        a.clicks += o.clicked
        a.conversions += o.converted
        a.expected_reward += expected
        a.oracle_reward += oracle
        s.creatives_served[creative_id] += 1
        s.generated_served += origin == "generated"
        if decision.get("model_version"):
            s.model_versions[decision["model_version"]] += 1
        s.latencies_ms.append(answer.latency_ms)
        self._write(
            {
                "n": n,
                "t": round(time.time() - self._t0_wall, 3),
                "decision_id": answer.decision_id,
                "segment": viewer.segment,
                "segment_key": decision.get("segment"),
                "arm": answer.arm,
                "creative_id": creative_id,
                "origin": origin,
                "policy": decision.get("policy"),
                "model_version": decision.get("model_version"),
                "propensity": decision.get("propensity"),
                "attributes": answer.attributes,
                "p_click": round(o.p, 6),
                "expected_reward": round(expected, 6),
                "best_catalog_reward": round(catalog, 6),
                "oracle_reward": round(oracle, 6),
                "shown": o.shown,
                "clicked": o.clicked,
                "converted": o.converted,
                "value": o.value,
                "consent": viewer.consent,
                "click_delay_s": o.click_delay,
                "latency_ms": round(answer.latency_ms, 2),
                **(slate or {}),
            }
        )

    def _later(
        self, n: int, kind: str, base: dict[str, Any], delay: float, tag: str | None = None
    ) -> None:
        task = asyncio.create_task(self._emit(n, kind, base, delay, tag or kind))
        self._delayed.add(task)
        task.add_done_callback(self._delayed.discard)

    async def _emit(self, n: int, kind: str, base: dict[str, Any], delay: float, tag: str) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        now = datetime.now(UTC)
        event = {
            **base,
            "event_id": f"sim{self.seed}-{self._t0_wall:.0f}-{n}-{tag}",
            "type": kind,
            "occurred_at": now.isoformat(timespec="milliseconds"),
        }
        event.setdefault("value", None)
        # held from its stamp (same event-loop step) until its fate is known
        token = self.held.hold(int(now.timestamp() * 1000))
        sent = False
        try:
            await self._send(base["user_id"].encode(), json.dumps(event).encode())
            sent = True
        except Exception as exc:
            self.stats.errors[f"event not sent ({type(exc).__name__})"] += 1
        finally:  # cancelled at the end of the drain: not sent either
            self.held.release(token)
            if sent:
                self.stats.events_sent += 1
            else:
                self.stats.events_unsent += 1
                self.stats.clicks_unsent += kind == "click"
            self._log_event(event, sent)

    def _log_event(self, event: dict[str, Any], sent: bool) -> None:
        if self._events_out is not None and not self._events_out.closed:
            row = {
                "event_id": event["event_id"],
                "type": event["type"],
                "decision_id": event["decision_id"],
                "consent": event["consent"]["personalization"],
                "sent": sent,
            }
            self._events_out.write(json.dumps(row, separators=(",", ":")) + "\n")

    def _error(self, n: int, kind: str, detail: str, slot: int | None = None) -> None:
        self.stats.errors[kind] += 1
        row = {"n": n, "t": round(time.time() - self._t0_wall, 3), "error": kind, "detail": detail}
        self._write(row if slot is None else {**row, "slate": n, "slot": slot})

    def _write(self, record: dict[str, Any]) -> None:
        record["at"] = round(time.time(), 3)  # wall clock: lines results up with outside events
        if self._out is not None and not self._out.closed:
            self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
