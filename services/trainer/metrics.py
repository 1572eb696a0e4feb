"""Prometheus metrics of the trainer (served on ADMUSE_TRAINER_METRICS_PORT when set)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, start_http_server

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.published = Counter(
            "admuse_trainer_models_published",
            "Models signed, stored and published to admuse.models.",
            ["campaign_id"],
            registry=r,
        )
        self.not_published = Counter(
            "admuse_trainer_models_not_published",
            "Training runs that published nothing, by reason (not_enough_data, single_class, "
            "quality_gate, export_failed, bad_encoding, kafka_unavailable, unchanged: identical "
            "to the last one).",
            ["campaign_id", "reason"],
            registry=r,
        )

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
