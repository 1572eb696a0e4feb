"""The simulated apps: users arrive, ask Decide, see a creative, maybe click — later.

Arrivals are a Poisson process. Each arrival is one request `n`: a user of a segment asks
inference's `POST /v1/decide`; the simulator sends an impression event to
`admuse.events.raw` (JSON, per docs/contracts.md) and, when the ground truth says so, a click
(and a conversion) after a lognormal delay. Outcomes for request `n` come from a random stream
seeded by (seed, n), so a run with the same seed draws the same users and outcomes whatever
order the concurrent requests finish in.

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
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from services.common.privacy import stable_unit
from services.common.source_watermark import HeldEvents
from services.simulator.groundtruth import GroundTruth
from services.simulator.scenario import Delay, Scenario

__all__ = ["ArmStats", "LiveStats", "Player", "lognormal_delay"]

Send = Callable[[bytes, bytes], Awaitable[None]]


def lognormal_delay(rng: random.Random, delay: Delay) -> float:
    """A delay in seconds: lognormal with the given median and sigma, capped at max_s."""
    return min(delay.max_s, delay.median_s * math.exp(rng.gauss(0.0, delay.sigma)))


@dataclass
class ArmStats:
    impressions: int = 0
    unshown: int = 0  # decisions the app did not show (scenario audience.shown_share)
    clicks: int = 0
    conversions: int = 0
    expected_reward: float = 0.0
    oracle_reward: float = 0.0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def regret(self) -> float:
        return self.oracle_reward - self.expected_reward


@dataclass
class LiveStats:
    """What the live view shows; updated by the player as requests complete."""

    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    # Answers of a paused or stopped campaign (no decision; no events sent), by status.
    held: Counter[str] = field(default_factory=Counter)
    arms: dict[str, ArmStats] = field(default_factory=dict)
    model_versions: Counter[str] = field(default_factory=Counter)
    creatives_served: Counter[str] = field(default_factory=Counter)
    generated_served: int = 0
    events_sent: int = 0  # acknowledged by Kafka
    events_unsent: int = 0  # not written: Kafka away past the send deadline, or run over
    clicks_unsent: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    # How late this process's event loop wakes up: tells a slow Decide API from a busy simulator.
    loop_lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    def arm(self, name: str) -> ArmStats:
        return self.arms.setdefault(name, ArmStats())


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
        self._in_flight += 1
        self.stats.requests += 1
        t_req = time.monotonic()
        try:
            async with self._slots:
                resp = await self.client.post(
                    "/v1/decide",
                    json={
                        "campaign_id": self.scenario.campaign.campaign_id,
                        "user_id": user,
                        "context": dict(seg.context),
                    },
                )
        except httpx.HTTPError as exc:
            self._error(n, f"{type(exc).__name__}", str(exc))
            return
        finally:
            self._in_flight -= 1
        latency_ms = (time.monotonic() - t_req) * 1000
        if resp.status_code != 200:
            self._error(n, f"http {resp.status_code}", resp.text[:300])
            return
        try:
            decision = resp.json()
            if decision.get("status", "active") != "active":  # docs/contracts.md: no decision
                self.stats.held[str(decision["status"])] += 1
                return
            decision_id, creative_id = decision["decision_id"], decision["creative_id"]
            attributes = decision.get("attributes") or {}
            arm = decision.get("arm", "?")
        except (ValueError, KeyError, TypeError) as exc:
            self._error(n, "bad response", f"{exc}: {resp.text[:300]}")
            return
        await self._play(
            n,
            rng,
            seg.name,
            user,
            consent,
            seg.context,
            decision,
            decision_id,
            creative_id,
            attributes,
            arm,
            latency_ms,
        )

    async def _play(
        self,
        n: int,
        rng: random.Random,
        segment: str,
        user: str,
        consent: bool,
        context: dict[str, str],
        decision: dict[str, Any],
        decision_id: str,
        creative_id: str,
        attributes: dict[str, Any],
        arm: str,
        latency_ms: float,
    ) -> None:
        truth = self.truth
        at_s = time.time() - self._t0_wall  # scenario time: drift changes the truth with it
        p = truth.p_click(segment, attributes, at_s)
        shown = rng.random() < self.scenario.audience.shown_share
        # for `events` rewards `clicked` is the latent engagement, sent as the domain's
        # reactions (feedback.py) instead of a click
        clicked = shown and rng.random() < p
        feedback = truth.feedback
        reactions = feedback.events(clicked, rng) if feedback is not None and shown else []
        converted = clicked and feedback is None and rng.random() < truth.conversion_rate
        conv = self.scenario.truth.conversion
        value = max(0.0, rng.gauss(conv.value_mean, conv.value_sd)) if converted and conv else None
        click_delay = lognormal_delay(rng, self.scenario.truth.click_delay) if clicked else None
        conv_delay = (
            lognormal_delay(rng, self.scenario.truth.conversion_delay) if converted else None
        )
        # a decision never shown could earn nothing, whatever was chosen: no regret either
        expected = truth.expected_reward(segment, attributes, at_s) if shown else 0.0
        oracle = truth.optimum(segment, at_s).reward if shown else 0.0
        origin = "catalog" if creative_id in self._seed_ids else "generated"

        base = {
            "campaign_id": self.scenario.campaign.campaign_id,
            "creative_id": creative_id,
            "decision_id": decision_id,
            "user_id": user,
            "consent": {"personalization": consent},
            "context": dict(context),
            "source": self.source,
        }
        if shown:
            # Sent off the request path: a slow or absent Kafka must not hold a Decide slot.
            self._later(n, "impression", base, 0.0)
        if click_delay is not None and feedback is None:
            self._later(n, "click", base, click_delay)
        if reactions:  # (no random draw otherwise: banner runs replay as before on a seed)
            at = click_delay or lognormal_delay(rng, self.scenario.truth.click_delay)
            for i, (kind, value, after) in enumerate(reactions):
                self._later(n, kind, {**base, "value": value}, at + after, tag=f"{kind}{i}")
        if conv_delay is not None and click_delay is not None:
            self._later(n, "conversion", {**base, "value": value}, click_delay + conv_delay)

        s = self.stats
        a = s.arm(arm)
        a.impressions += shown
        a.unshown += not shown
        a.clicks += clicked
        a.conversions += converted
        a.expected_reward += expected
        a.oracle_reward += oracle
        s.creatives_served[creative_id] += 1
        s.generated_served += origin == "generated"
        if decision.get("model_version"):
            s.model_versions[decision["model_version"]] += 1
        s.latencies_ms.append(latency_ms)
        self._write(
            {
                "n": n,
                "t": round(time.time() - self._t0_wall, 3),
                "decision_id": decision_id,
                "segment": segment,
                "segment_key": decision.get("segment"),
                "arm": arm,
                "creative_id": creative_id,
                "origin": origin,
                "policy": decision.get("policy"),
                "model_version": decision.get("model_version"),
                "propensity": decision.get("propensity"),
                "attributes": attributes,
                "p_click": round(p, 6),
                "expected_reward": round(expected, 6),
                "best_catalog_reward": round(truth.best_catalog(segment, at_s).reward, 6),
                "oracle_reward": round(oracle, 6),
                "shown": shown,
                "clicked": clicked,
                "converted": converted,
                "value": value,
                "consent": consent,
                "click_delay_s": click_delay,
                "latency_ms": round(latency_ms, 2),
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

    def _error(self, n: int, kind: str, detail: str) -> None:
        self.stats.errors[kind] += 1
        self._write(
            {"n": n, "t": round(time.time() - self._t0_wall, 3), "error": kind, "detail": detail}
        )

    def _write(self, record: dict[str, Any]) -> None:
        record["at"] = round(time.time(), 3)  # wall clock: lines results up with outside events
        if self._out is not None and not self._out.closed:
            self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
