"""The broker `admuse demo` and `admuse up` use: the one answering at the configured address, or
one started here with deploy/kafka/kafka.sh (left running: it is shared)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

__all__ = ["ensure_broker", "kafka_script"]

_REPO = Path(__file__).resolve().parents[2]


async def ensure_broker(console: Console, kafka: Any) -> bool:
    """True when this demo started the broker (deploy/kafka/kafka.sh up)."""
    from services.common.kafka import wait_for_broker

    host, _, port = kafka.bootstrap_servers.split(",")[0].rpartition(":")
    with quiet_connect_errors():
        try:
            await wait_for_broker(kafka, 3)
            console.print(f"Kafka answers at {kafka.bootstrap_servers} (leaving it as it is)")
            return False
        except TimeoutError:
            pass
        if host not in ("127.0.0.1", "localhost"):
            console.print(f"[red]no broker answers at {kafka.bootstrap_servers}[/red]")
            raise typer.Exit(1)
        console.print(
            f"no broker answering: starting one on port {port} (deploy/kafka/kafka.sh up)"
        )
        await asyncio.to_thread(kafka_script, "up", int(port))
        await wait_for_broker(kafka, 60)
    return True


@contextlib.contextmanager
def quiet_connect_errors() -> Iterator[None]:
    """aiokafka logs every refused connection while we probe for a broker: expected here."""
    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def kafka_script(action: str, port: int) -> None:
    """deploy/kafka/kafka.sh for the broker at 127.0.0.1:<port> (own data folder off 9092)."""
    import os

    env = {**os.environ, "PYTHON": sys.executable, "ADMUSE_KAFKA_PORT": str(port)}
    if port != 9092:
        env.setdefault("ADMUSE_KAFKA_CONTROLLER_PORT", str(port + 1))
        env.setdefault("ADMUSE_KAFKA_DATA_DIR", str(_REPO / ".run" / f"kafka-{port}"))
    subprocess.run([str(_REPO / "deploy/kafka/kafka.sh"), action], check=True, env=env)
