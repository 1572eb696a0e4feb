"""HTTP collector for apps that cannot speak Kafka: POST /v1/events → admuse.events.raw.

Each event of a request is checked with the same rules the stream applies; valid ones are
written to the raw topic (keyed by event_id, so retries of one event share a partition) and
acknowledged by Kafka before the 202 answer lists what was accepted. Invalid ones, and valid
ones without personalization consent (which the stream would drop), are not written: the
answer marks them not accepted and says why, per event. When Kafka does not acknowledge every
valid event within `kafka_timeout_s` (broker away, producer being replaced) the answer is 503
with `Retry-After` and the per-event results (those `accepted` were written): the app sends
the request again and ingestion drops the copies by event_id. The collector is a live source
of the raw topic (services/common/source_watermark.py): its claim stays below every event it
is writing, and below every refused one until the resend horizon has passed (it states claims
from the first event it receives on: until then it holds nothing). Bodies: one JSON
object, a JSON array, or NDJSON (`Content-Type: application/x-ndjson`, one object per line),
optionally `Content-Encoding: gzip` (the size limit applies to the compressed and the inflated
body). Also /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.privacy import ApiKeys
from services.common.producer import NotDelivered, ResilientProducer
from services.common.source_watermark import HeldEvents, SourceWatermarks
from services.ingestion.decoding import decode_json
from services.ingestion.metrics import IngestionMetrics
from services.ingestion.rejection import Rejection
from services.ingestion.validation import Limits, consent_verdict, validate_event

__all__ = ["build_http_app"]

_VIA_HEADER = ("admuse-via", b"http")


def build_http_app(
    *,
    producer: ResilientProducer,
    raw_topic: str,
    metrics: IngestionMetrics,
    api_keys: frozenset[str],
    allow_without_key: bool,
    max_body_bytes: int,
    max_batch: int,
    limits: Limits,
    is_ready: Callable[[], bool],
    is_alive: Callable[[], bool],
    kafka_timeout_s: float = 1.5,
    retry_after_s: int = 5,
    source: SourceWatermarks | None = None,
    resend_horizon_s: float = 30.0,
) -> FastAPI:
    """The collector's FastAPI app; the caller owns the producer's lifecycle."""
    app = FastAPI(title="admuse ingestion", docs_url=None, redoc_url=None)
    keys = ApiKeys(api_keys)
    held = source.held if source is not None else HeldEvents()

    def authorized(request: Request) -> bool:
        if not keys:
            return allow_without_key
        return keys.matches(request.headers.get("x-api-key"))

    @app.get("/healthz")
    async def healthz() -> Response:
        if is_alive():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "stream stopped"}, status_code=503)

    @app.get("/readyz")
    async def readyz() -> Response:
        if is_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse(
            {"status": "starting: waiting for partitions and the dedup rebuild"}, status_code=503
        )

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/events", status_code=202)
    async def post_events(request: Request) -> Response:
        if not authorized(request):
            return _error(
                401,
                "missing or unknown X-API-Key",
                headers={"WWW-Authenticate": 'APIKey header="X-API-Key"'},
            )
        body = await _read_body(request, max_body_bytes)
        if body is None:
            return _error(413, f"request body is larger than {max_body_bytes} bytes")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = _gunzip(body, max_body_bytes)
            except ValueError as exc:
                return _error(400 if "gzip" in str(exc) else 413, str(exc))
        elif encoding not in ("", "identity"):
            return _error(415, f"Content-Encoding {encoding!r} is not supported; use gzip")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("application/x-ndjson", "application/jsonl", "application/json-seq"):
            items = []
            for number, line in enumerate(body.splitlines(), 1):
                if not line.strip():
                    continue
                one = decode_json(line)
                if isinstance(one, Rejection):
                    return _error(400, f"NDJSON line {number}: {one.message}")
                items.append(one.value)
        else:
            decoded = decode_json(body)
            if isinstance(decoded, Rejection):
                return _error(
                    400,
                    f"{decoded.message}; send one JSON event object, an array, or NDJSON "
                    "(Content-Type: application/x-ndjson)",
                )
            items = decoded.value if isinstance(decoded.value, list) else [decoded.value]
        if len(items) > max_batch:
            return _error(413, f"{len(items)} events in one request; at most {max_batch}")
        return await _accept(items)

    async def _accept(items: list[Any]) -> Response:
        now_ms = time.time_ns() // 1_000_000
        results: list[dict[str, Any]] = []
        sends: dict[int, Any] = {}
        holds: dict[int, tuple[int, int]] = {}  # index -> (token, occurred_at ms)
        for index, item in enumerate(items):
            checked = validate_event(item, now_ms=now_ms, limits=limits)
            if isinstance(checked, Rejection):
                results.append(
                    _rejected(index, item, checked.reason, checked.field, checked.message)
                )
                continue
            dropped = consent_verdict(checked.fields["consent"])
            if dropped is not None:
                results.append(
                    _rejected(
                        index, item, dropped, "consent",
                        "not forwarded: the event has no personalization consent "
                        '(consent {"personalization": true})',
                    )
                )  # fmt: skip
                continue
            results.append({"index": index, "event_id": checked.event_id, "accepted": True})
            if source is not None:
                source.start()  # a live source from its first event on (idempotent)
            occurred = int(checked.fields["occurred_at"])
            holds[index] = (held.hold(occurred), occurred)
            sends[index] = producer.send(
                raw_topic,
                _raw_bytes(item),
                key=checked.event_id.encode(),
                headers=[_VIA_HEADER],
                timeout_s=kafka_timeout_s,
            )
        try:
            outcomes = await asyncio.gather(*sends.values(), return_exceptions=True)
        finally:
            for token, _ in holds.values():
                held.release(token)
        unavailable = 0
        resend_by = time.time_ns() // 1_000_000 + int(resend_horizon_s * 1000)
        for index, outcome in zip(sends, outcomes, strict=True):
            if isinstance(outcome, NotDelivered):
                unavailable += 1
                held.refused(holds[index][1], resend_by)  # the app resends it: wait for it
                results[index] = _rejected(
                    index, items[index], "unavailable", None, f"not written to Kafka: {outcome}"
                )
            elif isinstance(outcome, BaseException):
                raise outcome
        accepted = sum(1 for r in results if r["accepted"])
        metrics.http_events.labels("accepted").inc(accepted)
        metrics.http_events.labels("unavailable").inc(unavailable)
        metrics.http_events.labels("rejected").inc(len(results) - accepted - unavailable)
        body = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
        if unavailable:
            body["error"] = f"Kafka is unavailable: {unavailable} event(s) not written; retry"
            return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry_after_s)})
        return JSONResponse(body, status_code=202)

    return app


def _raw_bytes(item: Any) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode("ascii")


def _rejected(
    index: int, item: Any, reason: str, field: str | None, message: str
) -> dict[str, Any]:
    event_id = item.get("event_id") if isinstance(item, dict) else None
    return {
        "index": index,
        "event_id": event_id if isinstance(event_id, str) else None,
        "accepted": False,
        "reason": reason,
        "field": field,
        "message": message,
    }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing more than `limit` bytes of output (a gzip bomb)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"body is not valid gzip ({exc}) although Content-Encoding: gzip") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise ValueError(f"inflated body is larger than {limit} bytes")
    if not inflater.eof:
        raise ValueError("gzip body ends early (truncated) although Content-Encoding: gzip")
    return out


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` (checked before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
