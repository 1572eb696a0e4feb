"""TLS and SASL for Kafka: the one place an `ssl.SSLContext` is built, for aiokafka and faust
alike, and the check that turns wrong credentials into an error at start instead of a hang.

`ADMUSE_KAFKA_SECURITY_PROTOCOL=SSL` or `SASL_SSL` needs a context (aiokafka refuses to start
without one). It trusts the system's CAs, or only `ADMUSE_KAFKA_SSL_CAFILE` when set (a private
CA, as managed Kafka services and self-hosted clusters use); `ADMUSE_KAFKA_SSL_CERTFILE` (+
`_KEYFILE`, `_KEY_PASSWORD`) adds a client certificate for brokers that require mutual TLS.
Host names are checked unless `ADMUSE_KAFKA_SSL_CHECK_HOSTNAME=false`. A file that is missing
or unreadable, or a key that does not open, is a `TLSConfigError` naming the variable.

A broker that refuses us for good — an untrusted or wrong-host certificate, a client
certificate it rejects, a SASL password it does not accept — looks to a client like a broker
that is not up yet, and aiokafka retries it until a timeout. `check_security` opens one
connection and raises `KafkaSecurityError` saying which of those it is.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

if TYPE_CHECKING:
    from services.common.settings import KafkaSettings

__all__ = [
    "KafkaSecurityError",
    "TLSConfigError",
    "build_ssl_context",
    "check_security",
    "uses_tls",
]


class TLSConfigError(ValueError):
    """The TLS settings cannot make a context; the message names the variable to fix."""


class KafkaSecurityError(RuntimeError):
    """The broker answers but refuses these credentials or this certificate; retrying is futile."""


def uses_tls(kafka: KafkaSettings) -> bool:
    return kafka.security_protocol in ("SSL", "SASL_SSL")


def build_ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The client context for `kafka`, or None when the protocol does not use TLS."""
    if not uses_tls(kafka):
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=kafka.ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"ADMUSE_KAFKA_SSL_CAFILE={kafka.ssl_cafile}: cannot load CA certificates ({exc}); "
            "point it at a PEM file holding the CA that signed the broker's certificate"
        ) from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile:
        password = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
        try:
            ctx.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile, password)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(
                f"ADMUSE_KAFKA_SSL_CERTFILE={kafka.ssl_certfile} / ADMUSE_KAFKA_SSL_KEYFILE="
                f"{kafka.ssl_keyfile}: cannot load the client certificate and key ({exc}); "
                "check the paths, that the key matches the certificate, and "
                "ADMUSE_KAFKA_SSL_KEY_PASSWORD for an encrypted key"
            ) from exc
    elif kafka.ssl_keyfile:
        raise TLSConfigError(
            "ADMUSE_KAFKA_SSL_KEYFILE is set without ADMUSE_KAFKA_SSL_CERTFILE; set both for "
            "a client certificate, or neither"
        )
    return ctx


async def check_security(kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
    """Connect once to each bootstrap server with the configured security.

    Returns when one connection authenticates, or when none can be reached (the broker may
    not be up yet: the caller goes on retrying). Raises `KafkaSecurityError` when a broker
    answers and refuses us.
    """
    if kafka.security_protocol == "PLAINTEXT":
        return
    kw = kafka.client_kwargs()
    for server in kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    client_id=kw["client_id"],
                    request_timeout_ms=kw["request_timeout_ms"],
                    ssl_context=kw.get("ssl_context"),
                    security_protocol=kafka.security_protocol,
                    sasl_mechanism=kafka.sasl_mechanism or "PLAIN",
                    sasl_plain_username=kw.get("sasl_plain_username"),
                    sasl_plain_password=kw.get("sasl_plain_password"),
                ),
                timeout_s,
            )
        except ssl.SSLCertVerificationError as exc:
            raise KafkaSecurityError(
                f"TLS: the certificate of Kafka at {server} is not trusted ({exc.verify_message}); "
                "set ADMUSE_KAFKA_SSL_CAFILE to the CA that signed it"
                + (
                    " (or ADMUSE_KAFKA_SSL_CHECK_HOSTNAME=false for a host-name mismatch)"
                    if "hostname" in str(exc).lower() or "IP address" in str(exc)
                    else ""
                )
            ) from exc
        except (SaslAuthenticationFailed, UnsupportedSaslMechanismError) as exc:
            raise KafkaSecurityError(
                f"SASL: Kafka at {server} refused user {kafka.sasl_username!r} with "
                f"{kafka.sasl_mechanism} ({exc}); check ADMUSE_KAFKA_SASL_USERNAME, "
                "ADMUSE_KAFKA_SASL_PASSWORD and ADMUSE_KAFKA_SASL_MECHANISM"
            ) from exc
        except KafkaConnectionError as exc:
            if isinstance(exc.__cause__, ssl.SSLError):  # the broker ended the handshake
                raise KafkaSecurityError(
                    f"TLS: Kafka at {server} refused the TLS handshake ({exc.__cause__}); it "
                    "probably requires a client certificate: set ADMUSE_KAFKA_SSL_CERTFILE and "
                    "ADMUSE_KAFKA_SSL_KEYFILE (a certificate signed by a CA the broker trusts)"
                ) from exc
            continue
        except (OSError, TimeoutError, ValueError):
            continue  # not reachable (yet): the caller's retry loop decides
        conn.close()
        return
