"""Hot model swap under load (issue acceptance): several models published while a client sends
requests continuously — zero non-2xx, each new version in decisions within 5 s of its
publication, a corrupted artifact refused while the old model keeps serving; the swapped-in
models add generated creatives that the bandit serves; a restart restores it all."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.settings import KafkaSettings
from services.common.topics import Topics
from tests.integration.inference_harness import (
    API_KEY,
    DecisionReader,
    InferenceProcess,
    publish_model,
    seed_campaign,
    write_model,
)
from tests.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class _Load:
    """Two clients sending Decide back to back until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.versions: list[str | None] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> _Load:
        self._tasks = [asyncio.create_task(self._client(w)) for w in range(2)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self, worker: int) -> None:
        contexts = [{"country": "DE", "device": "mobile"}, {"country": "FR", "device": "desktop"}]
        async with httpx.AsyncClient(
            base_url=self.url, headers={"X-API-Key": API_KEY}, timeout=10.0
        ) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                body = {
                    "campaign_id": "spring",
                    "user_id": f"w{worker}-{i}",
                    "context": contexts[i % 2],
                }
                try:
                    resp = await client.post("/v1/decide", json=body)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses[resp.status_code] += 1
                if resp.status_code == 200:
                    self.versions.append(resp.json()["model_version"])


async def _wait_refused(url: str, reason: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:

        async def refused() -> bool:
            text = (await client.get("/metrics")).text
            return _metric(text, "admuse_inference_models_refused_total", reason=reason) >= 1

        await eventually(refused, 15, f"the model to be refused for {reason}", 0.1)


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_hot_swap_under_load(kafka: KafkaSettings, topics: Topics, tmp_path: Path) -> None:
    await seed_campaign(kafka, topics, "spring")
    # No features service here: no CTR evidence, so the challenger budget assumes the lowest
    # CTR; a day to judge each challenger leaves the slice room for some at this load.
    proc = await InferenceProcess(
        kafka, tmp_path, ADMUSE_INFERENCE_POLICY_REFRESH_MS="50",
        ADMUSE_INFERENCE_CHALLENGER_DECIDE_S="86400",
    ).start()  # fmt: skip
    delays: dict[str, float] = {}
    try:
        async with DecisionReader(kafka, topics.decisions.name) as reader, _Load(proc.url) as load:

            async def swap(version: str, seed: int) -> None:
                published = await publish_model(
                    kafka, topics, write_model(proc.store_url, "spring", version, seed=seed)
                )
                recs = await reader.wait_for(
                    lambda rs: any(r["model_version"] == version for r in rs), timeout_s=15
                )
                first = min(
                    r["decided_at"].timestamp() for r in recs if r["model_version"] == version
                )
                delays[version] = first - published

            await reader.wait_for(lambda rs: len(rs) >= 20)
            for i, version in enumerate(["m1", "m2", "m3"]):
                await swap(version, seed=i)
            for version, reason, bad in (
                ("m4-bad", "bad_sha256", {"corrupt": True}),
                ("m5-bad", "signature_mismatch", {"bad_signature": True}),
            ):
                record = write_model(proc.store_url, "spring", version, **bad)
                await publish_model(kafka, topics, record)
                await _wait_refused(proc.url, reason)
            served_before = len(load.versions)
            await reader.wait_for(lambda rs: len(rs) >= served_before + 20)
        assert load.statuses and set(load.statuses) == {200}, (load.statuses, load.errors)
        assert not load.errors
        assert sum(load.statuses.values()) >= 100
        assert all(d < 5.0 for d in delays.values()), delays
        assert set(load.versions[served_before:]) == {"m3"}  # the refused model never served
        generated = [r for r in reader.records if r["candidates"] > 3]
        assert generated, "generated creatives never entered the bandit"
        async with httpx.AsyncClient(base_url=proc.url, headers={"X-API-Key": API_KEY}) as c:
            live = (await c.get("/v1/creatives", params={"campaign_id": "spring"})).json()
        made = [x for x in live["creatives"] if x["origin"] == "generated"]
        assert made and {x["model_version"] for x in made} <= {"m1", "m2", "m3"}
        assert all(0 < x["prior_alpha"] and 0 < x["prior_beta"] for x in made)
        await _assert_restart_restores(proc, kafka, tmp_path, {x["creative_id"] for x in made})
    finally:
        proc.stop()


async def _assert_restart_restores(
    proc: InferenceProcess, kafka: KafkaSettings, tmp_path: Path, generated: set[str]
) -> None:
    """A fresh process is ready only once restored: it serves m3 and the same creatives at once,
    and generates nothing new for a model whose creatives are already live."""
    assert proc.stop() == 0
    again = await InferenceProcess(
        kafka, tmp_path / "second", ADMUSE_MODEL_STORE_URL=proc.store_url
    ).start()
    try:
        async with httpx.AsyncClient(base_url=again.url, headers={"X-API-Key": API_KEY}) as c:
            ready = (await c.get("/readyz")).json()
            first: Any = (
                await c.post("/v1/decide", json={"campaign_id": "spring", "user_id": "after"})
            ).json()
            live = (await c.get("/v1/creatives", params={"campaign_id": "spring"})).json()
        assert ready["models"] == {"spring": "m3"}
        assert first["model_version"] == "m3"
        again_generated = {
            x["creative_id"] for x in live["creatives"] if x["origin"] == "generated"
        }
        assert again_generated == generated
        assert not any(
            re.search(r"generated_creatives_admitted.*\"admitted\": [1-9]", line)
            for line in again.log_tail(400).splitlines()
        )
    finally:
        again.stop()
