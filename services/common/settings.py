"""Settings shared by every service: Kafka connection, logging, model store.

Each service defines one frozen `Settings(ServiceSettings)` with
`env_prefix="ADMUSE_<SERVICE>_"`; the shared groups below read their own prefixes, so
`ADMUSE_KAFKA_BOOTSTRAP_SERVERS` is set once for every service.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.security import build_ssl_context

__all__ = [
    "PSEUDONYM_SECRET_ENV",
    "HttpKeepAliveSetting",
    "KafkaSettings",
    "LogSettings",
    "PseudonymSecretSetting",
    "RequiredPseudonymSecret",
    "ServiceSettings",
    "env_vars",
]

PSEUDONYM_SECRET_ENV = "ADMUSE_PSEUDONYM_SECRET"


class KafkaSettings(BaseSettings):
    """`ADMUSE_KAFKA_*`: how every service reaches the broker."""

    model_config = SettingsConfigDict(env_prefix="ADMUSE_KAFKA_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list.")
    topic_prefix: str = Field(
        "", description="Prepended to every topic name (isolates tests/tenants)."
    )
    client_id: str = Field("admuse", description="Client id sent to the broker.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = Field(
        None, description="PEM CA bundle to trust (default: the system's CAs)."
    )
    ssl_certfile: str | None = Field(None, description="PEM client certificate (mutual TLS).")
    ssl_keyfile: str | None = Field(None, description="PEM private key of the client cert.")
    ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted key.")
    ssl_check_hostname: bool = Field(True, description="Check the broker's host name.")
    request_timeout_ms: int = Field(30_000, ge=1000)

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"ADMUSE_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "ADMUSE_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), "
                "ADMUSE_KAFKA_SASL_USERNAME and ADMUSE_KAFKA_SASL_PASSWORD"
            )
        if self.sasl_mechanism and not sasl:
            raise ValueError(
                f"ADMUSE_KAFKA_SASL_MECHANISM={self.sasl_mechanism} needs "
                "ADMUSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT), not "
                f"{self.security_protocol}"
            )
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments common to aiokafka producers, consumers and admin clients."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        ssl_context = build_ssl_context(self)
        if ssl_context is not None:
            kw["ssl_context"] = ssl_context
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kw


class LogSettings(BaseSettings):
    """`ADMUSE_LOG_*`: log level and format for every service."""

    model_config = SettingsConfigDict(env_prefix="ADMUSE_LOG_", frozen=True, extra="ignore")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: console on a TTY, JSON otherwise."
    )


def _pseudonym_secret_field(default: Any) -> Any:
    return Field(
        default,
        validation_alias=PSEUDONYM_SECRET_ENV,
        description="HMAC-SHA256 key of user pseudonyms, the same for ingestion and inference.",
    )


class PseudonymSecretSetting(BaseSettings):
    """`ADMUSE_PSEUDONYM_SECRET`, declared once: the key of every user pseudonym. Ingestion,
    inference and `admuse erase|replay` mix it into their settings; whoever needs the key
    calls `pseudonym_key()`, which names the variable when it is missing."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    pseudonym_secret: SecretStr | None = _pseudonym_secret_field(None)

    def pseudonym_key(self) -> bytes:
        """The key as bytes; `ValueError` when the variable is unset or empty."""
        if self.pseudonym_secret is None or not self.pseudonym_secret.get_secret_value():
            raise ValueError(
                f"{PSEUDONYM_SECRET_ENV} is not set: it keys every user pseudonym; set it to "
                "the secret ingestion and inference share (a long random string)"
            )
        return self.pseudonym_secret.get_secret_value().encode("utf-8")


class RequiredPseudonymSecret(PseudonymSecretSetting):
    """The same variable where a service cannot start without it (inference)."""

    pseudonym_secret: SecretStr = _pseudonym_secret_field(...)


class HttpKeepAliveSetting(BaseSettings):
    """`<SERVICE>_HTTP_KEEP_ALIVE_S`, declared once for the services with an HTTP server
    (ingestion, inference, console), each under its own prefix."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    http_keep_alive_s: int = Field(
        75,
        ge=1,
        description="How long an idle keep-alive connection is kept open. Longer than the "
        "clients' own idle expiry (httpx 5 s, load balancers ~60 s): a server that closes "
        "first races the client's next request on that connection, which then fails.",
    )


class ServiceSettings(BaseSettings):
    """Base of each service's Settings: the shared groups, frozen, env-driven."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    model_store_url: str = Field(
        "file://./.run/model-store",
        description="fsspec URL of the model store (shared by trainer and inference).",
        validation_alias="ADMUSE_MODEL_STORE_URL",
    )


def env_vars(settings_cls: type[BaseSettings]) -> set[str]:
    """Every environment variable a Settings class reads, nested groups included (upper case)."""
    names: set[str] = set()
    prefix = settings_cls.model_config.get("env_prefix", "")
    for name, info in settings_cls.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseSettings):
            names |= env_vars(ann)
            continue
        alias = info.validation_alias
        names.add((alias if isinstance(alias, str) else f"{prefix}{name}").upper())
    return names
