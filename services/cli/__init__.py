"""The `admuse` command. Each command group lives in a module of this package and keeps its
heavy imports (torch, onnxruntime, faust) inside the command body, so `admuse --help` is fast.
"""

from __future__ import annotations

import sys

import typer

from services.cli import campaign, creatives, demo, tail, topics
from services.cli import erase as erase_cmd
from services.cli import keys as keys_cmd
from services.cli import models as models_cmd
from services.cli import ope as ope_cmd
from services.cli import replay as replay_cmd
from services.cli import report as report_cmd
from services.cli import train as train_cmd
from services.cli import up as up_cmd
from services.cli.campaign import ApplyResult, apply_spec, wait_for_leaders
from services.cli.models import ModelOpError, pin_version, rollback_model, stored_versions
from services.cli.stack import Stack, StackError, warm_up_coordinators
from services.cli.supervise import Supervisor

# `app`/`main` are the command; the rest is what the fault suite (services/chaos) and the
# console (services/console) use.
__all__ = [
    "ApplyResult",
    "ModelOpError",
    "Stack",
    "StackError",
    "Supervisor",
    "app",
    "apply_spec",
    "main",
    "pin_version",
    "rollback_model",
    "stored_versions",
    "wait_for_leaders",
    "warm_up_coordinators",
]

app = typer.Typer(
    name="admuse",
    help="admuse: generate ad creatives and optimize them in a closed loop over Apache Kafka.",
    no_args_is_help=True,
    add_completion=False,
)

# One line per command module; each defines `register(app)`.
topics.register(app)
campaign.register(app)
creatives.register(app)
demo.register(app)
up_cmd.register(app)
ope_cmd.register(app)
replay_cmd.register(app)
report_cmd.register(app)
train_cmd.register(app)
erase_cmd.register(app)
keys_cmd.register(app)
models_cmd.register(app)
tail.register(app)


def main() -> None:
    """The `admuse` entry point: refused Kafka credentials are one clear line, not a traceback."""
    from services.common.security import KafkaSecurityError, TLSConfigError

    try:
        app()
    except (KafkaSecurityError, TLSConfigError) as exc:
        print(f"admuse: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
