"""Worker processes transform exactly what the service's own process would, in order, survive
a dead worker without losing a batch, and never outlive the service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.codec import SchemaRegistry
from services.ingestion.dedup import DedupWindow
from services.ingestion.pipeline import Processor
from services.ingestion.rejection import Rejection
from services.ingestion.transform import Transform, TransformPool, TransformSpec
from services.ingestion.validation import Limits
from tests.polling import eventually
from tests.procs import alive_pids

pytestmark = pytest.mark.integration  # starts processes

REPO = Path(__file__).resolve().parents[2]
NOW = 1_795_000_000_000
SPEC = TransformSpec(b"unit-secret", 4096, Limits())
AVRO_V1 = SchemaRegistry.load().codec("AdEvent", 1)


def _event(i: int, **kw: object) -> dict[str, object]:
    return {
        "event_id": f"e{i}",
        "type": "click" if i % 3 else "impression",
        "occurred_at": NOW - 1000 - i,
        "campaign_id": "c",
        "creative_id": f"cr{i % 4}",
        "user_id": f"app-user-{i % 7}",
        "consent": {"personalization": i % 5 != 0},
        "context": {"country": "DE"},
        **kw,
    }


def _mixed(n: int) -> list[bytes | None]:
    out: list[bytes | None] = []
    for i in range(n):
        ev = _event(i)
        kind = i % 6
        if kind == 0:
            out.append(AVRO_V1.encode(ev))
        elif kind == 1:
            out.append(b"\xc3\x01 not avro at all")
        elif kind == 2:
            out.append(None)
        elif kind == 3:
            out.append(json.dumps({**ev, "occurred_at": "yesterday"}).encode())
        else:
            out.append(json.dumps(ev).encode())
    return out


async def test_workers_give_the_same_outcomes_in_order_as_in_process() -> None:
    values = _mixed(301)
    here = Transform(SPEC)(values, NOW)
    pool = TransformPool(SPEC, workers=2)
    await pool.start()
    try:
        assert len(pool.pids) == 2 and os.getpid() not in pool.pids
        there = await pool.run(values, NOW)
        # a batch of the sources' watermark records only leaves nothing to transform
        nothing = await pool.run([], NOW)
    finally:
        pool.stop()
    assert nothing.outcomes == [] and not nothing.formats
    assert there.outcomes == here.outcomes
    assert there.formats == here.formats == {"avro": 51, "json": 150}
    kinds = {type(o).__name__ for o in there.outcomes}
    assert kinds == {"tuple", "Rejection", "str"}  # forwarded, dead-lettered, consent-dropped


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=80) | st.none(), max_size=40))
def test_in_process_pool_slices_equal_one_pass(values: list[bytes | None]) -> None:
    pool = TransformPool(SPEC, workers=0)
    sliced = asyncio.run(pool.run(values * 60, NOW))  # > one slice of 250
    assert sliced.outcomes == Transform(SPEC)(values * 60, NOW).outcomes
    assert len(sliced.outcomes) == len(values) * 60


async def test_a_dead_worker_costs_no_batch_and_is_replaced() -> None:
    values = _mixed(60)
    expected = Transform(SPEC)(values, NOW).outcomes
    failures: list[int] = []
    pool = TransformPool(SPEC, workers=1, on_failure=lambda: failures.append(1))
    await pool.start()
    try:
        (victim,) = pool.pids
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: not alive_pids([victim]), timeout_s=10, what="the worker to die")
        assert (await pool.run(values, NOW)).outcomes == expected  # done in-process
        assert pool.rebuilt == 1 and failures == [1]
        assert pool.pids and pool.pids != [victim]
        assert (await pool.run(values, NOW)).outcomes == expected  # by the new worker
    finally:
        pool.stop()


async def test_ctrl_c_to_the_process_group_does_not_break_the_workers() -> None:
    values = _mixed(30)
    pool = TransformPool(SPEC, workers=1)
    await pool.start()
    try:
        (worker,) = pool.pids
        os.kill(worker, signal.SIGINT)
        os.kill(worker, signal.SIGTERM)
        assert (await pool.run(values, NOW)).outcomes == Transform(SPEC)(values, NOW).outcomes
        assert pool.rebuilt == 0 and alive_pids([worker]) == [worker]
    finally:
        pool.stop()


def test_workers_exit_when_the_service_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from services.ingestion.transform import TransformPool, TransformSpec
        from services.ingestion.validation import Limits

        async def main():
            pool = TransformPool(TransformSpec(b"s", 4096, Limits()), workers=2)
            await pool.start()
            print("PIDS", *pool.pids, flush=True)
            await asyncio.sleep(600)  # the service runs until the test kills it

        asyncio.run(main())
        """
    )
    service = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert service.stdout is not None
        line = next(line for line in service.stdout if line.startswith("PIDS"))
        pids = [int(p) for p in line.split()[1:]]
        assert pids and alive_pids(pids) == pids
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        gone = eventually(
            lambda: not alive_pids(pids), 10, f"orphaned transform workers {pids} to exit", 0.1
        )
        asyncio.run(gone)
    finally:
        service.kill()
        service.wait(10)
        service.stdout.close()


def test_the_secret_is_not_in_the_spec_repr() -> None:
    assert "unit-secret" not in repr(SPEC) and "unit-secret" not in str(SPEC)


def test_settle_refuses_outcomes_that_do_not_match_the_records() -> None:
    codecs = SchemaRegistry.load()
    processor = Processor(
        event_codec=codecs.codec("AdEvent"),
        dlq_codec=codecs.codec("DeadLetter"),
        secret=b"s",
        dedup=DedupWindow(1000, 1000),
        events_topic="e",
        dlq_topic="d",
        max_event_bytes=4096,
        dlq_max_value_bytes=4096,
        limits=Limits(),
    )
    done = Transform(SPEC)([b"{}"], NOW)
    assert isinstance(done.outcomes[0], Rejection)
    with pytest.raises(ValueError, match="1 outcomes for 2 records"):
        processor.settle([object(), object()], done, NOW)  # type: ignore[list-item]
