"""`admuse up`: the four services, supervised, without the simulator (bring your own traffic).

Starts the broker if none answers (like `admuse demo`), creates the run's topics, starts
ingestion, features, trainer and inference as local processes (logs in `<run>/logs/`), waits
until each is ready, prints where to send traffic, then keeps them running: a crashed service is
restarted with back-off and counted; a line every `--status-every` seconds (and one per
restart) says what is up. Ctrl-C stops them and prints the supervision table; the exit code is
1 when a service was down at the end or kept crashing. `--resume <run>` starts an earlier run
again with its secrets, API key and topics (its `run.env`).
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from services.cli.stack import Stack

__all__ = ["register"]

_REPO = Path(__file__).resolve().parents[2]


def register(app: typer.Typer) -> None:
    app.command("up")(up)


def up(
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default .run/up-<time>).")
    ] = None,
    topic_prefix: Annotated[
        str, typer.Option(help="Topic prefix of this run ('' : the plain admuse.* topics).")
    ] = "",
    resume: Annotated[
        Path | None, typer.Option(help="Run folder of an earlier demo/up to start again.")
    ] = None,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for the services.")] = 240.0,
    status_every: Annotated[float, typer.Option(help="Seconds between status lines.")] = 30.0,
    env: Annotated[
        list[str] | None, typer.Option(help="Extra KEY=VALUE for every service (repeatable).")
    ] = None,
) -> None:
    """Run the four services and the console here, supervised, until Ctrl-C (no simulator)."""
    from services.cli.demo import _kv, _stack_for
    from services.common.logging import configure_logging

    console = Console()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run = (resume or run_dir or _REPO / ".run" / f"up-{stamp}").resolve()
    run.mkdir(parents=True, exist_ok=True)
    configure_logging("WARNING", "console")
    extra = dict(_kv(x) for x in env or [])
    stack = _stack_for(console, run, topic_prefix, extra, resume is not None)
    raise typer.Exit(asyncio.run(_up(console, stack, run, ready_timeout, status_every)))


async def _up(
    console: Console, stack: Stack, run: Path, ready_timeout: float, status_every: float
) -> int:
    from services.cli.campaign import wait_for_leaders
    from services.cli.console_proc import CONSOLE_FILE, start_console
    from services.cli.demo import print_services
    from services.cli.local_broker import ensure_broker
    from services.cli.stack import RUN_FILE, StackError, warm_up_coordinators
    from services.cli.supervise import Supervisor
    from services.common.kafka import ensure_topics
    from services.common.settings import KafkaSettings
    from services.common.topics import Topics

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    kafka = KafkaSettings().model_copy(
        update={"topic_prefix": stack.topic_prefix, "bootstrap_servers": stack.bootstrap}
    )
    await ensure_broker(console, kafka)
    created = await ensure_topics(kafka, Topics.from_settings(kafka))
    await wait_for_leaders(kafka, created)
    await warm_up_coordinators(kafka)
    supervisor = Supervisor(
        stack,
        _REPO,
        on_event=lambda m: console.print(f"[yellow]{m}[/yellow]"),
        status_path=run / "services.json",
    )
    code = 0
    try:
        stack.start(_REPO)
        console_url, console_key = start_console(stack, _REPO)
        t0 = time.monotonic()
        await asyncio.to_thread(stack.wait_ready, ready_timeout, None, stop.is_set)
        console.print(
            f"services ready in {time.monotonic() - t0:.0f}s; logs in {run / 'logs'}\n"
            f"  Decide:    POST {stack.decide_url}/v1/decide\n"
            f"  events:    POST http://127.0.0.1:{stack.ingestion_port}/v1/events "
            f"or Kafka topic {Topics.from_settings(kafka).events_raw.name}\n"
            f"  console:   {console_url} (sign-in key {console_key}; {run / CONSOLE_FILE})\n"
            f"  API key, secrets and ports: {run / RUN_FILE} (mode 0600)\n"
            "Ctrl-C stops the services."
        )
        watcher = asyncio.create_task(supervisor.run(stop))
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), status_every)
            except TimeoutError:
                console.print(f"services: {supervisor.line()}")
        await watcher
    except StackError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        code = 1
    finally:
        supervisor.stopping = True
        services = supervisor.status()
        healthy = supervisor.healthy()
        console.print("stopping the services…")
        await asyncio.to_thread(stack.stop)
        supervisor.write_status()  # services.json: stopped
    print_services(console, services)
    if code == 0 and not healthy:
        console.print("[red]a service was down at the end or kept crashing: exit 1[/red]")
        code = 1
    return code
