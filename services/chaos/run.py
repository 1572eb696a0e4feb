"""The fault suite: the stack under simulator load, faults in turn, then the books.

`run_suite` starts its own broker (port `port`, data in the run folder, so it may stop it),
the four services supervised as in `admuse demo`, and the simulator at `rate` arrivals per
second. It injects every fault kind `cycles` times in rotation (a `gap_s` quiet spell after
each recovery), stops the traffic, lets delayed events and attribution windows settle, stops
the services and reads the topics back: `books.py` reconciles them. Everything lands in the
run folder: logs/, results.jsonl + events.jsonl (simulator), faults.json, chaos.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.chaos import books as B
from services.chaos.faults import KINDS, Broker, inject

__all__ = ["run_suite"]

_REPO = Path(__file__).resolve().parents[2]


async def run_suite(
    run: Path,
    *,
    port: int,
    cycles: int = 2,
    kinds: tuple[str, ...] = KINDS,
    rate: float = 15.0,
    scenario_name: str = "e2e",
    gap_s: float = 5.0,
    pause_s: float = 8.0,
    broker_down_s: float = 10.0,
    settle_s: float = 300.0,
    min_answered: int = 0,
    min_answered_wait_s: float = 120.0,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    from services.cli import Stack, Supervisor, apply_spec, wait_for_leaders, warm_up_coordinators
    from services.common.kafka import ensure_topics, wait_for_broker
    from services.common.settings import KafkaSettings
    from services.common.topics import Topics
    from services.simulator import load_scenario, simulate

    scen = load_scenario(scenario_name)
    broker = Broker(port, run / "kafka")
    prefix = f"chaos-{int(time.time())}."
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, topic_prefix=prefix)
    say(f"starting the suite's broker on {broker.bootstrap}")
    await broker.up()
    faults: list[dict[str, Any]] = []
    # Decide answers only once its Decision is acknowledged: the books demand a record for
    # every answered Decide, SIGKILL included (docs/contracts.md "Decision log").
    env = {"ADMUSE_LOG_LEVEL": "INFO", "ADMUSE_INFERENCE_DECISION_ACK": "true"}
    stack = Stack(run, broker.bootstrap, prefix, env)
    stack.save_run()
    supervisor = Supervisor(stack, _REPO, first_backoff_s=0.5, max_crashes=cycles * 3 + 5)
    sup_stop, traffic_stop = asyncio.Event(), asyncio.Event()
    sup_task: asyncio.Task[None] | None = None
    supervisor_error: str | None = None
    try:
        await wait_for_broker(kafka, 60)
        created = await ensure_topics(kafka, Topics.from_settings(kafka))
        await wait_for_leaders(kafka, created)
        await warm_up_coordinators(kafka)
        await apply_spec(kafka, scen.campaign)
        stack.start(_REPO)
        await asyncio.to_thread(stack.wait_ready, 300.0)
        say("services ready; traffic starts")
        sup_task = asyncio.create_task(supervisor.run(sup_stop))
        players: list[Any] = []
        sim = asyncio.create_task(
            simulate(
                scen,
                kafka=kafka,
                decide_url=stack.decide_url,
                api_key=stack.api_key,
                run_dir=run,
                duration_s=0,
                rate=rate,
                stop=traffic_stop,
                drain_s=scen.campaign.attribution_window + 5,
                send_timeout_s=120.0,
                on_start=players.append,
            )
        )
        await asyncio.sleep(gap_s * 2)  # some traffic before the first fault
        for cycle in range(cycles):
            for kind in kinds:
                if sim.done():
                    break
                fault = await inject(
                    kind, stack, broker, pause_s=pause_s, broker_down_s=broker_down_s
                )
                fault["cycle"] = cycle
                faults.append(fault)
                say(
                    f"cycle {cycle + 1}/{cycles} {kind}: recovered in {fault['recovered_s']}s"
                    + ("" if fault["recovered"] else " (NOT recovered)")
                    + f"; services: {supervisor.line()}"
                )
                await asyncio.sleep(gap_s)
        # traffic runs while the faults do, so fast recoveries mean little of it: it goes on
        # (faults over) until the books have `min_answered` Decides to reconcile
        until = time.monotonic() + min_answered_wait_s
        while players and not sim.done() and time.monotonic() < until:
            if players[0].stats.answered >= min_answered:
                break
            await asyncio.sleep(0.5)  # a counter of the player's, polled: it has no event
        if players and min_answered:
            answered = players[0].stats.answered
            say(f"{answered} Decides answered (at least {min_answered} asked)")
        traffic_stop.set()
        say("traffic stopped; sending delayed events and letting windows close")
        stats = await sim
        # the simulator's source ended (its last claim is the end of time): every window
        # closes once features has worked off its input; wait for that, not for a clock
        settled_s = await _settle(kafka, settle_s)
        if settled_s >= 0:
            say(f"every decision rewarded {settled_s:.0f}s after the traffic")
        else:
            say(f"not every decision rewarded within {settle_s:.0f}s: the books will say")
        services = supervisor.status()
    finally:
        supervisor.stopping = True
        sup_stop.set()
        traffic_stop.set()
        if sup_task is not None:
            try:
                await asyncio.wait_for(sup_task, 5)
            except Exception as exc:  # a supervisor that failed supervised nothing: say so
                supervisor_error = f"{type(exc).__name__}: {exc}"
        await asyncio.to_thread(stack.stop)
    (run / "faults.json").write_text(json.dumps(faults, indent=2))
    window_ms = int(scen.campaign.attribution_window * 1000)
    books = await _reconcile(kafka, run, faults, services, stats, window_ms)
    books["supervisor_error"] = supervisor_error
    await broker.down()
    (run / "chaos.json").write_text(json.dumps(books, indent=2, default=str))
    return books


async def _settle(kafka: Any, timeout_s: float, every_s: float = 5.0) -> float:
    """Seconds until every Decision record has a Reward; -1 when `timeout_s` passed first."""
    from services.analysis import ReadWindow, read_topic
    from services.common.codec import SchemaRegistry
    from services.common.topics import Topics

    topics, reg = Topics.from_settings(kafka), SchemaRegistry.load()
    t0 = time.monotonic()
    while True:
        decided, _ = await read_topic(
            kafka, topics.decisions.name, reg.codec("Decision").decode, ReadWindow()
        )
        rewarded, _ = await read_topic(
            kafka, topics.rewards.name, reg.codec("Reward").decode, ReadWindow()
        )
        if {d["decision_id"] for d in decided} <= {r["decision_id"] for r in rewarded}:
            return time.monotonic() - t0
        if time.monotonic() - t0 >= timeout_s:
            return -1.0
        await asyncio.sleep(every_s)


async def _reconcile(
    kafka: Any,
    run: Path,
    faults: list[dict[str, Any]],
    services: dict[str, Any],
    stats: Any,
    window_ms: int,
) -> dict[str, Any]:
    from services.analysis import ReadWindow, read_topic
    from services.common.codec import SchemaRegistry
    from services.common.topics import Topics

    topics = Topics.from_settings(kafka)
    reg = SchemaRegistry.load()
    window = ReadWindow()

    def raw_json(value: bytes) -> dict[str, Any]:
        try:
            obj = json.loads(value)
        except ValueError:
            return {"event_id": None}
        return obj if isinstance(obj, dict) else {"event_id": None}

    raw, _ = await read_topic(kafka, topics.events_raw.name, raw_json, window)
    events, _ = await read_topic(kafka, topics.events.name, reg.codec("AdEvent").decode, window)
    dlq, _ = await read_topic(kafka, topics.events_dlq.name, reg.codec("DeadLetter").decode, window)
    decisions, _ = await read_topic(
        kafka, topics.decisions.name, reg.codec("Decision").decode, window
    )
    rewards, _ = await read_topic(kafka, topics.rewards.name, reg.codec("Reward").decode, window)
    rows = _jsonl(run / "results.jsonl")
    sent = _jsonl(run / "events.jsonl")
    answered = [r for r in rows if "error" not in r]
    dlq_ids = [raw_json(d["original_value"] or b"{}").get("event_id") for d in dlq]
    return {
        "raw": B.raw_books(raw, [e["event_id"] for e in events], len(dlq), dlq_ids),
        "simulator": {
            **B.simulator_books(sent, {str(r.get("event_id")) for r in raw}),
            "decide_requests": stats.requests,
            "decide_failed": len(rows) - len(answered),
            "skipped": stats.skipped,
        },
        "decisions": B.decision_books(
            [r["decision_id"] for r in answered], [d["decision_id"] for d in decisions]
        ),
        "rewards": B.reward_books(
            [s for s in sent if s["type"] == "click" and s["sent"]],
            rewards,
            [d["decision_id"] for d in decisions],
            B.clicks_after_window(events, decisions, window_ms),
        ),
        "models": B.model_books(answered),
        "availability": B.availability(rows, faults, grace_s=5.0),
        "faults": faults,
        "services": services,
    }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with contextlib.suppress(FileNotFoundError):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return []
