"""Prometheus metrics of the ingestion service, on a registry of its own (served at /metrics).

Counters move only after a batch's transaction committed, so they count each raw record once
even when a failed transaction is retried: in = out + dead-lettered + dropped + duplicates.
"""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.watermark import WatermarkGauges
from services.ingestion.pipeline import BatchResult
from services.ingestion.raw_sources import RawSources
from services.ingestion.rejection import REASONS

__all__ = ["IngestionMetrics"]

_log = structlog.get_logger(__name__)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class IngestionMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "admuse_ingestion_events_in",
            "Raw records consumed (and committed).",
            ["format"],
            registry=r,
        )
        self.events_out = Counter(
            "admuse_ingestion_events_out", "Events forwarded to admuse.events.", registry=r
        )
        self.dead_letters = Counter(
            "admuse_ingestion_dead_letters",
            "Raw records dead-lettered, by reason.",
            ["reason"],
            registry=r,
        )
        self.dropped = Counter(
            "admuse_ingestion_dropped",
            "Valid events not forwarded for lack of consent.",
            ["reason"],
            registry=r,
        )
        self.duplicates = Counter(
            "admuse_ingestion_duplicates",
            "Events not forwarded: event_id seen in the horizon.",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "admuse_ingestion_batch_seconds",
            "Transform + transactional commit time per batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "admuse_ingestion_event_latency_seconds",
            "Raw record timestamp to committed forward, per event.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.aborted = Counter(
            "admuse_ingestion_transactions_aborted", "Transactions aborted and retried.", registry=r
        )
        self.dedup_entries = Gauge(
            "admuse_ingestion_dedup_entries",
            "event_ids held in the de-duplication window.",
            registry=r,
        )
        self.transform_workers = Gauge(
            "admuse_ingestion_transform_workers",
            "Worker processes transforming events (0: in the service's process).",
            registry=r,
        )
        self.worker_failures = Counter(
            "admuse_ingestion_transform_worker_failures",
            "Times a transform worker died; its batch was transformed in-process.",
            registry=r,
        )
        self.http_events = Counter(
            "admuse_ingestion_http_events",
            "Events received by POST /v1/events, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.watermark = WatermarkGauges(
            r, "admuse_ingestion", "the raw records worked off (claims written to admuse.events)"
        )
        self.bad_source_watermarks = Counter(
            "admuse_ingestion_bad_source_watermarks",
            "Watermark records in the raw topic that did not decode (ignored).",
            registry=r,
        )
        self.raw_sources_known = Gauge(
            "admuse_ingestion_raw_sources",
            "Live sources of admuse.events.raw whose claims bound this instance's watermarks.",
            registry=r,
        )
        self.raw_sources_expired = Counter(
            "admuse_ingestion_raw_sources_expired",
            "Live raw sources forgotten after stating nothing for the expiry (per partition).",
            registry=r,
        )
        self.raw_sources_ended = Counter(
            "admuse_ingestion_raw_sources_ended",
            "Live raw sources that stated their end (per partition).",
            registry=r,
        )
        for reason in REASONS:
            self.dead_letters.labels(reason)
        for reason in ("consent_missing", "consent_denied"):
            self.dropped.labels(reason)
        for fmt in ("json", "avro", "undecodable"):
            self.events_in.labels(fmt)

    def raw_sources(self, sources: RawSources) -> None:
        """Count and log the sources that expired or ended since the last call."""
        expired, ended = sources.take_reports()
        for partition, source, claim in expired:
            _log.warning(
                "raw_source_expired",
                partition=partition,
                source=source,
                claim_ms=claim,
                silent_ms=sources.expiry_ms,
            )
        self.raw_sources_expired.inc(len(expired))
        self.raw_sources_ended.inc(len(ended))
        self.raw_sources_known.set(sources.count())

    def record_batch(self, result: BatchResult, seconds: float, committed_ms: int) -> None:
        decoded = sum(result.formats.values())
        for fmt, n in result.formats.items():
            self.events_in.labels(fmt).inc(n)
        if result.consumed > decoded:
            self.events_in.labels("undecodable").inc(result.consumed - decoded)
        self.events_out.inc(result.forwarded)
        for reason, n in result.dead_letters.items():
            self.dead_letters.labels(reason).inc(n)
        for reason, n in result.dropped.items():
            self.dropped.labels(reason).inc(n)
        if result.duplicates:
            self.duplicates.inc(result.duplicates)
        self.batch_seconds.observe(seconds)
        observe = self.latency.observe
        for ts in result.source_timestamps_ms:
            observe(max(0.0, (committed_ms - ts) / 1000))
