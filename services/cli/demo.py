"""`admuse demo` and `admuse simulate`: the whole loop on one machine, and its result.

`demo`: start the Kafka broker if none answers, create the run's topics, apply the scenario's
campaign, start the four services (logs in `<run>/logs/`), wait until each is ready, play the
simulator for the budget with a live view, fetch the top creatives' SVGs from inference, stop
everything and print the result table; the HTML report lands in `<run>/report.html`. Ctrl-C
ends the traffic early and still stops the services and writes the result; a second Ctrl-C
skips the report. The broker is left running (it is shared; `make kafka-down` stops it).

`simulate`: only the simulator, against services that already run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.demo_artifacts import fetch_svgs, save_metrics, wanted
from services.cli.demo_view import show_live
from services.cli.local_broker import ensure_broker, kafka_script

__all__ = ["register"]

_REPO = Path(__file__).resolve().parents[2]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
    app.command("simulate")(simulate)


def demo(
    budget: Annotated[float, typer.Option(help="Seconds of simulated traffic.")] = 180.0,
    scenario: Annotated[
        str, typer.Option(help="Bundled scenario (demo, bench, e2e) or a YAML path.")
    ] = "demo",
    seed: Annotated[int, typer.Option(help="Seeds users, arrivals and outcomes.")] = 0,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default .run/demo-<time>).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(help="Arrivals per second (default: the scenario's).")
    ] = None,
    topic_prefix: Annotated[
        str | None,
        typer.Option(
            help="Topic prefix of this run (default demo-<time>.: each run starts clean)."
        ),
    ] = None,
    keep_kafka: Annotated[
        bool,
        typer.Option(
            help="Leave running a broker this demo started (default: stop it at the end; "
            "a broker that was already running is always left alone)."
        ),
    ] = False,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for the services.")] = 240.0,
    env: Annotated[
        list[str] | None, typer.Option(help="Extra KEY=VALUE for every service (repeatable).")
    ] = None,
    live: Annotated[bool, typer.Option(help="Show the live view (off: a line every 10 s).")] = True,
    keep: Annotated[
        bool, typer.Option(help="After the traffic, keep the console and services up until Ctrl-C.")
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Run folder of an earlier demo/up: same secrets, API key and topics "
            "(its run.env); results of this run go there too."
        ),
    ] = None,
) -> None:
    """Run the whole loop here: Kafka, the four services, the simulator, a report.

    The services are supervised: one that crashes is restarted (with back-off); the command
    exits 1 when a service is down at the end or kept crashing."""
    from services.common.campaign import SpecError
    from services.simulator import load_scenario

    console = Console()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run = (resume or run_dir or _REPO / ".run" / f"demo-{stamp}").resolve()
    run.mkdir(parents=True, exist_ok=True)
    try:
        scen = load_scenario(scenario)
    except SpecError as exc:
        console.print(f"[red]bad scenario[/red]\n{exc}", highlight=False)
        raise typer.Exit(2) from None
    from services.common.logging import configure_logging

    configure_logging("WARNING", "console")  # the live view and the result say what happens
    extra = dict(_kv(x) for x in env or [])
    prefix = topic_prefix if topic_prefix is not None else f"demo-{stamp}."
    stack = _stack_for(console, run, prefix, extra, resume is not None)
    code = asyncio.run(
        _demo(console, scen, run, budget, seed, rate, stack, keep_kafka, ready_timeout, live, keep)
    )
    raise typer.Exit(code)


def _stack_for(
    console: Console, run: Path, prefix: str, extra: dict[str, str], resume: bool
) -> Any:
    """A new run's stack (secrets saved in <run>/run.env), or the resumed run's."""
    from services.cli.stack import Stack, StackError
    from services.common.settings import KafkaSettings

    if resume:
        try:
            stack = Stack.resume(run, extra)
        except StackError as exc:
            console.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(2) from None
        console.print(f"resuming run {run} (topics prefixed {stack.topic_prefix!r})")
    else:
        stack = Stack(run, KafkaSettings().bootstrap_servers, prefix, extra)
    stack.save_run()
    return stack


def _kv(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"--env {item!r}: expected KEY=VALUE")
    return key, value


async def _demo(
    console: Console,
    scen: Any,
    run: Path,
    budget: float,
    seed: int,
    rate: float | None,
    stack: Any,
    keep_kafka: bool,
    ready_timeout: float,
    live: bool,
    keep: bool = False,
) -> int:
    from services.cli.campaign import apply_spec, wait_for_leaders
    from services.cli.console_proc import start_console
    from services.cli.stack import StackError, warm_up_coordinators
    from services.cli.supervise import Supervisor
    from services.common.kafka import ensure_topics
    from services.common.settings import KafkaSettings
    from services.common.topics import Topics
    from services.simulator import CreativeWatch, measure_names
    from services.simulator import simulate as play

    stop = asyncio.Event()
    interrupts = {"n": 0}

    def on_sigint() -> None:
        interrupts["n"] += 1
        stop.set()
        if interrupts["n"] == 1:
            console.print("[yellow]stopping: ending traffic, then the services[/yellow]")

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, on_sigint)

    prefix = stack.topic_prefix
    kafka = KafkaSettings().model_copy(
        update={"topic_prefix": prefix, "bootstrap_servers": stack.bootstrap}
    )
    started_kafka = await ensure_broker(console, kafka)
    created = await ensure_topics(kafka, Topics.from_settings(kafka))
    await wait_for_leaders(kafka, created)
    await warm_up_coordinators(kafka)
    applied = await apply_spec(kafka, scen.campaign)
    console.print(
        f"run folder [bold]{run}[/bold]; topics prefixed {prefix!r}; campaign "
        f"{applied.campaign_id} revision {applied.revision} with "
        f"{len(applied.creatives)} catalog creatives"
    )
    supervisor = Supervisor(
        stack,
        _REPO,
        on_event=lambda m: console.print(f"[yellow]{m}[/yellow]"),
        status_path=run / "services.json",
    )
    sup_stop = asyncio.Event()
    sup_task: asyncio.Task[None] | None = None
    watch = CreativeWatch(kafka, scen.campaign.campaign_id)
    svgs: dict[str, str | bytes] = {}
    player_box: dict[str, Any] = {}
    code = 0
    try:
        stack.start(_REPO)
        console_url, console_key = start_console(stack, _REPO)
        console.print(f"started {', '.join(stack.processes)}; logs in {run / 'logs'}")
        t0 = time.monotonic()
        await asyncio.to_thread(stack.wait_ready, ready_timeout, None, stop.is_set)
        if stop.is_set():
            raise StackError("interrupted while the services were starting")
        console.print(
            f"services ready in {time.monotonic() - t0:.0f}s; playing {budget:.0f}s of "
            f"traffic (scenario {scen.campaign.campaign_id}, seed {seed})\n"
            f"console: [bold]{console_url}[/bold] sign-in key [bold]{console_key}[/bold]"
        )
        sup_task = asyncio.create_task(supervisor.run(sup_stop), name="supervisor")
        await watch.start()
        sim = asyncio.create_task(
            play(
                scen,
                kafka=kafka,
                decide_url=stack.decide_url,
                api_key=stack.api_key,
                run_dir=run,
                seed=seed,
                duration_s=budget,
                rate=rate,
                stop=stop,
                drain_s=min(15.0, scen.campaign.attribution_window + 2),
                on_start=lambda p: player_box.setdefault("player", p),
            )
        )
        await show_live(
            console, sim, player_box, watch, supervisor, budget, live, measure_names(scen)
        )
        await sim
        if keep and not stop.is_set():
            console.print(
                f"traffic done; the console stays up at {console_url} (key {console_key}) "
                "with the services and the broker: Ctrl-C stops them and prints the report"
            )
            await stop.wait()
        if interrupts["n"] < 2:
            svgs = await fetch_svgs(stack, wanted(run, watch, scen))
            await save_metrics(stack, run)
    except StackError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        code = 1
    finally:
        supervisor.stopping = True
        sup_stop.set()
        if sup_task is not None:
            await sup_task
        services = supervisor.status()
        healthy = supervisor.healthy()
        await watch.stop()
        console.print("stopping the services…")
        codes = await asyncio.to_thread(stack.stop)
        supervisor.write_status()  # services.json: stopped
        console.print("stopped: " + ", ".join(f"{k} ({v})" for k, v in codes.items()))
        if started_kafka and not keep_kafka:
            console.print("stopping the broker this demo started (--keep-kafka leaves it)")
            port = int(kafka.bootstrap_servers.split(",")[0].rpartition(":")[2])
            await asyncio.to_thread(kafka_script, "down", port)
    if interrupts["n"] >= 2:
        console.print(f"interrupted twice: no report; results so far in {run}")
        return 130
    if (run / "results.jsonl").exists():
        _finish(console, scen, run, watch, svgs, services)
    print_services(console, services)
    if code == 0 and not healthy:
        console.print("[red]a service was down at the end or kept crashing: exit 1[/red]")
        code = 1
    return code


def print_services(console: Console, services: dict[str, dict[str, Any]]) -> None:
    """The supervision table: state at the end, restarts, seconds down, exit codes seen."""
    table = Table(title="services")
    for col in ("service", "state", "restarts", "down (s)", "exits"):
        table.add_column(col, justify="left" if col in ("service", "state", "exits") else "right")
    for name, s in services.items():
        state = s["state"] if s["state"] == "up" else f"[red]{s['state']}[/red]"
        exits = ", ".join(str(c) for c in s["exits"]) or "-"
        table.add_row(name, state, str(s["restarts"]), f"{s['down_s']:.0f}", exits)
    console.print(table)


def _finish(
    console: Console,
    scen: Any,
    run: Path,
    watch: Any,
    svgs: dict[str, str | bytes],
    services: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from services.simulator import analyze, load_results, print_result, write_html

    rows, failed = load_results(run / "results.jsonl")
    result = analyze(rows, scen, creatives=watch.creatives, models=watch.models, failed=len(failed))
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads((run / "summary.json").read_text())
        result["events"] = {
            k: summary.get(k, 0) for k in ("events_sent", "events_unsent", "clicks_unsent")
        }
    if services is not None:
        result["services"] = services
    (run / "result.json").write_text(json.dumps(result, indent=2, default=str))
    report = write_html(run / "report.html", result, rows, watch.creatives, svgs)
    print_result(result, console, report)
    return result


def simulate(
    api_key: Annotated[
        str, typer.Option(envvar="ADMUSE_SIMULATOR_API_KEY", help="X-API-Key for Decide.")
    ],
    decide_url: Annotated[
        str, typer.Option(envvar="ADMUSE_SIMULATOR_DECIDE_URL", help="Inference's HTTP API.")
    ] = "http://127.0.0.1:8080",
    scenario: Annotated[str, typer.Option(help="Bundled scenario or a YAML path.")] = "demo",
    seed: Annotated[int, typer.Option(help="Seeds users, arrivals and outcomes.")] = 0,
    duration: Annotated[float, typer.Option(help="Seconds of traffic.")] = 60.0,
    rate: Annotated[
        float | None, typer.Option(help="Arrivals per second (default: the scenario's).")
    ] = None,
    run_dir: Annotated[Path, typer.Option(help="Where results and report go.")] = Path(
        ".run/simulator"
    ),
    apply_campaign: Annotated[
        bool, typer.Option(help="Publish the scenario's campaign first.")
    ] = True,
) -> None:
    """Play a scenario against services that already run, then print the result."""
    from services.common.settings import KafkaSettings
    from services.simulator import CreativeWatch, load_scenario
    from services.simulator import simulate as play

    console = Console()
    scen = load_scenario(scenario)
    kafka = KafkaSettings()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        watch = CreativeWatch(kafka, scen.campaign.campaign_id)
        await watch.start()
        if apply_campaign:
            from services.cli.campaign import apply_spec

            applied = await apply_spec(kafka, scen.campaign)
            console.print(f"applied campaign {applied.campaign_id} revision {applied.revision}")
        try:
            await play(
                scen,
                kafka=kafka,
                decide_url=decide_url,
                api_key=api_key,
                run_dir=run_dir,
                seed=seed,
                duration_s=duration,
                rate=rate,
                stop=stop,
            )
        finally:
            await watch.stop()
        _finish(console, scen, run_dir, watch, {})

    run_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(main())
