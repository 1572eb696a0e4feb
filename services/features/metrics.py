"""Prometheus metrics of the features worker, on a registry of its own (served at /metrics).

Counters count processing, which is at-least-once: after a crash, messages past the last
committed offset are processed again and may be counted again here. Rewards and stats are
protected against that by the replay guards in the tables; these counters are not.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["FeaturesMetrics"]

_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class FeaturesMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.decisions = Counter(
            "admuse_features_decisions", "Decisions consumed, by verdict.", ["verdict"], registry=r
        )
        self.events = Counter(
            "admuse_features_events",
            "Events joined, by type and verdict (settled, attributed, held, duplicate, late, ...).",
            ["type", "verdict"],
            registry=r,
        )
        self.late_events = Counter(
            "admuse_features_late_events",
            "Events that arrived after their decision's window closed (or occurred after it).",
            registry=r,
        )
        self.unmatched_events = Counter(
            "admuse_features_unmatched_events",
            "Held events whose decision never arrived: the decisions' watermark passed their "
            "occurred_at + ADMUSE_FEATURES_MAX_HOLD_MS (or, without decision watermarks, "
            "MAX_HOLD_MS of the events' watermark passed).",
            registry=r,
        )
        self.rewards = Counter(
            "admuse_features_rewards", "Rewards emitted, by outcome.", ["outcome"], registry=r
        )
        self.unshown = Counter(
            "admuse_features_unshown_decisions",
            "Rewards emitted for decisions the app never showed (campaign impressions: event).",
            registry=r,
        )
        self.join_lag = Histogram(
            "admuse_features_join_lag_seconds",
            "Delay from the settling event (or the window's end) to its Reward, by outcome.",
            ["outcome"],
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            "admuse_features_pending_decisions", "Decisions whose window is still open.", registry=r
        )
        self.held = Gauge(
            "admuse_features_held_events",
            "Joins holding events that arrived before their decision.",
            registry=r,
        )
        self.ready = Gauge(
            "admuse_features_ready",
            "1 while the worker processes (what /readyz answers 200 for), else 0.",
            registry=r,
        )
        self.stats_updates = Counter(
            "admuse_features_stats_updates", "CreativeStats records published.", registry=r
        )
        self.erasures = Counter(
            "admuse_features_erasures", "Erasure requests received.", registry=r
        )
        self.erased_states = Counter(
            "admuse_features_erased_states",
            "Join states (pending or held) deleted by erasure requests.",
            registry=r,
        )
        self.bad_records = Counter(
            "admuse_features_bad_records",
            "Records that could not be decoded or used, by topic and reason (skipped).",
            ["topic", "reason"],
            registry=r,
        )
        self.replayed = Counter(
            "admuse_features_replayed",
            "Messages found already applied to the tables (re-processed after a restart).",
            registry=r,
        )
