"""`admuse ope`: estimate what another policy would have earned, from logged decisions.

Reads the campaign's rewards from Kafka (each carries the logged propensity) or a log file
(`--replay FILE --mapping …`), builds the target policy and prints DM, IPS, SNIPS and DR with
their intervals and the support diagnostics — or the reason it refuses.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from services.analysis import LoggedData, OpeResult, TargetPolicy

EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


def register(app: typer.Typer) -> None:
    app.command("ope")(ope)


def ope(
    policy: Annotated[
        str,
        typer.Option(
            help="Target policy: uniform, creative:<id>, greedy, greedy:<state.json>, "
            "file:<policy.json>."
        ),
    ],
    campaign: Annotated[
        str | None, typer.Option(help="Campaign to read from Kafka (admuse.rewards).")
    ] = None,
    replay: Annotated[
        Path | None, typer.Option(help="Read logs from this CSV/JSONL/Parquet file instead.")
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(help="Column mapping for --replay (role=column,… or a JSON/YAML file)."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="auto, csv, jsonl or parquet.")] = "auto",
    skip_bad_rows: Annotated[
        bool, typer.Option(help="Leave out bad rows of --replay (they are still listed).")
    ] = False,
    from_: Annotated[
        str | None, typer.Option("--from", help="Decisions from (ISO-8601, epoch ms, -2h).")
    ] = None,
    to: Annotated[str | None, typer.Option(help="Decisions before this time.")] = None,
    offsets: Annotated[
        str | None, typer.Option(help="admuse.rewards offsets: START[-END] or P:START[-END],…")
    ] = None,
    arm: Annotated[
        str, typer.Option(help="Logged arm to evaluate on: optimized, control or all.")
    ] = "all",
    min_ess: Annotated[float, typer.Option(help="Refuse below this effective sample size.")] = 100,
    max_unsupported: Annotated[
        float, typer.Option(help="Refuse above this share of target mass without support.")
    ] = 0.01,
    max_pending: Annotated[
        float,
        typer.Option(
            help="--campaign: refuse (exit 3) when more than this share of the decisions read "
            "has no Reward yet (window still open)."
        ),
    ] = 0.05,
    force: Annotated[
        bool, typer.Option(help="Report estimates even when support is thin.")
    ] = False,
    folds: Annotated[int, typer.Option(help="Cross-fitting folds of DR's reward model.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold assignment.")] = 0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON.")
    ] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write an HTML page.")] = None,
) -> None:
    """Off-policy evaluation (DM, IPS, SNIPS, DR) of a target policy on logged decisions."""
    if (campaign is None) == (replay is None):
        fail("give exactly one source: --campaign (Kafka) or --replay FILE")
    if replay is not None:
        if not mapping:
            fail("--replay needs --mapping (e.g. action=ad,reward=click,propensity=p)")
        data = load_replay(replay, mapping, fmt, skip_bad_rows)
    else:
        data = _load_kafka(campaign, from_, to, offsets, max_pending)  # type: ignore[arg-type]
    run_ope(
        data,
        policy,
        campaign=campaign,
        arm=arm,
        min_ess=min_ess,
        max_unsupported=max_unsupported,
        force=force,
        folds=folds,
        seed=seed,
        json_out=json_out,
        html_out=html_out,
    )


def run_ope(
    data: LoggedData,
    policy_spec: str,
    *,
    campaign: str | None = None,
    arm: str = "all",
    min_ess: float = 100,
    max_unsupported: float = 0.01,
    force: bool = False,
    folds: int = 5,
    seed: int = 0,
    json_out: Path | None = None,
    html_out: Path | None = None,
) -> OpeResult:
    """Evaluate, print, write files; exit 3 when refused. Shared with `admuse replay --to ope`."""
    from rich.console import Console

    from services.analysis import (
        PolicyError,
        SupportThresholds,
        evaluate,
        ope_html,
        print_ope,
        write_html,
        write_json,
    )

    if arm != "all":
        data = data.select(data.arm_mask(arm))
    try:
        target = build_policy(data, policy_spec, campaign)
    except PolicyError as exc:
        fail(str(exc))
    result = evaluate(
        data,
        target,
        folds=folds,
        seed=seed,
        thresholds=SupportThresholds(min_ess=min_ess, max_unsupported_mass=max_unsupported),
        force=force,
    )
    print_ope(result, Console())
    if json_out:
        write_json(json_out, result)
    if html_out:
        write_html(html_out, ope_html(result))
    if result.refused:
        raise typer.Exit(EXIT_REFUSED)
    return result


def build_policy(data: LoggedData, spec: str, campaign: str | None) -> TargetPolicy:
    """The TargetPolicy for a spec; `greedy` without a file reads admuse.stats of `campaign`."""
    from services.analysis import (
        PolicyError,
        fixed,
        from_distribution,
        greedy,
        load_bandit_state,
        load_distribution,
        parse_policy_spec,
        uniform,
    )

    parsed = parse_policy_spec(spec)
    if parsed.kind == "uniform":
        return uniform(data)
    if parsed.kind == "creative":
        return fixed(data, parsed.arg or "")
    if parsed.kind == "file":
        return from_distribution(data, load_distribution(parsed.arg or ""), f"file:{parsed.arg}")
    if parsed.arg:
        state = load_bandit_state(parsed.arg)
    elif campaign:
        state = _bandit_state_from_kafka(campaign)
    else:
        raise PolicyError(
            "greedy needs a bandit state: greedy:<state.json>, or --campaign to read admuse.stats"
        )
    return greedy(data, state)


def load_replay(path: Path, mapping: str, fmt: str, skip_bad_rows: bool) -> LoggedData:
    from rich.console import Console

    from services.analysis import ColumnMapping, ReplayError, read_logs

    try:
        result = read_logs(
            path,
            ColumnMapping.parse(mapping),
            fmt=fmt,  # type: ignore[arg-type]
            on_bad="skip" if skip_bad_rows else "fail",
        )
    except ReplayError as exc:
        fail(str(exc))
    if result.bad_rows:
        Console(stderr=True).print(
            f"left out {len(result.bad_row_numbers)} bad row(s) of {result.total_rows}: "
            + "; ".join(str(b) for b in result.bad_rows[:10]),
            style="yellow",
        )
    return result.data


def check_pending(outcomes: int, pending: int, max_pending: float) -> None:
    """Say how many decisions have no Reward yet (their window is still open, or features is
    behind); exit 3 when their share of all decisions read is above `max_pending`."""
    from rich.console import Console

    total = outcomes + pending
    share = pending / total if total else 0.0
    if not pending:
        return
    message = (
        f"{pending} of {total} decisions ({share:.1%}) have no Reward yet: their attribution "
        "window is still open (or features has not closed it); estimates use only the "
        f"{outcomes} with a known outcome"
    )
    if share > max_pending:
        Console(stderr=True).print(
            f"refused: {message}. Wait for their windows to close, narrow --to, or pass "
            f"--max-pending {share:.2f} to evaluate anyway.",
            style="bold red",
            highlight=False,
        )
        raise typer.Exit(EXIT_REFUSED)
    Console(stderr=True).print(f"warning: {message}", style="yellow", highlight=False)


def _load_kafka(
    campaign: str, from_: str | None, to: str | None, offsets: str | None, max_pending: float
) -> LoggedData:
    from services.analysis import (
        CampaignLogs,
        ReadWindow,
        load_campaign,
        parse_offsets,
        parse_time,
    )
    from services.common.codec import SchemaRegistry
    from services.common.kafka import wait_for_broker
    from services.common.settings import KafkaSettings

    try:
        window = ReadWindow(
            from_ms=parse_time(from_) if from_ else None,
            to_ms=parse_time(to) if to else None,
            offsets=parse_offsets(offsets) if offsets else None,
        )
    except ValueError as exc:
        fail(str(exc))
    kafka = KafkaSettings()

    async def run() -> CampaignLogs:
        await wait_for_broker(kafka, 30)
        return await load_campaign(
            kafka,
            SchemaRegistry.load(),
            campaign,
            decisions=ReadWindow(from_ms=window.from_ms, to_ms=window.to_ms),
            rewards=window,
            with_catalog=False,
        )

    try:
        logs = asyncio.run(run())
    except (LookupError, TimeoutError) as exc:
        fail(str(exc))
    check_pending(logs.rewards.n, logs.pending or 0, max_pending)
    return logs.rewards


def _bandit_state_from_kafka(campaign: str) -> dict[str, dict[str, tuple[float, float]]]:
    from services.analysis import read_bandit_state
    from services.common.codec import SchemaRegistry
    from services.common.settings import KafkaSettings

    state = asyncio.run(read_bandit_state(KafkaSettings(), SchemaRegistry.load(), campaign))
    if not state:
        fail(f"admuse.stats has no cumulative stats for campaign {campaign!r} (greedy needs them)")
    return state


def fail(message: str) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(f"error: {message}", style="bold red", highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)
