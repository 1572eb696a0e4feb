"""Settings: refuses to start without the pseudonym secret outside dev mode; documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from services.common.settings import env_vars
from services.ingestion.settings import DEV_PSEUDONYM_SECRET, Settings, usable_cpus

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_vars(Settings):
        monkeypatch.delenv(name, raising=False)


def test_refuses_without_secret() -> None:
    with pytest.raises(ValidationError, match="ADMUSE_PSEUDONYM_SECRET"):
        Settings()


def test_dev_mode_uses_dev_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMUSE_INGESTION_DEV_MODE", "true")
    assert Settings().secret_bytes() == DEV_PSEUDONYM_SECRET.encode()


def test_secret_and_keys_are_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "hush")
    monkeypatch.setenv("ADMUSE_INGESTION_API_KEYS", " k1, k2 ,,")
    monkeypatch.setenv("ADMUSE_KAFKA_TOPIC_PREFIX", "t1.")
    monkeypatch.setenv("ADMUSE_INGESTION_INSTANCE_ID", "ingestion-2")
    s = Settings()
    assert s.secret_bytes() == b"hush" and s.api_key_set() == {"k1", "k2"}
    assert "hush" not in repr(s) and "k1" not in repr(s)
    assert s.transactional_id() == "t1.admuse-ingestion-ingestion-2"
    assert s.group() == "t1.admuse-ingestion"


def test_every_variable_documented_and_compose_sets_the_secret() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### ingestion", 1)[1].split("\n### ", 1)[0]
    missing = {v for v in env_vars(Settings) if v not in readme}
    assert not missing, f"README lacks {sorted(missing)}"
    own = {v for v in env_vars(Settings) if v.startswith("ADMUSE_INGESTION_")}
    assert all(v in section for v in own)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["ingestion"]["environment"]
    assert "ADMUSE_PSEUDONYM_SECRET" in env and "ADMUSE_INGESTION_API_KEYS" in env


def test_empty_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "")
    with pytest.raises(ValidationError, match="empty"):
        Settings()


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 2), (3, 3), (16, 4)])
def test_transform_workers_follow_the_usable_cpus_unless_set(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int
) -> None:
    monkeypatch.setenv("ADMUSE_INGESTION_DEV_MODE", "true")
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cpus)))
    monkeypatch.setattr("os.cpu_count", lambda: 64)  # the machine's, not this process's
    assert Settings().worker_count() == workers
    monkeypatch.setenv("ADMUSE_INGESTION_TRANSFORM_WORKERS", "0")
    assert Settings().worker_count() == 0
    monkeypatch.setenv("ADMUSE_INGESTION_TRANSFORM_WORKERS", "-1")
    with pytest.raises(ValidationError, match="transform_workers"):
        Settings()


def test_usable_cpus_falls_back_to_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr("os.sched_getaffinity")
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert usable_cpus() == 1
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    assert usable_cpus() == 6
