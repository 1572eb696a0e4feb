"""Inference HTTP and gRPC APIs against the real broker: one service process for the module."""

from __future__ import annotations

import asyncio
import io
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import mido
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from scipy.io import wavfile

from services.common.campaign import creative_records, parse_spec
from services.common.kafka import ensure_topics, make_producer
from services.common.privacy import pseudonymize
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.inference_harness import (
    API_KEY,
    OTHER_KEY,
    SECRET,
    DecisionReader,
    InferenceProcess,
    produce,
    seed_campaign,
)
from tests.keep_alive import serves_after_idle
from tests.polling import eventually
from tests.unit.domains.fixtures import FILM_SPEC, MUSIC_SPEC, record

pytestmark = pytest.mark.integration

HOLDOUT = 0.3
HOSTILE = "<script>alert(\"x\")</script> & 'quotes'"


@dataclass
class Served:
    kafka: KafkaSettings
    topics: Topics
    proc: InferenceProcess
    catalog: list[dict]

    def client(self, key: str | None = API_KEY) -> httpx.AsyncClient:
        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.proc.url, headers=headers, timeout=10.0)


@pytest.fixture(scope="module")
async def served(
    kafka_base: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    kafka = kafka_base.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:10]}."})
    topics = Topics.from_settings(kafka)
    await ensure_topics(kafka, topics)
    catalog = await seed_campaign(kafka, topics, "spring", holdout_share=HOLDOUT)
    hostile = {
        **catalog[0],
        "creative_id": "hostile",
        "status": "retired",
        "attributes": {**catalog[0]["attributes"], "headline": HOSTILE},
    }
    await produce(kafka, topics.creatives.name, "Creative", [("hostile", hostile)])
    producer = make_producer(kafka)  # a record no reader can decode: skipped, counted
    await producer.start()
    try:
        await producer.send_and_wait(topics.creatives.name, b"not avro", key=b"junk")
    finally:
        await producer.stop()
    proc = InferenceProcess(kafka, Path(tmp_path_factory.mktemp("inference")))
    await proc.start()
    try:
        yield Served(kafka, topics, proc, catalog)
    finally:
        proc.stop()


async def test_decide_answers_per_contract_and_logs_the_decision(served: Served) -> None:
    body = {
        "campaign_id": "spring",
        "user_id": "app-user-42",
        "context": {"country": "DE", "device": "mobile", "age_band": "30-39"},
    }
    async with served.client() as client:
        resp = await client.post("/v1/decide", json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["campaign_id"] == "spring"
    assert out["creative_id"] in {c["creative_id"] for c in served.catalog}
    assert out["segment"] == "country=DE|device=mobile"
    assert out["render_url"] == f"/v1/creatives/{out['creative_id']}.svg"
    assert 0 < out["propensity"] <= 1
    assert out["arm"] in ("optimized", "control")
    assert out["model_version"] is None
    async with DecisionReader(served.kafka, served.topics.decisions.name) as reader:
        records = await reader.wait_for(
            lambda rs: any(r["decision_id"] == out["decision_id"] for r in rs)
        )
    (logged,) = [r for r in records if r["decision_id"] == out["decision_id"]]
    assert logged["user_id"] == ""  # no user identity in the decision log (erasure)
    assert "app-user-42" not in str(logged)
    assert pseudonymize(SECRET.encode(), "app-user-42") not in str(logged)
    assert logged["propensity"] == pytest.approx(out["propensity"])
    assert logged["attribution_window_ms"] == 60_000
    assert logged["candidates"] == 3
    assert (logged["arm"], logged["policy"]) in {("optimized", "thompson"), ("control", "uniform")}
    assert logged["context"]["age_band"] == "30-39"
    assert "app-user-42" not in served.proc.log_path.read_text()


@pytest.mark.slow
async def test_holdout_share_and_control_policy(served: Served) -> None:
    n = 300
    results: list[httpx.Response] = []
    async with served.client() as client:
        for start in range(0, n, 20):
            results += await asyncio.gather(
                *[
                    client.post("/v1/decide", json={"campaign_id": "spring", "user_id": f"u{i}"})
                    for i in range(start, min(n, start + 20))
                ]
            )
    assert all(r.status_code == 200 for r in results)
    outs = [r.json() for r in results]
    arms = Counter(o["arm"] for o in outs)
    # binomial sd = sqrt(.3 * .7 / 300) = 0.026: 4 sd either side
    assert abs(arms["control"] / n - HOLDOUT) < 0.11, arms
    for o in outs:
        if o["arm"] == "control":
            assert (o["policy"], o["propensity"]) == ("uniform", pytest.approx(1 / 3))
        else:
            assert o["policy"] == "thompson"
    # the same user always lands in the same arm
    async with served.client() as client:
        again = await client.post("/v1/decide", json={"campaign_id": "spring", "user_id": "u7"})
    assert again.json()["arm"] == outs[7]["arm"]


async def test_api_keys_are_enforced_except_on_health(served: Served) -> None:
    decide = {"campaign_id": "spring", "user_id": "u"}
    for key in (None, "wrong-key"):
        async with served.client(key) as client:
            refused = await client.post("/v1/decide", json=decide)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "APIKey"
            assert (await client.get("/v1/creatives")).status_code == 401
            assert (await client.get("/v1/creatives/spring-c0.svg")).status_code == 401
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/openapi.json")).status_code == 200
            assert (await client.get("/metrics")).status_code == 200
    async with served.client(OTHER_KEY) as client:
        assert (await client.post("/v1/decide", json=decide)).status_code == 200


async def test_an_idle_keep_alive_connection_outlives_a_clients_idle_expiry(
    served: Served,
) -> None:
    await serves_after_idle(served.proc.url)


async def test_bad_requests_get_4xx_naming_the_field(served: Served) -> None:
    async with served.client() as client:
        missing = await client.post("/v1/decide", json={"user_id": "u"})
        bad_ctx = await client.post(
            "/v1/decide", json={"campaign_id": "spring", "user_id": "u", "context": {"a": 1}}
        )
        empty = await client.post("/v1/decide", json={"campaign_id": "spring", "user_id": ""})
        not_json = await client.post(
            "/v1/decide", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        unknown = await client.post("/v1/decide", json={"campaign_id": "autumn", "user_id": "u"})
    assert missing.status_code == 422 and "campaign_id" in missing.json()["message"]
    assert bad_ctx.status_code == 422 and "context" in bad_ctx.json()["message"]
    assert empty.status_code == 422 and "user_id" in empty.json()["message"]
    assert not_json.status_code == 422
    assert unknown.status_code == 404 and "autumn" in unknown.json()["detail"]


async def test_creatives_list_and_escaped_svg(served: Served) -> None:
    async with served.client() as client:
        live = (await client.get("/v1/creatives", params={"campaign_id": "spring"})).json()
        svg = await client.get("/v1/creatives/spring-c1.svg", params={"template": "split"})
        hostile = await client.get("/v1/creatives/hostile.svg")
        missing = await client.get("/v1/creatives/nope.svg")
    assert {c["creative_id"] for c in live["creatives"]} == {"spring-c0", "spring-c1", "spring-c2"}
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.startswith("<svg") and "New in" in svg.text
    assert hostile.status_code == 200
    assert "<script" not in hostile.text and "&lt;script&gt;" in hostile.text
    assert missing.status_code == 404


async def test_metrics_count_decisions_by_arm_and_skipped_state(served: Served) -> None:
    async with served.client() as client:
        await client.post("/v1/decide", json={"campaign_id": "spring", "user_id": "m"})
        text = (await client.get("/metrics")).text
    assert 'admuse_inference_decisions_total{api="http",arm="optimized"}' in text
    assert "admuse_inference_decide_latency_seconds_bucket" in text
    rejected = [line for line in text.splitlines()
                if line.startswith("admuse_inference_state_rejected_total{")]  # fmt: skip
    assert len(rejected) == 1 and 'reason="decode_error"' in rejected[0]
    assert rejected[0].endswith(" 1.0")


async def test_grpc_decide_and_health(served: Served) -> None:
    from services.inference.generated.admuse.v1 import decide_pb2, decide_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.proc.grpc_port}") as channel:
        # server reflection, as `grpcurl list` uses it
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([ask]), timeout=5
        )
        listed = {s.name async for a in answers for s in a.list_services_response.service}
        assert {"admuse.v1.DecideService", "grpc.health.v1.Health"} <= listed
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "admuse.v1.DecideService"):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stub = decide_pb2_grpc.DecideServiceStub(channel)
        req = decide_pb2.DecideRequest(
            campaign_id="spring", user_id="g-user", context={"country": "FR", "device": "desktop"}
        )
        key = (("x-api-key", API_KEY),)
        out = await stub.Decide(req, metadata=key, timeout=5)
        assert out.segment == "country=FR|device=desktop"
        assert out.creative_id.startswith("spring-c") and 0 < out.propensity <= 1
        assert out.attributes["headline"].text and out.attributes["font_scale"].number > 0
        failures = {
            "no key": (req, ()),
            "unknown": (decide_pb2.DecideRequest(campaign_id="autumn", user_id="u"), key),
            "no user": (decide_pb2.DecideRequest(campaign_id="spring"), key),
        }
        codes = {}
        for label, (r, md) in failures.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Decide(r, metadata=md, timeout=5)
            codes[label] = (err.value.code(), err.value.details())
    assert codes["no key"][0] == grpc.StatusCode.UNAUTHENTICATED
    assert codes["unknown"][0] == grpc.StatusCode.NOT_FOUND and "autumn" in codes["unknown"][1]
    assert codes["no user"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in codes["no user"][1]
    async with DecisionReader(served.kafka, served.topics.decisions.name) as reader:
        await reader.wait_for(lambda rs: any(r["decision_id"] == out.decision_id for r in rs))


@pytest.mark.slow
async def test_openapi_fuzzing_finds_no_server_error(served: Served) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    async with served.client() as client:
        spec = (await client.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec)
    strategy = st.one_of(
        schema.as_strategy(schemathesis.GenerationMode.POSITIVE),
        schema.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )
    seen: Counter[int] = Counter()

    @settings(
        max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=served.proc.url, headers={"X-API-Key": API_KEY}, timeout=10)
        seen[response.status_code] += 1
        assert response.status_code < 500, (case.as_curl_command(), response.text[:300])

    await asyncio.to_thread(fuzz)
    assert sum(seen.values()) >= 50
    assert any(200 <= s < 300 for s in seen) and any(400 <= s < 500 for s in seen), seen


async def test_music_and_film_creatives_are_served_as_audio_and_storyboards(
    served: Served,
) -> None:
    """A campaign's domain picks the renderings: WAV and MIDI read back by standard readers."""
    for spec in (MUSIC_SPEC, FILM_SPEC):
        topics = served.topics
        creatives = [(c["creative_id"], c) for c in creative_records(parse_spec(spec))]
        await produce(
            served.kafka, topics.campaigns.name, "Campaign", [(spec["campaign_id"], record(spec))]
        )
        await produce(served.kafka, topics.creatives.name, "Creative", creatives)
    async with served.client() as client:

        async def served_as_wav() -> bool:
            return (await client.get("/v1/creatives/jingle-up.wav")).status_code == 200

        await eventually(served_as_wav, 15, "the music creative served as WAV")
        wav = await client.get("/v1/creatives/jingle-up.wav")
        mid = await client.get("/v1/creatives/jingle-up.mid")
        lyric = await client.get("/v1/creatives/jingle-up.txt")
        no_svg = await client.get("/v1/creatives/jingle-up.svg")
        board = await client.get("/v1/creatives/pilot-classic.svg")
        no_wav = await client.get("/v1/creatives/spring-c1.wav")
    async with served.client(None) as anonymous:
        unauthorized = await anonymous.get("/v1/creatives/jingle-up.wav")
    assert wav.headers["content-type"] == "audio/wav"
    rate, pcm = wavfile.read(io.BytesIO(wav.content))
    assert abs(len(pcm) / rate - 3.25) < 0.01  # 6.5 beats at 120 bpm
    notes = [m.note for m in mido.MidiFile(file=io.BytesIO(mid.content)) if m.type == "note_on"]
    assert mid.headers["content-type"] == "audio/midi" and len(notes) == 6
    assert lyric.text == "C major\nSing it loud\n"
    assert no_svg.status_code == 404 and "music creatives render as" in no_svg.text
    assert board.status_code == 200 and ET.fromstring(board.content).tag.endswith("svg")
    assert no_wav.status_code == 404  # a banner has no audio
    assert unauthorized.status_code == 401


async def test_state_is_followed_live(served: Served) -> None:
    """A creative published while serving becomes a candidate; retired, it stops serving.
    (Runs last in this module: it leaves the catalog as it found it.)"""

    extra = {**served.catalog[1], "creative_id": "spring-live", "name": "added live"}
    body = {"campaign_id": "spring", "user_id": "live-user", "context": {"country": "DE"}}

    async def candidates_after(record: dict, want: int) -> None:
        await produce(served.kafka, served.topics.creatives.name, "Creative",
                      [("spring-live", record)])  # fmt: skip
        async with served.client() as client:

            async def logged_with_want() -> bool:
                did = (await client.post("/v1/decide", json=body)).json()["decision_id"]
                async with DecisionReader(served.kafka, served.topics.decisions.name) as reader:
                    recs = await reader.wait_for(
                        lambda rs, did=did: any(r["decision_id"] == did for r in rs)
                    )
                (logged,) = [r for r in recs if r["decision_id"] == did]
                return bool(logged["candidates"] == want)

            await eventually(logged_with_want, 15, f"decisions with {want} candidates")

    await candidates_after(extra, 4)
    await candidates_after({**extra, "status": "retired", "retired_at": 0}, 3)
    async with served.client() as client:
        live = (await client.get("/v1/creatives", params={"campaign_id": "spring"})).json()
    assert "spring-live" not in {c["creative_id"] for c in live["creatives"]}
