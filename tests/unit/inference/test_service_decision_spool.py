"""The decision spool on its own (no broker: the producer factory always fails)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from services.common.codec import SchemaRegistry
from services.inference.decisions import DecisionLog
from services.inference.metrics import Metrics


def _no_broker() -> AIOKafkaProducer:
    raise OSError("no broker here")


def _decision(i: int) -> dict[str, Any]:
    return {"decision_id": f"d{i:04d}", "decided_at": int(time.time() * 1000),
            "campaign_id": "c", "segment": "*", "user_id": "p", "creative_id": "x",
            "propensity": 1.0, "arm": "control", "policy": "uniform", "policy_version": "v",
            "attribution_window_ms": 1}  # fmt: skip


def _log(spool: Path, **kw: Any) -> DecisionLog:
    codec = SchemaRegistry.load().codec("Decision")
    return DecisionLog(_no_broker, "t", codec, spool, Metrics(),
                       retry_backoff_s=(0.01, 0.05), **kw)  # fmt: skip


def _spooled_ids(log: DecisionLog, n: int) -> list[str]:
    records, _ = log._spool.read(n)
    return [k.decode() for k, _ in records]


async def test_close_keeps_memory_before_the_spool_in_submission_order(tmp_path: Path) -> None:
    spool = tmp_path / "d.spool"
    log = _log(spool, buffer_size=5)
    await log.start()
    for i in range(12):  # 5 in memory, 7 spilled
        log.submit(_decision(i))
    await log.close(flush_timeout_s=0.2)
    again = _log(spool)
    await again.start()
    assert again.pending == 12
    assert _spooled_ids(again, 12) == [f"d{i:04d}" for i in range(12)]
    await again.close(flush_timeout_s=0.1)


async def test_a_torn_last_frame_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    spool = tmp_path / "d.spool"
    log = _log(spool, buffer_size=1)
    await log.start()
    for i in range(3):
        log.submit(_decision(i))
    await log.close(flush_timeout_s=0.1)
    with spool.open("ab") as fh:
        fh.write(b"\x00\x00\x00\x05\x00\x00\x01\x00abc")  # a crash in mid-write
    again = _log(spool)
    await again.start()
    assert again.pending == 3
    assert _spooled_ids(again, 5) == ["d0000", "d0001", "d0002"]
    again.submit(_decision(3))
    await again.close(flush_timeout_s=0.1)
    third = _log(spool)
    await third.start()
    assert _spooled_ids(third, 10) == ["d0000", "d0001", "d0002", "d0003"]
    await third.close(flush_timeout_s=0.1)


async def test_an_unwritable_spool_keeps_decisions_in_memory(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    log = _log(folder / "d.spool", buffer_size=2)
    await log.start()
    folder.rmdir()  # the spool folder vanished (a lost volume, say)
    for i in range(5):
        log.submit(_decision(i))  # never raises for the spool's sake
    assert log.pending == 5
    assert log._metrics.decision_spool_errors._value.get() == 3
    await log.close(flush_timeout_s=0.1)  # nowhere to save them: logged, not raised
