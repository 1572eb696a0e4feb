"""The project's own wiring: docker-compose.yml, service entry points, the `admuse` command."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml

from services.common.settings import ServiceSettings, env_vars
from services.common.topics import Topics

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = [
    name
    for name, svc in COMPOSE["services"].items()
    if name != "kafka" and svc["command"][0] != "admuse"
]
# Variables every service reads through services.common (not through its own Settings class).
SHARED = env_vars(ServiceSettings) | {"ADMUSE_PSEUDONYM_SECRET", "ADMUSE_SCHEMAS_DIR"}


def test_kafka_uses_the_official_image_in_kraft_mode_with_a_healthcheck() -> None:
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]
    assert kafka["healthcheck"]["test"]


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_service_runs_a_module_that_exists(name: str) -> None:
    command = COMPOSE["services"][name]["command"]
    assert command[:2] == ["python", "-m"], command
    module = command[2]
    assert importlib.util.find_spec(module) is not None, f"{module} does not exist"
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module} has no __main__"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_sets_only_variables_the_service_reads(name: str) -> None:
    module = COMPOSE["services"][name]["command"][2]  # trainer-gpu runs services.trainer
    settings_mod = importlib.import_module(f"{module}.settings")
    known = env_vars(settings_mod.Settings) | SHARED
    env = COMPOSE["services"][name].get("environment", {})
    unknown = sorted(set(env) - known)
    assert not unknown, f"{name} sets variables its Settings does not read: {unknown}"


def test_every_topic_is_declared_once_with_a_schema() -> None:
    names = [spec.name for spec in Topics()]
    assert len(names) == len(set(names)) == 10
    schemas = {p.name.split(".")[0] for p in (ROOT / "schemas").glob("*.avsc")}
    assert {s.value for s in Topics() if s.value} <= schemas
