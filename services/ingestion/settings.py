"""Ingestion settings: `ADMUSE_INGESTION_*`, plus the shared `ADMUSE_PSEUDONYM_SECRET`.

The pseudonym secret is required: the service refuses to start without it unless
`ADMUSE_INGESTION_DEV_MODE=true`, where a fixed, publicly known development secret is used
(and a warning logged), so a forgotten secret never silently produces guessable pseudonyms in
production.
"""

from __future__ import annotations

import os

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import HttpKeepAliveSetting, PseudonymSecretSetting, ServiceSettings

__all__ = ["DEV_PSEUDONYM_SECRET", "Settings", "usable_cpus"]

DEV_PSEUDONYM_SECRET = "admuse-dev-only-pseudonym-secret"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. a container's cpuset), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on every platform
        return os.cpu_count() or 1


class Settings(ServiceSettings, PseudonymSecretSetting, HttpKeepAliveSetting):
    """Everything the ingestion service reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="ADMUSE_INGESTION_", frozen=True, extra="ignore")

    dev_mode: bool = Field(
        False, description="Allow starting without ADMUSE_PSEUDONYM_SECRET (fixed dev secret)."
    )
    instance_id: str = Field(
        "0",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        description=(
            "Stable id of this instance: static group membership and the Kafka transactional "
            "id derive from it. Keep it across restarts; give each running instance its own."
        ),
    )
    group_id: str = Field("admuse-ingestion", description="Consumer group (topic prefix added).")
    max_event_bytes: int = Field(
        64 * 1024, ge=256, description="Raw values larger than this are dead-lettered unparsed."
    )
    dlq_max_value_bytes: int = Field(
        512 * 1024,
        ge=1024,
        description="Original values longer than this are cut in the dead letter (flagged).",
    )
    max_future_skew_s: float = Field(
        300.0, ge=0, description="How far in the future occurred_at may lie (device clock skew)."
    )
    watermark_skew_ms: int = Field(
        1000,
        ge=0,
        description=(
            "Allowed lateness: an event reaches the raw topic at most this long after it "
            "occurred; watermarks trail the raw records read (or the wall clock when idle) by it."
        ),
    )
    watermark_interval_s: float = Field(
        0.2, gt=0, le=10, description="Watermarks are written into admuse.events this often."
    )
    source_learn_ms: int = Field(
        10_000,
        ge=0,
        description="After a raw partition is assigned, its watermark waits this long (while "
        "Kafka answers) to learn the live sources' claims before stating one.",
    )
    source_expiry_s: float = Field(
        30.0,
        gt=0,
        description="A live raw source that states no claim for this long (while Kafka "
        "answers) is forgotten, counted in admuse_ingestion_raw_sources_expired_total.",
    )
    dedup_horizon_s: float = Field(
        6 * 3600.0, gt=0, description="De-duplicate event_ids seen within this many seconds."
    )
    dedup_max_entries: int = Field(
        2_000_000, ge=1000, description="Memory cap of the de-duplication window (oldest go)."
    )
    max_batch: int = Field(
        5000, ge=1, le=100_000, description="Raw records per transaction at most."
    )
    transform_workers: int | None = Field(
        None,
        ge=0,
        le=64,
        description=(
            "Worker processes that decode, validate, pseudonymize and encode (0: all in the "
            "service's process). Unset: one per CPU, at most 4; none on a single CPU."
        ),
    )
    carry_headers: str = Field(
        "trace-id,traceparent,tracestate,x-request-id,x-correlation-id,app,app-version,admuse-via",
        description=(
            "Comma-separated record header names (any case) a forwarded event keeps on "
            "admuse.events; others are not carried (a header may hold a raw user id)."
        ),
    )
    http_host: str = Field("0.0.0.0", description="Address the HTTP collector binds.")
    http_port: int = Field(8081, ge=0, le=65535, description="HTTP collector port (0: none).")
    http_max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="POST /v1/events bodies larger than this get 413."
    )
    http_max_batch: int = Field(1000, ge=1, description="Events per POST /v1/events at most.")
    http_kafka_timeout_s: float = Field(
        1.5,
        gt=0,
        le=30,
        description="POST /v1/events answers 503 when Kafka has not acknowledged its events "
        "within this many seconds.",
    )
    http_retry_after_s: int = Field(
        5, ge=1, description="Retry-After (seconds) of the collector's 503 answers."
    )
    http_resend_horizon_s: float = Field(
        30.0,
        gt=0,
        description="After a 503 the collector's watermark claim waits this long for the app "
        "to resend the refused events (at least Retry-After).",
    )
    api_keys: SecretStr | None = Field(
        None,
        description=(
            "Comma-separated API keys accepted in X-API-Key by POST /v1/events. Unset: the "
            "collector rejects every request (401) unless dev mode is on."
        ),
    )

    @model_validator(mode="after")
    def _secret_required(self) -> Settings:
        if self.pseudonym_secret is None and not self.dev_mode:
            raise ValueError(
                "ADMUSE_PSEUDONYM_SECRET is not set: ingestion will not start without the "
                "pseudonym key (no raw user id may pass). Set it to the secret shared with "
                "inference, or set ADMUSE_INGESTION_DEV_MODE=true on a development machine"
            )
        if self.pseudonym_secret is not None and not self.pseudonym_secret.get_secret_value():
            raise ValueError("ADMUSE_PSEUDONYM_SECRET is empty; set a long random secret")
        return self

    @model_validator(mode="after")
    def _horizons(self) -> Settings:
        if self.http_resend_horizon_s < self.http_retry_after_s:
            raise ValueError(
                f"ADMUSE_INGESTION_HTTP_RESEND_HORIZON_S = {self.http_resend_horizon_s} is "
                f"shorter than ADMUSE_INGESTION_HTTP_RETRY_AFTER_S = {self.http_retry_after_s}: "
                "apps are told to resend later than the collector would wait for them"
            )
        if self.source_expiry_s * 1000 <= self.source_learn_ms:
            raise ValueError("ADMUSE_INGESTION_SOURCE_EXPIRY_S must be longer than the learning")
        return self

    def secret_bytes(self) -> bytes:
        """The pseudonym key (the development key in dev mode without a secret)."""
        if self.pseudonym_secret is None:
            return DEV_PSEUDONYM_SECRET.encode()
        return self.pseudonym_key()

    def api_key_set(self) -> frozenset[str]:
        if self.api_keys is None:
            return frozenset()
        return frozenset(
            k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()
        )

    def carried_headers(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.carry_headers.split(",") if h.strip())

    def worker_count(self) -> int:
        """Transform worker processes: as set, else one per CPU (at most 4), none on a
        single CPU. The service's own process mostly waits on Kafka (about a third of a core
        at full speed), so it needs no core of its own (bench/RESULTS.md)."""
        if self.transform_workers is not None:
            return self.transform_workers
        cpus = usable_cpus()
        return 0 if cpus < 2 else min(4, cpus)

    def group(self) -> str:
        """Consumer group id, with the topic prefix so tenants and tests stay apart."""
        return f"{self.kafka.topic_prefix}{self.group_id}"

    def transactional_id(self) -> str:
        """One transactional id per instance: a restarted instance fences its dead self."""
        return f"{self.kafka.topic_prefix}{self.group_id}-{self.instance_id}"

    def group_instance_id(self) -> str:
        return f"{self.group_id}-{self.instance_id}"
