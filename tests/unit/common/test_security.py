"""Kafka TLS/SASL settings: what is refused before any connection, and the context we build."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.security import TLSConfigError, build_ssl_context
from services.common.settings import KafkaSettings


def test_plaintext_has_no_context_and_ssl_gets_one_for_aiokafka() -> None:
    assert "ssl_context" not in KafkaSettings().client_kwargs()
    kw = KafkaSettings(security_protocol="SSL").client_kwargs()
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_hostname_check_can_be_turned_off() -> None:
    ctx = build_ssl_context(KafkaSettings(security_protocol="SSL", ssl_check_hostname=False))
    assert ctx is not None and not ctx.check_hostname


def test_sasl_needs_mechanism_and_credentials() -> None:
    with pytest.raises(ValidationError, match="ADMUSE_KAFKA_SASL_MECHANISM"):
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="needs ADMUSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL"):
        KafkaSettings(sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p")
    kw = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
    ).client_kwargs()
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512" and kw["sasl_plain_password"] == "p"
    assert isinstance(kw["ssl_context"], ssl.SSLContext)


def test_missing_files_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match="ADMUSE_KAFKA_SSL_CAFILE"):
        build_ssl_context(
            KafkaSettings(security_protocol="SSL", ssl_cafile=str(tmp_path / "nope.pem"))
        )
    with pytest.raises(TLSConfigError, match="ADMUSE_KAFKA_SSL_CERTFILE"):
        build_ssl_context(
            KafkaSettings(security_protocol="SSL", ssl_certfile=str(tmp_path / "nope.pem"))
        )
    with pytest.raises(TLSConfigError, match="without ADMUSE_KAFKA_SSL_CERTFILE"):
        build_ssl_context(KafkaSettings(security_protocol="SSL", ssl_keyfile="k.pem"))
