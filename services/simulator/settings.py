"""Settings of the traffic simulator: `ADMUSE_SIMULATOR_*` (plus the shared Kafka/log groups)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    """Everything `python -m services.simulator` reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="ADMUSE_SIMULATOR_", frozen=True, extra="ignore")

    decide_url: str = Field(
        "http://127.0.0.1:8080", description="Base URL of inference's HTTP API (POST /v1/decide)."
    )
    api_key: SecretStr = Field(description="Key sent as X-API-Key to the Decide API. Required.")
    scenario: str = Field(
        "demo", description="Bundled scenario name (demo, bench, e2e) or path to a scenario YAML."
    )
    seed: int = Field(0, description="Seeds arrivals, users and outcomes (reproducible runs).")
    duration_s: float = Field(60.0, ge=0, description="How long to play; 0 runs until stopped.")
    rate: float | None = Field(
        None, gt=0, description="Arrivals per second; overrides the scenario's audience.rate."
    )
    run_dir: Path = Field(
        Path(".run/simulator"), description="Folder for results.jsonl and summary.json."
    )
    max_in_flight: int = Field(
        64, ge=1, description="Most concurrent Decide calls; arrivals beyond it are skipped."
    )
    drain_s: float = Field(
        15.0, ge=0, description="After the run, how long to wait for delayed clicks to be sent."
    )
    send_timeout_s: float = Field(
        60.0,
        gt=0,
        description="How long one event may wait for Kafka (resent through broker restarts) "
        "before it is counted as not sent.",
    )
    health_host: str = Field("127.0.0.1", description="Address of /healthz, /readyz, /metrics.")
    health_port: int = Field(
        0, ge=0, le=65535, description="Port of /healthz, /readyz, /metrics; 0: not served."
    )
    source: str = Field("admuse-simulator", description="`source` field of the events sent.")
