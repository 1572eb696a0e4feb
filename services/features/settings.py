"""Features settings: `ADMUSE_FEATURES_*` (plus the shared `ADMUSE_KAFKA_*` and `ADMUSE_LOG_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    """Everything the features worker reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="ADMUSE_FEATURES_", frozen=True, extra="ignore")

    app_id: str = Field(
        "admuse-features",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="faust app id = consumer group; prefixes internal topics (topic prefix added).",
    )
    web_host: str = Field("127.0.0.1", description="Bind address of /metrics and /effects.")
    web_port: int = Field(6066, ge=1, le=65535, description="Port of /metrics and /effects.")
    state_dir: Path = Field(
        Path(".run/features"), description="faust data folder (tables live in memory + changelogs)."
    )
    default_window_ms: int = Field(
        3_600_000,
        gt=0,
        description="Attribution window when a decision carries none (attribution_window_ms <= 0).",
    )
    close_grace_ms: int = Field(
        1000, ge=0, description="Wait this long past a window's end for in-flight events."
    )
    tick_interval_s: float = Field(
        0.25,
        gt=0,
        le=60,
        description="How often the watermarks read are forwarded to the join (windows close).",
    )
    flush_interval_s: float = Field(
        0.2, gt=0, le=10, description="How often changed stats are published (coalesced)."
    )
    stats_batch_s: float = Field(
        0.05,
        gt=0,
        le=1,
        description="The stats agent folds the partials that arrive within this long together.",
    )
    late_retention_s: float = Field(
        3600.0,
        ge=60,
        description=(
            "Keep a closed decision this long to recognise late events (and to replay safely "
            "after a crash: it must outlast a restart)."
        ),
    )
    max_hold_ms: int = Field(
        600_000,
        gt=0,
        description="Hold an event whose decision has not arrived until the decisions' "
        "watermark passes its occurred_at + this (decision_watermarks off: this long by the "
        "events' watermark).",
    )
    decision_watermarks: bool = Field(
        True,
        description="Expire held events by the decisions' watermarks (inference and replay "
        "state them in admuse.decisions); off for writers that state none.",
    )
    decay_half_life_s: float | None = Field(
        None, gt=0, description="Half-life of the Beta posterior decay; unset: no decay."
    )
    stats_window_ms: int = Field(
        3_600_000, gt=0, description="Length of the tumbling stats windows (hourly by default)."
    )
    prior_alpha: float = Field(1.0, gt=0, description="Beta prior alpha for unknown creatives.")
    prior_beta: float = Field(1.0, gt=0, description="Beta prior beta for unknown creatives.")
    replication_factor: int = Field(1, ge=1, description="Replication of faust's own topics.")
    session_timeout_s: float = Field(
        10.0, ge=6, description="Consumer session timeout (how fast a dead worker is replaced)."
    )
    producer_linger_s: float = Field(
        0.01,
        ge=0,
        le=1,
        description=(
            "Producer linger: records produced within this long share one request (each "
            "request costs the worker and the broker far more than a record)."
        ),
    )
    commit_interval_s: float = Field(1.0, gt=0, description="How often offsets are committed.")
