"""The approval workflow and the review actions through `admuse creatives …`, honoured by a
running inference (and by a restarted one), against the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.campaign_ops import read_creatives
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.inference_harness import (
    API_KEY,
    InferenceProcess,
    publish_model,
    seed_campaign,
    write_model,
)
from tests.integration.test_campaign_lifecycle import admuse
from tests.polling import eventually
from tests.unit.inference.onnx_fixtures import SEGMENTS

pytestmark = pytest.mark.integration

SEGMENT = SEGMENTS[0]
CONTEXT = dict(part.split("=") for part in SEGMENT.split("|"))
# No features service here: a day to judge each challenger leaves the slice room at this load.
ENV = {"ADMUSE_INFERENCE_CHALLENGER_DECIDE_S": "86400",
       "ADMUSE_INFERENCE_CHALLENGER_SHARE": "0.5", "ADMUSE_INFERENCE_RETIRE_CHECK_S": "1",
       "ADMUSE_INFERENCE_POLICY_REFRESH_MS": "50"}  # fmt: skip


class Traffic:
    """Decide calls in the test's segment, by distinct users; every answer kept."""

    def __init__(self, url: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=url,
            headers={"X-API-Key": API_KEY},
            limits=httpx.Limits(max_connections=16),  # a batch queues for a connection
            timeout=httpx.Timeout(30, pool=None),
        )
        self._n = 0

    async def batch(self, n: int = 100) -> list[dict[str, Any]]:
        async def one(i: int) -> dict[str, Any]:
            body = {"campaign_id": "spring", "user_id": f"u{i}", "context": CONTEXT}
            resp = await self._client.post("/v1/decide", json=body)
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

        start, self._n = self._n, self._n + n
        return await asyncio.gather(*(one(i) for i in range(start, start + n)))

    async def served(self, n: int = 100) -> set[str]:
        return {a["creative_id"] for a in await self.batch(n)}

    async def creative(self, creative_id: str) -> dict[str, Any]:
        return dict((await self._client.get(f"/v1/creatives/{creative_id}")).json())

    async def close(self) -> None:
        await self._client.aclose()


@pytest.fixture
async def proc(kafka: KafkaSettings, topics: Topics, tmp_path: Path) -> AsyncIterator[Any]:
    await seed_campaign(kafka, topics, "spring", approval="required", holdout_share=0.2)
    proc = await InferenceProcess(kafka, tmp_path, **ENV).start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_pending_until_approved_then_blocked_for_good_across_a_kill(
    kafka: KafkaSettings, topics: Topics, proc: InferenceProcess, tmp_path: Path
) -> None:
    traffic = Traffic(proc.url)
    try:
        await traffic.batch(300)  # measured traffic sizes the challenger slice
        await publish_model(kafka, topics, write_model(proc.store_url, "spring", "m1"))

        async def queue() -> dict[str, dict[str, Any]]:
            every = await read_creatives(kafka, "spring", "pending")
            return {k: c for k, c in every.items() if c["segment"] == SEGMENT}

        await eventually(queue, 30, "generated creatives to wait for approval")
        pending = sorted(await queue())
        served = await traffic.served(300)
        assert not served & set(pending), "a creative waiting for approval was served"
        code, out = await admuse(kafka, "creatives", "list", "--status", "pending")
        assert code == 0 and all(cid in out for cid in pending), out

        chosen, other = pending[0], pending[-1]
        code, out = await admuse(kafka, "creatives", "approve", chosen, "--by", "ana")
        assert code == 0 and "is now live" in out, out
        await eventually(lambda: _serves(traffic, chosen), 15, "the approved creative to serve")
        assert (await read_creatives(kafka))[chosen]["reviewed_by"] == "ana"

        code, out = await admuse(kafka, "creatives", "block", chosen)
        assert code == 0 and "is now blocked" in out, out
        await eventually(lambda: _status(traffic, chosen, "blocked"), 10, "inference to see it")
        assert chosen not in await traffic.served(400)
        code, out = await admuse(kafka, "creatives", "approve", chosen)
        assert code == 2 and "blocking is final" in out, out
        code, out = await admuse(kafka, "creatives", "pin", other)
        assert code == 2 and "approve it first" in out, out
    finally:
        await traffic.close()
    proc.kill()  # SIGKILL: the new process knows only what the topics say
    again = await InferenceProcess(kafka, tmp_path, **ENV).start()
    traffic = Traffic(again.url)
    try:
        assert (await traffic.creative(chosen))["status"] == "blocked"
        assert chosen not in await traffic.served(400)
        assert not set(pending[1:]) & await traffic.served(200)  # still waiting
    finally:
        await traffic.close()
        again.stop()


async def test_pin_holds_the_optimized_arm_and_retire_stops_a_creative(
    kafka: KafkaSettings, proc: InferenceProcess
) -> None:
    traffic = Traffic(proc.url)
    try:
        assert {"spring-c0", "spring-c1", "spring-c2"} == await traffic.served(200)
        code, out = await admuse(kafka, "creatives", "pin", "spring-c1", "--segment", "country=DE")
        assert code == 2 and "not a segment of this campaign" in out, out  # no request matches
        code, out = await admuse(kafka, "creatives", "pin", "spring-c1", "--segment", SEGMENT)
        assert code == 0 and f"pinned for {SEGMENT}" in out, out

        async def pinned() -> bool:
            answers = await traffic.batch(100)
            optimized = [a for a in answers if a["arm"] == "optimized"]
            return bool(optimized) and all(
                a["creative_id"] == "spring-c1" and a["policy"] == "pinned"
                and a["propensity"] == 1.0 for a in optimized
            )  # fmt: skip

        await eventually(pinned, 10, "the pin to hold the optimized arm")
        control = [a for a in await traffic.batch(200) if a["arm"] == "control"]
        assert control and {a["policy"] for a in control} == {"uniform"}  # the holdout stays
        assert len({a["creative_id"] for a in control}) > 1

        code, out = await admuse(kafka, "creatives", "retire", "spring-c1")
        assert code == 0 and "is now retired" in out, out
        await eventually(lambda: _status(traffic, "spring-c1", "retired"), 10, "the retirement")
        answers = await traffic.batch(300)
        assert "spring-c1" not in {a["creative_id"] for a in answers}
        assert {a["policy"] for a in answers if a["arm"] == "optimized"} == {"thompson"}
        code, out = await admuse(kafka, "creatives", "block", "nope")
        assert code == 3 and "unknown creative 'nope'" in out, out
    finally:
        await traffic.close()


async def _serves(traffic: Traffic, creative_id: str) -> bool:
    return creative_id in await traffic.served(100)


async def _status(traffic: Traffic, creative_id: str, status: str) -> bool:
    return bool((await traffic.creative(creative_id))["status"] == status)
