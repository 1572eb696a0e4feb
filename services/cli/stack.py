"""The four services as local processes for `admuse demo`: start, wait until ready, stop.

Each service runs as `python -m services.<name>` in its own session (a terminal Ctrl-C reaches
only the demo, which then stops them in order), with its log in `<run>/logs/<name>.log`.
Readiness is a real call: GET /readyz (or the service's web port) answering 200.

A run's secrets (pseudonym secret, API key, model-signing keys), topic prefix and ports are
saved in `<run>/run.env` (mode 0600, KEY=VALUE lines): `Stack.resume(run)` starts the same run again
(`admuse demo/up --resume <run>`), and `env $(cat <run>/run.env) admuse erase --user …`
erases a user of that run with the pseudonyms its services computed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RUN_FILE",
    "SERVICES",
    "ServiceProcess",
    "Stack",
    "StackError",
    "free_port",
    "warm_up_coordinators",
]

RUN_FILE = "run.env"

SERVICES = ("ingestion", "features", "trainer", "inference")


class StackError(RuntimeError):
    """A service did not start; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    log_path: Path
    ready_url: str | None
    proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        if not self.alive:
            return False
        if self.ready_url is None:
            return True
        import httpx  # here, so `admuse --help` does not pay for it

        try:
            return httpx.get(self.ready_url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, wait, then SIGKILL (this process's own session only)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


def _signing_keys() -> tuple[str, str, str]:
    from services.common.signing import generate_key_pair

    return generate_key_pair()


def _signing_env(name: str, keys: tuple[str, str, str]) -> dict[str, str]:
    """The private key only to the trainer, the public one only to inference."""
    if name == "trainer":
        return {"ADMUSE_TRAINER_SIGNING_KEY": keys[0]}
    if name == "inference":
        return {"ADMUSE_INFERENCE_TRUSTED_KEYS": keys[1]}
    return {}


@dataclass
class Stack:
    """The four services of one run, configured for `run_dir` and one topic prefix."""

    run_dir: Path
    bootstrap: str
    topic_prefix: str
    extra_env: Mapping[str, str] = field(default_factory=dict)
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    pseudonym_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # A model-signing key pair for this run: the trainer signs, inference trusts the public key.
    signing_keys: tuple[str, str, str] = field(default_factory=_signing_keys)
    inference_port: int = field(default_factory=free_port)
    ingestion_port: int = field(default_factory=free_port)
    features_port: int = field(default_factory=free_port)
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def decide_url(self) -> str:
        return f"http://127.0.0.1:{self.inference_port}"

    def env_for(self, name: str) -> dict[str, str]:
        """Environment of one service: shared groups, generated secrets, ports, run folders."""
        run = self.run_dir.resolve()
        tag = self.topic_prefix.rstrip(".") or "admuse"
        # The caller's environment passes through (Kafka security, log level, service tuning);
        # what makes this run a run is set on top.
        env = dict(os.environ)
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "ADMUSE_KAFKA_TOPIC_PREFIX": self.topic_prefix,
                "ADMUSE_KAFKA_CLIENT_ID": f"{tag}-{name}",
                "ADMUSE_LOG_FORMAT": "json",
                "ADMUSE_MODEL_STORE_URL": f"file://{run}/model-store",
                "ADMUSE_PSEUDONYM_SECRET": self.pseudonym_secret,
            }
        )
        env.update(_service_env(name, self, run, tag))
        env.update(_signing_env(name, self.signing_keys))
        for key, value in _DEMO_PACE.get(name, {}).items():
            env.setdefault(key, value)  # the caller's environment may set its own pace
        env.update(self.extra_env)
        return env

    def _ready_url(self, name: str) -> str | None:
        if name == "features":  # faust's web server answers once the app runs
            return f"http://127.0.0.1:{self.features_port}/metrics"
        port = {"inference": self.inference_port, "ingestion": self.ingestion_port}.get(name)
        return f"http://127.0.0.1:{port}/readyz" if port else None  # trainer: process alive

    def start(self, cwd: Path, names: tuple[str, ...] = SERVICES) -> None:
        for name in names:
            svc = ServiceProcess(
                name,
                self.env_for(name),
                self.run_dir / "logs" / f"{name}.log",
                self._ready_url(name),
            )
            svc.start(cwd)
            self.processes[name] = svc

    def wait_ready(
        self,
        deadline_s: float = 180.0,
        on_wait: Callable[[list[str]], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        """Poll every service's readiness until all answer or one dies / the deadline passes."""
        end = time.monotonic() + deadline_s
        pending = dict(self.processes)
        while pending and not (cancelled and cancelled()):
            for name, svc in list(pending.items()):
                if not svc.alive:
                    raise StackError(
                        f"{name} exited with code {svc.proc.returncode if svc.proc else '?'} "
                        f"during start-up; last lines of {svc.log_path}:\n{svc.tail()}"
                    )
                if svc.ready():
                    del pending[name]
            if not pending:
                return
            if time.monotonic() > end:
                name, svc = next(iter(pending.items()))
                raise StackError(
                    f"{name} was not ready after {deadline_s:.0f}s "
                    f"({svc.ready_url or 'process check'}); last lines of {svc.log_path}:\n"
                    f"{svc.tail()}"
                )
            if on_wait:
                on_wait(sorted(pending))
            time.sleep(0.5)

    def save_run(self) -> Path:
        """Write `<run>/run.env` (0600): what `resume` and `admuse erase` need for this run."""
        values = {
            "ADMUSE_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ADMUSE_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "ADMUSE_PSEUDONYM_SECRET": self.pseudonym_secret,
            "ADMUSE_INFERENCE_API_KEYS": self.api_key,
            "ADMUSE_INGESTION_API_KEYS": self.api_key,
            "ADMUSE_SIMULATOR_API_KEY": self.api_key,
            "ADMUSE_TRAINER_SIGNING_KEY": self.signing_keys[0],
            "ADMUSE_INFERENCE_TRUSTED_KEYS": self.signing_keys[1],
            "ADMUSE_RUN_SIGNING_KEY_ID": self.signing_keys[2],
            "ADMUSE_SIMULATOR_DECIDE_URL": self.decide_url,
            "ADMUSE_INFERENCE_HTTP_PORT": str(self.inference_port),
            "ADMUSE_INGESTION_HTTP_PORT": str(self.ingestion_port),
            "ADMUSE_FEATURES_WEB_PORT": str(self.features_port),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / RUN_FILE
        tmp = path.with_name(f".{RUN_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{k}={v}\n" for k, v in values.items()))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return path

    @classmethod
    def resume(cls, run_dir: Path, extra_env: Mapping[str, str] | None = None) -> Stack:
        """The stack of an earlier run from its `run.env`: same secrets, prefix and (when
        still free) ports. Raises StackError when the folder holds no run."""
        path = run_dir / RUN_FILE
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise StackError(f"cannot resume {run_dir}: {exc}") from None
        values = dict(line.split("=", 1) for line in lines if "=" in line)
        try:
            stack = cls(
                run_dir,
                values["ADMUSE_KAFKA_BOOTSTRAP_SERVERS"],
                values["ADMUSE_KAFKA_TOPIC_PREFIX"],
                dict(extra_env or {}),
                api_key=values["ADMUSE_INFERENCE_API_KEYS"],
                signing_keys=(
                    values["ADMUSE_TRAINER_SIGNING_KEY"],
                    values["ADMUSE_INFERENCE_TRUSTED_KEYS"],
                    values["ADMUSE_RUN_SIGNING_KEY_ID"],
                ),
                pseudonym_secret=values["ADMUSE_PSEUDONYM_SECRET"],
            )
        except KeyError as exc:
            raise StackError(f"cannot resume {run_dir}: {path} lacks {exc}") from None
        for attr, key in (
            ("inference_port", "ADMUSE_INFERENCE_HTTP_PORT"),
            ("ingestion_port", "ADMUSE_INGESTION_HTTP_PORT"),
            ("features_port", "ADMUSE_FEATURES_WEB_PORT"),
        ):
            port = int(values.get(key, "0") or 0)
            if port and _port_free(port):
                setattr(stack, attr, port)
        return stack

    def stop(self) -> dict[str, int | None]:
        """Stop in reverse dependency order: inference first (flushes decisions), then the rest."""
        codes = {}
        for name in ("console", "inference", "trainer", "features", "ingestion"):
            if name in self.processes:
                codes[name] = self.processes[name].stop()
        return codes


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _service_env(name: str, stack: Stack, run: Path, tag: str) -> dict[str, str]:
    if name == "inference":
        return {
            "ADMUSE_INFERENCE_API_KEYS": stack.api_key,
            "ADMUSE_INFERENCE_HTTP_HOST": "127.0.0.1",
            "ADMUSE_INFERENCE_HTTP_PORT": str(stack.inference_port),
            "ADMUSE_INFERENCE_GRPC_PORT": "0",
            "ADMUSE_INFERENCE_INSTANCE_ID": f"{tag}-inference-0",
            "ADMUSE_INFERENCE_SPOOL_DIR": str(run / "inference-spool"),
        }
    if name == "ingestion":
        return {
            "ADMUSE_INGESTION_API_KEYS": stack.api_key,
            "ADMUSE_INGESTION_HTTP_HOST": "127.0.0.1",
            "ADMUSE_INGESTION_HTTP_PORT": str(stack.ingestion_port),
            "ADMUSE_INGESTION_INSTANCE_ID": "0",
        }
    if name == "features":
        return {
            "ADMUSE_FEATURES_WEB_HOST": "127.0.0.1",
            "ADMUSE_FEATURES_WEB_PORT": str(stack.features_port),
            "ADMUSE_FEATURES_STATE_DIR": str(run / "features-state"),
        }
    if name == "trainer":
        return {"ADMUSE_TRAINER_BUFFER_PATH": str(run / "trainer" / "buffer.json.gz")}
    return {}


# Demo pace: small networks; retrain on 20 new positives (and a quarter more than the last
# version saw), a shifted CTR or a grown error, at most every 10 s (or 1000 rewards' time),
# and at least every 2 minutes with new positives (CPU or GPU, whichever torch finds).
_DEMO_PACE = {
    "trainer": {
        "ADMUSE_TRAINER_PROFILE": "small",
        "ADMUSE_TRAINER_RETRAIN_MIN_NEW_POSITIVES": "20",
        "ADMUSE_TRAINER_RETRAIN_FLOOR_REWARDS": "1000",
        "ADMUSE_TRAINER_RETRAIN_FLOOR_MIN_S": "10",
        "ADMUSE_TRAINER_RETRAIN_EVERY_MINUTES": "2",
        "ADMUSE_TRAINER_MIN_ROWS": "200",
        "ADMUSE_TRAINER_MIN_POSITIVES": "20",
    },
    # Challengers judged within 90 s (reviewed every 10 s) at a coarse precision (±100 %, two
    # standard errors: enough to tell a creative twice as good), in at most 20 % of the full loop's
    # traffic, so a few minutes decide several per segment at a few per cent CTR.
    "inference": {
        "ADMUSE_INFERENCE_CHALLENGER_SHARE": "0.2",
        "ADMUSE_INFERENCE_CHALLENGER_DECIDE_S": "90",
        "ADMUSE_INFERENCE_CHALLENGER_PRECISION": "1.0",
        "ADMUSE_INFERENCE_RETIRE_CHECK_S": "10",
    },
}


async def warm_up_coordinators(kafka: Any, timeout_s: float = 60.0) -> None:
    """Make the broker create its group and transaction coordinators' topics now.

    On a broker that has never served a consumer group or a transaction, the first ones create
    `__consumer_offsets` and `__transaction_state`; if that happens while four services start
    at once, their own start-up (faust's changelog topics in particular) races it. One offset
    commit and one empty transaction, before the services start, settle both.
    """
    import asyncio

    from aiokafka import TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from services.common.kafka import make_consumer, make_producer
    from services.common.topics import Topics

    topics = Topics.from_settings(kafka)
    tag = f"{kafka.topic_prefix}admuse-warm-up-{secrets.token_hex(4)}"

    async def run() -> None:
        producer = make_producer(kafka, transactional_id=tag)
        await producer.start()  # InitProducerId: the transaction coordinator
        try:
            await producer.begin_transaction()
            await producer.commit_transaction()
        finally:
            await producer.stop()
        consumer = make_consumer(kafka, group_id=tag)
        await consumer.start()
        try:
            tp = TopicPartition(topics.campaigns.name, 0)
            consumer.assign([tp])
            await consumer.commit({tp: OffsetAndMetadata(0, "")})  # the group coordinator
        finally:
            await consumer.stop()

    # While the coordinators are being created aiokafka logs retriable errors: expected here.
    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(run(), timeout_s)
    finally:
        log.setLevel(level)
