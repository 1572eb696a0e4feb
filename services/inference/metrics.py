"""Prometheus metrics of the inference service, on a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)


class Metrics:
    """Everything /metrics exposes. Each app builds its own, so tests can run several."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "admuse_inference_decisions",
            "Decisions served, by experiment arm and API.",
            ["arm", "api"],
            registry=r,
        )
        self.decide_errors = Counter(
            "admuse_inference_decide_errors",
            "Decide requests answered with an error, by code.",
            ["code"],
            registry=r,
        )
        self.latency = Histogram(
            "admuse_inference_decide_latency_seconds",
            "Time to make one decision (in process).",
            ["api"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.model_version = Gauge(
            "admuse_inference_model_info",
            "1 for the model version serving each campaign.",
            ["campaign_id", "version"],
            registry=r,
        )
        self.swaps = Counter(
            "admuse_inference_model_swaps", "Models swapped in.", ["campaign_id"], registry=r
        )
        self.rollbacks = Counter(
            "admuse_inference_model_rollbacks",
            "Models rolled back because their creatives did significantly worse.",
            ["campaign_id"],
            registry=r,
        )
        self.watch_impressions = Gauge(
            "admuse_inference_rollback_watch_impressions",
            "Impressions since the last swap: the new model's creatives vs those before it.",
            ["campaign_id", "arm"],
            registry=r,
        )
        self.watch_reward_rate = Gauge(
            "admuse_inference_rollback_watch_reward_rate",
            "Reward rate since the last swap: the new model's creatives vs those before it.",
            ["campaign_id", "arm"],
            registry=r,
        )
        self.refused = Counter(
            "admuse_inference_models_refused",
            "Models refused (old one kept), by reason.",
            ["campaign_id", "reason"],
            registry=r,
        )
        self.creatives_admitted = Counter(
            "admuse_inference_creatives_admitted",
            "Generated creatives admitted.",
            ["campaign_id"],
            registry=r,
        )
        self.creatives_retired = Counter(
            "admuse_inference_creatives_retired",
            "Creatives retired for a low prob_best.",
            ["campaign_id"],
            registry=r,
        )
        self.challengers_decided = Counter(
            "admuse_inference_challengers_decided",
            "Challengers decided by the challenger budget, by verdict (promote/retire).",
            ["campaign_id", "verdict"],
            registry=r,
        )
        self.state_records = Counter(
            "admuse_inference_state_records",
            "State records applied, by topic.",
            ["topic"],
            registry=r,
        )
        self.state_rejected = Counter(
            "admuse_inference_state_rejected",
            "State records skipped as undecodable, by topic.",
            ["topic", "reason"],
            registry=r,
        )
        self.decisions_buffered = Gauge(
            "admuse_inference_decisions_buffered",
            "Decisions waiting in memory for Kafka.",
            registry=r,
        )
        self.decisions_spooled = Gauge(
            "admuse_inference_decisions_spooled", "Decisions waiting in the spool file.", registry=r
        )
        self.decisions_sent = Counter(
            "admuse_inference_decisions_sent", "Decisions written to admuse.decisions.", registry=r
        )
        self.decision_spool_errors = Counter(
            "admuse_inference_decision_spool_errors",
            "Decisions held in memory because the spool could not be written.",
            registry=r,
        )
        self.decisions_unacknowledged = Counter(
            "admuse_inference_decisions_unacknowledged",
            "Decide requests answered 503 because their Decision record was not acknowledged "
            "in time (decision_ack on); the record may still be written.",
            registry=r,
        )
        self.decision_watermark = Gauge(
            "admuse_inference_decision_watermark_seconds",
            "decided_at (epoch s) up to which this replica's decisions are all written "
            "(its last Watermark in admuse.decisions).",
            registry=r,
        )
        self.decision_watermark_failures = Counter(
            "admuse_inference_decision_watermark_failures",
            "Decision watermarks that could not be written (tried again next interval).",
            registry=r,
        )
        self.decision_send_failures = Counter(
            "admuse_inference_decision_send_failures",
            "Failed decision batch sends (retried).",
            registry=r,
        )

    def set_model(self, campaign_id: str, old: str | None, new: str) -> None:
        if old is not None:
            self.model_version.remove(campaign_id, old)
        self.model_version.labels(campaign_id, new).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
