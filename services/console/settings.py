"""Settings of the console: `ADMUSE_CONSOLE_*` (plus the shared groups)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import HttpKeepAliveSetting, ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings, HttpKeepAliveSetting):
    """Everything `python -m services.console` reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="ADMUSE_CONSOLE_", frozen=True, extra="ignore")

    admin_keys: SecretStr = Field(
        description="Comma-separated admin keys; a person signs in with one of them."
    )
    session_secret: SecretStr | None = Field(
        None,
        description="Signs the session cookie; unset: a random one per process (a restart "
        "signs everybody out).",
    )
    http_host: str = Field("127.0.0.1", description="Address the console listens on.")
    http_port: int = Field(8088, ge=0, le=65535, description="HTTP port (0: pick a free one).")
    cookie_secure: bool = Field(
        False, description="Send the session cookie over HTTPS only (set behind TLS)."
    )
    session_max_age_s: int = Field(8 * 3600, ge=60, description="A sign-in lasts this long.")
    refresh_s: float = Field(
        2.0, gt=0, le=60, description="How often the topics are read again (pages update live)."
    )
    run_dir: Path | None = Field(
        None,
        description="Run folder of `admuse demo`/`up` (services.json, simulator summary); "
        "unset: no service health or regret shown.",
    )
    dead_letter_samples: int = Field(20, ge=0, le=500, description="Samples per reason shown.")

    def keys(self) -> list[str]:
        return [k.strip() for k in self.admin_keys.get_secret_value().split(",") if k.strip()]
