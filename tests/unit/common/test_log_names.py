"""One log-event naming style: every structlog event a service logs is snake_case (a name to
grep and count by), and what a person should read goes in fields (`detail=...`)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[3] / "services"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
SNAKE = re.compile(r"[a-z][a-z0-9_]*")


def _events() -> list[tuple[str, int, str]]:
    found = []
    for path in SERVICES.rglob("*.py"):
        if "_pb2" in path.name:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            base = node.func.value
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            first = node.args[0] if node.args else None
            if (
                node.func.attr in LEVELS
                and "log" in name.lower()
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and "%" not in first.value  # the standard library's own format strings
            ):
                found.append((str(path.relative_to(SERVICES)), node.lineno, first.value))
    return found


def test_every_log_event_name_is_snake_case() -> None:
    events = _events()
    assert len(events) > 60  # the scan sees the services' log calls
    bad = [f"{p}:{line}: {name!r}" for p, line, name in events if not SNAKE.fullmatch(name)]
    assert not bad, "log event names must be snake_case:\n" + "\n".join(bad)
