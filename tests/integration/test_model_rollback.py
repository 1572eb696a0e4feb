"""A deliberately bad model is rolled back under live traffic with zero failed Decides.

The test plays the part of the users and of features: it sends Decide requests without pause,
"clicks" with a probability set by the served creative (the bad model's creatives almost never
earn a reward, every other creative often), and publishes the campaign roll-up CreativeStats
(segment '*') to admuse.stats as features would. Inference must detect, with its sequential
test, that the newly swapped model's creatives do worse than the ones serving before it, swap
the previous model back, retire the bad creatives, and publish the previous record again."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from services.common.codec import SchemaRegistry
from services.common.kafka import make_producer
from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.inference_harness import (
    API_KEY,
    InferenceProcess,
    publish_model,
    seed_campaign,
    write_model,
)
from tests.integration.test_inference_swap import _metric
from tests.polling import eventually

pytestmark = [pytest.mark.integration]

CONTEXTS = [{"country": "DE", "device": "mobile"}, {"country": "FR", "device": "desktop"}]


class _Traffic:
    """Decide without pause; reward by creative; publish '*' stats every 0.2 s."""

    def __init__(self, kafka: KafkaSettings, topics: Topics, url: str, bad: set[str]) -> None:
        self.kafka, self.topics, self.url, self.bad = kafka, topics, url, bad
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.versions: list[str | None] = []
        self.served: Counter[str] = Counter()
        self.clicks: Counter[str] = Counter()
        self.creative_version: dict[str, str | None] = {}
        self._stop = asyncio.Event()
        self._rng = random.Random(5)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> _Traffic:
        self._tasks = [asyncio.create_task(self._users()), asyncio.create_task(self._stats())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _users(self) -> None:
        async with httpx.AsyncClient(
            base_url=self.url, headers={"X-API-Key": API_KEY}, timeout=10.0
        ) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                body = {"campaign_id": "spring", "user_id": f"u{i}", "context": CONTEXTS[i % 2]}
                try:
                    resp = await client.post("/v1/decide", json=body)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses[resp.status_code] += 1
                if resp.status_code != 200:
                    continue
                out = resp.json()
                self.versions.append(out["model_version"])
                cid = out["creative_id"]
                self.served[cid] += 1
                made_by = await self._version_of(client, cid)
                if self._rng.random() < (0.01 if made_by in self.bad else 0.5):
                    self.clicks[cid] += 1

    async def _version_of(self, client: httpx.AsyncClient, cid: str) -> str | None:
        if cid not in self.creative_version:
            live = (await client.get("/v1/creatives", params={"campaign_id": "spring"})).json()
            for c in live["creatives"]:
                self.creative_version[c["creative_id"]] = c.get("model_version")
        return self.creative_version.get(cid)

    async def _stats(self) -> None:
        codec = SchemaRegistry.load().codec("CreativeStats")
        producer = make_producer(self.kafka)
        await producer.start()
        sent: dict[str, int] = {}
        try:
            while not self._stop.is_set():
                await asyncio.sleep(0.2)
                for cid, n in list(self.served.items()):
                    if sent.get(cid) == n:
                        continue
                    sent[cid] = n
                    clicks = self.clicks[cid]
                    record = {
                        "campaign_id": "spring", "segment": "*", "creative_id": cid,
                        "window_start": None, "window_ms": None, "impressions": n,
                        "clicks": clicks, "conversions": 0, "reward_sum": float(clicks),
                        "alpha": 1.0 + clicks, "beta": 1.0 + n - clicks,
                        "decay_half_life_s": None, "updated_at": int(time.time() * 1000),
                    }  # fmt: skip
                    await producer.send_and_wait(
                        self.topics.stats.name, codec.encode(record), key=f"spring/*/{cid}".encode()
                    )
        finally:
            await producer.stop()


async def test_bad_model_is_rolled_back_under_traffic(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    await seed_campaign(kafka, topics, "spring", max_generated=8)
    proc = await InferenceProcess(
        kafka,
        tmp_path,
        ADMUSE_INFERENCE_POLICY_REFRESH_MS="50",
        ADMUSE_INFERENCE_EXPLORATION_FLOOR="0.5",
        ADMUSE_INFERENCE_ROLLBACK_RHO="50",
        ADMUSE_INFERENCE_ROLLBACK_MIN_IMPRESSIONS="30",
        ADMUSE_INFERENCE_ROLLBACK_CHECK_S="0.5",
        # Challengers (#20) get half the traffic, judged coarsely within a day, so both models'
        # creatives are admitted and served at once, as the rollback's comparison needs.
        ADMUSE_INFERENCE_CHALLENGER_SHARE="0.5",
        ADMUSE_INFERENCE_CHALLENGER_DECIDE_S="86400",
        ADMUSE_INFERENCE_CHALLENGER_PRECISION="1.0",
    ).start()
    try:
        async with _Traffic(kafka, topics, proc.url, {"bad"}) as traffic:
            await publish_model(kafka, topics, write_model(proc.store_url, "spring", "m1", seed=1))
            await eventually(lambda: "m1" in traffic.versions, 20, "m1 serving")
            await eventually(lambda: sum(traffic.served.values()) >= 300, 60, "traffic on m1")
            swapped = len(traffic.versions)
            await publish_model(kafka, topics, write_model(proc.store_url, "spring", "bad", seed=7))
            await eventually(lambda: "bad" in traffic.versions[swapped:], 20, "bad serving")

            async def rolled_back() -> bool:
                async with httpx.AsyncClient(base_url=proc.url) as c:
                    text = (await c.get("/metrics")).text
                return _metric(text, "admuse_inference_model_rollbacks_total") >= 1

            await eventually(rolled_back, 90, "the bad model to be rolled back", 0.2)
            after = len(traffic.versions)
            await eventually(lambda: len(traffic.versions) >= after + 50, 30, "traffic after")
        assert traffic.statuses and set(traffic.statuses) == {200}, traffic.statuses
        assert not traffic.errors
        assert set(traffic.versions[after + 5 :]) == {"m1"}
        async with httpx.AsyncClient(base_url=proc.url, headers={"X-API-Key": API_KEY}) as c:
            live = (await c.get("/v1/creatives", params={"campaign_id": "spring"})).json()
            ready = (await c.get("/readyz")).json()
        assert not [x for x in live["creatives"] if x.get("model_version") == "bad"]
        assert ready["models"] == {"spring": "m1"}
        log = proc.log_tail(400)
        assert "model_rolled_back" in log
        async with httpx.AsyncClient(base_url=proc.url) as c:
            text = (await c.get("/metrics")).text
        watched = "admuse_inference_rollback_watch_reward_rate"
        assert _metric(text, watched, arm="new") < _metric(text, watched, arm="baseline")
        assert _metric(text, "admuse_inference_rollback_watch_impressions", arm="new") >= 30
    finally:
        proc.stop()
    # The previous record was published again: a restart serves m1, not the bad model.
    again = await InferenceProcess(
        kafka, tmp_path / "again", ADMUSE_MODEL_STORE_URL=proc.store_url
    ).start()
    try:
        async with httpx.AsyncClient(base_url=again.url, headers={"X-API-Key": API_KEY}) as c:
            assert (await c.get("/readyz")).json()["models"] == {"spring": "m1"}
    finally:
        again.stop()


async def test_admuse_models_list_pin_and_rollback(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path
) -> None:
    import json
    import os
    import sys

    from services.common.model_store import ModelStore
    from services.common.signing import TrustedKeys
    from tests.integration.inference_harness import PUBLIC_KEY, REPO
    from tests.integration.test_trainer import _models

    store_url = f"file://{tmp_path / 'store'}"
    old, new = "20261201T000000000Z-aaaaaa", "20261202T000000000Z-bbbbbb"
    for version in (old, new):
        write_model(store_url, "spring", version)
    await publish_model(kafka, topics, write_model(store_url, "spring", new))
    env = {
        **os.environ,
        "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ADMUSE_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "ADMUSE_MODEL_STORE_URL": store_url,
        "COLUMNS": "200",
    }

    async def admuse(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from services.cli import app; app()", "models", *args,
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        return proc.returncode or 0, out.decode()

    code, out = await admuse("list", "spring")
    assert code == 0, out
    lines = {line.split()[1]: line for line in out.splitlines() if "Z-" in line}
    assert set(lines) == {old, new} and "serving" in lines[new] and "serving" not in lines[old]
    code, out = await admuse("rollback", "spring")
    assert code == 0 and old in out, out
    registry = SchemaRegistry.load()
    records = await _models(kafka, registry, topics.models.name, 2, 30)
    pinned = records[-1]
    assert pinned["version"] == old
    store = ModelStore(store_url)
    arts = {a["name"]: a for a in pinned["artifacts"]}
    signed = TrustedKeys.parse(PUBLIC_KEY).verify(
        store.get(arts["signature"]["uri"]), "spring", old
    )
    assert all(signed[r]["sha256"] == arts[r]["sha256"] for r in signed)
    assert json.loads(store.get(arts["metadata"]["uri"]))["version"] == old
    code, out = await admuse("pin", "spring", "no-such-version")
    assert code == 2 and "no signed version" in out
