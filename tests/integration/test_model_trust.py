"""Only signed, confined, quality-gated models serve (issue #15), under continuous Decide
traffic: a forged artifact with a recomputed sha256, an unsigned model, one signed by an
untrusted key, one whose gate failed, and records naming file:///etc/passwd or an http://
URL are all refused — the URLs without being opened — while the good model keeps serving."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from services.common.model_store import ModelStore, sha256_hex
from services.common.settings import KafkaSettings
from services.common.signing import Signer, generate_key_pair
from services.common.topics import Topics
from tests.integration.inference_harness import (
    API_KEY,
    DecisionReader,
    InferenceProcess,
    publish_model,
    seed_campaign,
    write_model,
)
from tests.integration.test_inference_swap import _Load, _wait_refused

pytestmark = [pytest.mark.integration]


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path}")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not a model")

    def do_HEAD(self) -> None:
        self.requests.append(f"HEAD {self.path}")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    _Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.requests
    finally:
        server.shutdown()
        server.server_close()


def _forged(store_url: str, version: str) -> dict:
    """A signed model whose generator is then replaced, with the record's sha256 recomputed."""
    record = write_model(store_url, "spring", version, seed=5)
    store = ModelStore(store_url)
    gen = next(a for a in record["artifacts"] if a["name"] == "generator")
    evil = write_model(store_url, "spring", f"{version}-src", seed=9)
    data = store.get(next(a for a in evil["artifacts"] if a["name"] == "generator")["uri"])
    path = gen["uri"].removeprefix("file://")
    Path(path).write_bytes(data)
    gen.update(sha256=sha256_hex(data), size=len(data))
    return record


def _pointing(record: dict, uri: str) -> dict:
    for a in record["artifacts"]:
        if a["name"] == "generator":
            a["uri"] = uri
    return record


async def test_untrusted_models_are_refused_while_the_good_one_serves(
    kafka: KafkaSettings, topics: Topics, tmp_path: Path, http_server: tuple[str, list[str]]
) -> None:
    url, requests = http_server
    await seed_campaign(kafka, topics, "spring")
    proc = await InferenceProcess(kafka, tmp_path, ADMUSE_INFERENCE_POLICY_REFRESH_MS="50").start()
    store = proc.store_url
    try:
        async with DecisionReader(kafka, topics.decisions.name) as reader, _Load(proc.url) as load:
            await publish_model(kafka, topics, write_model(store, "spring", "good"))
            await reader.wait_for(lambda rs: any(r["model_version"] == "good" for r in rs), 15)
            stranger = Signer(generate_key_pair()[0])
            cases = [
                ("forged", "bad_sha256", _forged(store, "forged")),
                ("unsigned", "unsigned", write_model(store, "spring", "unsigned", signer=None)),
                ("stranger", "untrusted_key", write_model(store, "spring", "s", signer=stranger)),
                ("gate", "quality_gate", write_model(store, "spring", "g", quality_passed=False)),
                (
                    "passwd",
                    "outside_store",
                    _pointing(write_model(store, "spring", "p"), "file:///etc/passwd"),
                ),
                (
                    "ssrf",
                    "outside_store",
                    _pointing(write_model(store, "spring", "h"), f"{url}/generator.onnx"),
                ),
            ]
            for _name, reason, record in cases:
                await publish_model(kafka, topics, record)
                await _wait_refused(proc.url, reason)
            served_before = len(load.versions)
            await reader.wait_for(lambda rs: len(rs) >= served_before + 20)
        assert load.statuses and set(load.statuses) == {200}, (load.statuses, load.errors)
        assert not load.errors
        assert set(load.versions[served_before:]) == {"good"}
        assert requests == []  # the http:// URI was refused without a request
        async with httpx.AsyncClient(base_url=proc.url, headers={"X-API-Key": API_KEY}) as c:
            assert (await c.get("/readyz")).json()["models"] == {"spring": "good"}
        log = proc.log_tail(400)
        assert "/etc/passwd" in log and "root:" not in log
    finally:
        proc.stop()
