"""docker-compose.yml as Docker Compose reads it — through its own Go loader,
github.com/compose-spec/compose-go/v2 (deploy/compose-check) — and as it runs: every service's
command started as a local process with exactly the environment the file gives it, against
the test broker, until its healthcheck passes. No Docker engine runs here; this keeps the
file's commands, variables, ports and healthcheck URLs true.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.common.settings import KafkaSettings
from tests.buildcache import cached_build
from tests.polling import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "deploy" / "compose-check"
BASE_ENV = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}


def _go_build(out: Path) -> None:
    proc = subprocess.run(
        ["go", "build", "-o", str(out / "compose-check"), "."],
        cwd=CHECKER, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"go build of {CHECKER} failed:\n{proc.stderr}")


@pytest.fixture(scope="module")
def compose_check() -> Path:
    return cached_build("compose-check", CHECKER, _go_build) / "compose-check"


def _load(checker: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    proc = subprocess.run(
        [str(checker), *args, str(ROOT / "docker-compose.yml")],
        capture_output=True, text=True, timeout=60, check=False, env=env or BASE_ENV, cwd=ROOT,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def project(compose_check: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The project as `docker compose --profile '*'` resolves it with the .env a user makes:
    .env.example with a real signing key pair from `admuse keys generate`."""
    from services.common.signing import generate_key_pair

    private, public, _ = generate_key_pair()
    text = (ROOT / ".env.example").read_text()
    text = re.sub(
        r"(?m)^ADMUSE_TRAINER_SIGNING_KEY=.*$", f"ADMUSE_TRAINER_SIGNING_KEY={private}", text
    )
    text = re.sub(
        r"(?m)^ADMUSE_INFERENCE_TRUSTED_KEYS=.*$", f"ADMUSE_INFERENCE_TRUSTED_KEYS={public}", text
    )
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text(text)
    return _load(compose_check, "-env-file", str(env_file))


def test_without_env_compose_names_the_missing_secret_and_readme_says_create_it(
    compose_check: Path,
) -> None:
    with pytest.raises(AssertionError, match="ADMUSE_INFERENCE_API_KEYS is missing a value"):
        _load(compose_check)
    assert "cp .env.example .env" in (ROOT / "README.md").read_text()


def test_every_variable_compose_interpolates_is_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    example = set(re.findall(r"^#? ?([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= example, sorted(used - example)


def test_every_service_restarts_and_waits_on_readiness(project: dict[str, Any]) -> None:
    services = project["services"]
    for name, svc in services.items():
        if svc.get("restart") == "no":  # a one-shot step: what depends on it waits for it
            users = [s for s in services.values() if name in s.get("depends_on", {})]
            assert users, f"{name} is a one-shot step nothing waits for"
            for user in users:
                assert user["depends_on"][name]["condition"] == "service_completed_successfully"
        else:
            assert svc.get("restart") == "unless-stopped", name
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        if name != "kafka":
            assert svc["depends_on"]["kafka"]["condition"] == "service_healthy", name
    sim = services["simulator"]["depends_on"]
    assert {sim[n]["condition"] for n in ("inference", "inference-gpu")} == {"service_healthy"}
    assert services["inference-gpu"]["networks"]["default"]["aliases"] == ["inference"]


def test_kafka_keeps_its_data_and_the_host_can_reach_it(project: dict[str, Any]) -> None:
    kafka = project["services"]["kafka"]
    env = kafka["environment"]
    targets = {v["target"] for v in kafka["volumes"] if v["type"] == "volume"}
    assert env["KAFKA_LOG_DIRS"] in targets
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    published = {int(p["target"]): int(p["published"]) for p in kafka["ports"]}
    host_names = [n for n, a in advertised.items() if a.startswith("localhost:")]
    assert host_names, advertised
    (ext,) = host_names
    assert int(listeners[ext].rsplit(":", 1)[1]) in published
    assert published[int(listeners[ext].rsplit(":", 1)[1])] == int(advertised[ext].split(":")[1])
    internal = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    bootstrap = project["services"]["ingestion"]["environment"]["ADMUSE_KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap == advertised[internal]


def test_images_own_their_volumes_install_from_the_lock_and_cpu_is_the_default(
    project: dict[str, Any],
) -> None:
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    made = re.search(r"mkdir -p ([^&]+)&& chown admuse ([^\n]+)", dockerfile)
    assert made, "the Dockerfile creates no writable folders"
    owned = set(made[1].split()) & set(made[2].split())
    assert (
        'lock="deploy/lock/${VARIANT}.txt"' in dockerfile and '--constraint "$lock"' in dockerfile
    )
    for name, svc in project["services"].items():
        if name == "kafka":
            continue
        for vol in svc.get("volumes", []):
            if not vol.get("read_only"):
                assert vol["target"] in owned, f"{name} writes {vol['target']}, not owned"
        args = svc["build"]["args"]
        gpu = "gpu" in svc.get("profiles", [])
        assert args.get("VARIANT", "cpu") == ("gpu" if gpu else "cpu"), name
        assert ("onnx-gpu" in args["EXTRAS"]) == gpu, name
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {})
        assert bool(devices.get("devices")) == gpu, name
        if gpu:
            assert args["BASE"].startswith("nvidia/cuda:"), name
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".run", ".venv", ".env"} <= set(ignored)


# --- every service's command, as a local process, with the environment compose gives it ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Local:
    """Compose's view of the services mapped onto this machine: ports, volumes, host names."""

    def __init__(self, project: dict[str, Any], kafka: KafkaSettings, tmp: Path) -> None:
        self.project, self.kafka, self.tmp = project, kafka, tmp
        self.ports: dict[str, dict[int, int]] = {}
        for name, svc in project["services"].items():
            found = {int(p["target"]) for p in svc.get("ports", [])}
            found |= {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", json.dumps(svc))}
            found |= {int(v) for k, v in svc.get("environment", {}).items() if k.endswith("_PORT")}
            self.ports[name] = {p: _free_port() for p in found}

    def value(self, name: str, key: str, value: str) -> str:
        svc = self.project["services"][name]
        if key.endswith("_PORT") and value.isdigit():
            return str(self.ports[name][int(value)])
        if value == "0.0.0.0":
            return "127.0.0.1"
        value = value.replace("kafka:29092", self.kafka.bootstrap_servers)
        for other, mapping in self.ports.items():  # another container, by its service name
            for port, local in mapping.items():
                value = value.replace(f"{other}:{port}", f"127.0.0.1:{local}")
        for port, local in self.ports[name].items():  # this container's own ports
            value = re.sub(rf"127\.0\.0\.1:{port}\b", f"127.0.0.1:{local}", value)
        for vol in sorted(svc.get("volumes", []), key=lambda v: -len(v["target"])):
            local = str(self.tmp / "volumes" / vol["source"])
            for prefix in ("file://", ""):
                if value.startswith(prefix + vol["target"]):
                    value = prefix + local + value[len(prefix + vol["target"]) :]
        return value

    def env(self, name: str) -> dict[str, str]:
        env = {
            **BASE_ENV,
            "PYTHONPATH": str(ROOT),  # the image installs the package; here it is the checkout
            "ADMUSE_KAFKA_TOPIC_PREFIX": self.kafka.topic_prefix,
        }
        for key, value in self.project["services"][name]["environment"].items():
            env[key] = self.value(name, key, value)
        return env

    def command(self, name: str, argv: list[str]) -> list[str]:
        local = {"python": sys.executable, "admuse": str(Path(sys.executable).with_name("admuse"))}
        return [local.get(a) or self.value(name, "", a) for a in argv]


@pytest.mark.slow
async def test_every_service_runs_from_its_compose_entry(
    project: dict[str, Any], kafka_base: KafkaSettings, tmp_path: Path
) -> None:
    kafka = kafka_base.model_copy(update={"topic_prefix": f"c{uuid.uuid4().hex[:8]}."})
    local = _Local(project, kafka, tmp_path)
    services = project["services"]
    steps = ["campaign"]  # one-shot: runs to completion (exit 0) before its dependants
    waves = [["ingestion", "features", "trainer", "inference", "console"], ["simulator"]]
    assert {n for w in [steps, *waves] for n in w} == {
        n for n, s in services.items() if n != "kafka" and "gpu" not in s.get("profiles", [])
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in steps:
        done = await asyncio.to_thread(
            subprocess.run,
            local.command(name, services[name]["command"]),
            cwd=ROOT, env=local.env(name), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"{name}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
    try:
        for wave in waves:  # depends_on: the simulator starts once inference is healthy
            for name in wave:
                with (logs / f"{name}.log").open("wb") as log:
                    procs[name] = subprocess.Popen(  # noqa: ASYNC220 - returns at once
                        local.command(name, services[name]["command"]),
                        cwd=ROOT, env=local.env(name), stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
            for name in wave:
                check = local.command(name, services[name]["healthcheck"]["test"][1:])

                def healthy(name: str = name, check: list[str] = check) -> bool:
                    if procs[name].poll() is not None:
                        log = (logs / f"{name}.log").read_text()[-3000:]
                        raise AssertionError(f"{name} exited {procs[name].returncode}:\n{log}")
                    return subprocess.run(check, capture_output=True, timeout=10).returncode == 0

                await eventually(
                    lambda h=healthy: asyncio.to_thread(h),
                    150,
                    f"{name}'s compose healthcheck {check}: "
                    + (logs / f"{name}.log").read_text()[-2000:],
                )
        for name, svc in services.items():  # every published port is one the service listens on
            for p in svc.get("ports", []) if name in procs else []:
                with socket.create_connection(("127.0.0.1", local.ports[name][int(p["target"])])):
                    pass
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        codes = {n: p.wait(60) for n, p in procs.items()}
    assert codes == dict.fromkeys(procs, 0), {
        n: (logs / f"{n}.log").read_text()[-1500:] for n, c in codes.items() if c
    }
