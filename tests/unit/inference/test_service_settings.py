"""Inference settings: keys, required values, and the start-up message when they are wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.inference.app import main
from services.inference.settings import Settings


def test_api_keys_are_split_and_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMUSE_INFERENCE_API_KEYS", " k1 , k2,,")
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "s")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.api_key_set() == {"k1", "k2"}
    assert "k1" not in repr(settings)  # secrets stay out of logs and tracebacks


def test_start_up_names_every_missing_or_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADMUSE_PSEUDONYM_SECRET", raising=False)
    monkeypatch.setenv("ADMUSE_INFERENCE_API_KEYS", " , ")
    monkeypatch.setenv("ADMUSE_INFERENCE_GRPC_PORT", "fifty")
    with pytest.raises(SystemExit) as exc:
        main()
    message = str(exc.value)
    for name in ("ADMUSE_PSEUDONYM_SECRET", "ADMUSE_INFERENCE_API_KEYS",
                 "ADMUSE_INFERENCE_GRPC_PORT"):  # fmt: skip
        assert name in message


def test_replica_must_be_below_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMUSE_INFERENCE_API_KEYS", "k")
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "s")
    monkeypatch.setenv("ADMUSE_INFERENCE_REPLICAS", "2")
    monkeypatch.setenv("ADMUSE_INFERENCE_REPLICA", "2")
    with pytest.raises(ValidationError, match="REPLICA=2 must be below"):
        Settings()  # type: ignore[call-arg]
    monkeypatch.setenv("ADMUSE_INFERENCE_REPLICA", "1")
    assert Settings().replica == 1  # type: ignore[call-arg]
