"""Pause, resume and stop through `admuse campaign …`, honoured by a running inference over
HTTP and gRPC, against the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from services.cli import app
from services.cli.campaign import apply_spec
from services.common.campaign import parse_spec
from services.common.campaign_ops import read_campaigns, read_creatives, review_creative
from services.common.kafka import ensure_topics
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.inference_harness import (
    API_KEY,
    DecisionReader,
    InferenceProcess,
    seed_campaign,
)
from tests.polling import eventually
from tests.unit.common.test_campaign import SPEC

pytestmark = pytest.mark.integration


async def admuse(kafka: KafkaSettings, *args: str) -> tuple[int, str]:
    """Run the real `admuse` command (in a thread: it runs its own event loop); its output
    with the terminal's line wrapping undone."""
    env = {
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
async def served(kafka: KafkaSettings, topics: Topics, tmp_path: Path) -> AsyncIterator[Any]:
    await seed_campaign(kafka, topics, "spring", fallback_creative_id="spring-c1")
    proc = InferenceProcess(kafka, tmp_path)
    await proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def test_pause_serves_the_fallback_resume_serves_the_policy_stop_is_final(
    kafka: KafkaSettings, topics: Topics, served: InferenceProcess
) -> None:
    from services.inference.generated.admuse.v1 import decide_pb2, decide_pb2_grpc

    body = {"campaign_id": "spring", "user_id": "u-1", "context": {"country": "DE"}}
    decided: set[str] = set()
    async with (
        httpx.AsyncClient(base_url=served.url, headers={"X-API-Key": API_KEY}) as client,
        grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel,
    ):
        stub = decide_pb2_grpc.DecideServiceStub(channel)

        async def status() -> str:
            answer = (await client.post("/v1/decide", json=body)).json()
            if answer["status"] == "active":
                decided.add(answer["decision_id"])
            return str(answer["status"])

        assert await status() == "active"
        code, out = await admuse(kafka, "campaign", "pause", "spring", "--by", "ana")
        assert code == 0 and "active → paused" in out, out
        assert (await read_campaigns(kafka))["spring"]["state_changed_by"] == "ana"
        await eventually(lambda: _is(status, "paused"), 10, "Decide to answer paused")
        for i in range(20):
            resp = await client.post("/v1/decide", json={**body, "user_id": f"p-{i}"})
            answer = resp.json()
            assert resp.status_code == 200 and answer["status"] == "paused", answer
            assert answer["decision_id"] is None and answer["creative_id"] == "spring-c1"
            assert answer["render_url"] == "/v1/creatives/spring-c1.svg"
        req = decide_pb2.DecideRequest(campaign_id="spring", user_id="g", context={"a": "b"})
        out_grpc = await stub.Decide(req, metadata=(("x-api-key", API_KEY),), timeout=5)
        assert out_grpc.status == "paused" and out_grpc.creative_id == "spring-c1"
        assert out_grpc.decision_id == "" and "paused" in out_grpc.message
        code, out = await admuse(kafka, "campaign", "pause", "spring")
        assert code == 0 and "already paused" in out, out

        code, out = await admuse(kafka, "campaign", "resume", "spring")
        assert code == 0 and "paused → active" in out, out
        await eventually(lambda: _is(status, "active"), 10, "Decide to answer active again")
        metrics = (await client.get("/metrics")).text

        code, out = await admuse(kafka, "campaign", "stop", "spring")
        assert code == 0 and "active → stopped" in out, out
        await eventually(lambda: _is(status, "stopped"), 10, "Decide to answer stopped")
        code, out = await admuse(kafka, "campaign", "resume", "spring")
        assert code == 2 and "stopping is final" in out, out
        assert await status() == "stopped"
    held = _metric(metrics, "admuse_inference_held_answers_total", status="paused")
    assert held >= 22  # every paused answer counted (HTTP polls included), none as an error
    assert _metric(metrics, "admuse_inference_decide_errors_total") == 0
    # Paused answers logged no decision: the log holds exactly the active answers.
    async with DecisionReader(kafka, topics.decisions.name) as reader:
        await reader.wait_for(lambda rs: {r["decision_id"] for r in rs} >= decided)
        await reader.poll()
    assert sorted(r["decision_id"] for r in reader.records) == sorted(decided)
    campaign = (await read_campaigns(kafka))["spring"]
    assert campaign["state"] == "stopped" and campaign["revision"] == 4


async def _is(status: Any, want: str) -> bool:
    return bool(await status() == want)


async def test_apply_keeps_the_state_blocks_and_pins_and_unknown_campaigns_are_named(
    kafka_base: KafkaSettings,
) -> None:
    kafka = kafka_base.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    await ensure_topics(kafka, Topics.from_settings(kafka))
    spec = parse_spec(SPEC)
    await apply_spec(kafka, spec)
    code, out = await admuse(kafka, "campaign", "pause", "spring")
    assert code == 0, out
    result = await apply_spec(kafka, spec)  # the spec changes; the lifecycle does not
    campaign = (await read_campaigns(kafka))["spring"]
    assert result.revision == 3 and campaign["state"] == result.state == "paused"
    assert campaign["state_changed_at"] is not None
    # A person's review outlives the spec, through the same write path the console uses.
    await review_creative(kafka, "soft-1", "block", by="ana")
    await review_creative(
        kafka, "spring-classic", "pin", by="ana", segment="country=DE|device=mobile"
    )
    result = await apply_spec(kafka, spec)
    creatives = await read_creatives(kafka, "spring")
    assert result.blocked == ["soft-1"] and result.creatives == ["spring-classic"]
    assert creatives["soft-1"]["status"] == "blocked"
    assert creatives["spring-classic"]["pinned"] == "country=DE|device=mobile"
    assert creatives["spring-classic"]["status"] == "live"
    code, out = await admuse(kafka, "campaign", "list")
    assert code == 0 and "spring" in out and "paused" in out, out
    code, out = await admuse(kafka, "campaign", "stop", "autumn")
    assert code == 3 and "unknown campaign 'autumn'" in out, out
