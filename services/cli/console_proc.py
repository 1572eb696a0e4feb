"""The console as a process of `admuse demo` / `admuse up`: supervised like the services,
with its port, admin key and session secret kept in `<run>/console.env` (mode 0600), so
`--resume` brings the same sign-in key back."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

__all__ = ["CONSOLE_FILE", "console_access", "start_console"]

CONSOLE_FILE = "console.env"


def console_access(run: Path) -> dict[str, str]:
    """Port, admin key and session secret of this run's console (made on first use)."""
    from services.cli.stack import _port_free, free_port

    path = run / CONSOLE_FILE
    values: dict[str, str] = {}
    if path.exists():
        lines = path.read_text().splitlines()
        values = dict(line.split("=", 1) for line in lines if "=" in line)
    port = int(values.get("ADMUSE_CONSOLE_HTTP_PORT", "0") or 0)
    fresh = {
        "ADMUSE_CONSOLE_HTTP_PORT": str(port if port and _port_free(port) else free_port()),
        "ADMUSE_CONSOLE_ADMIN_KEYS": values.get("ADMUSE_CONSOLE_ADMIN_KEYS")
        or secrets.token_urlsafe(18),
        "ADMUSE_CONSOLE_SESSION_SECRET": values.get("ADMUSE_CONSOLE_SESSION_SECRET")
        or secrets.token_urlsafe(32),
    }
    if fresh != values:
        run.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{CONSOLE_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("".join(f"{k}={v}\n" for k, v in fresh.items()))
        os.replace(tmp, path)
    return fresh


def start_console(stack: Any, cwd: Path) -> tuple[str, str]:
    """Start `python -m services.console` for the stack's run; (URL, admin key)."""
    from services.cli.stack import ServiceProcess

    run = stack.run_dir.resolve()
    access = console_access(run)
    port = access["ADMUSE_CONSOLE_HTTP_PORT"]
    env = {
        **stack.env_for("console"),
        **access,
        "ADMUSE_CONSOLE_HTTP_HOST": "127.0.0.1",
        "ADMUSE_CONSOLE_RUN_DIR": str(run),
    }
    svc = ServiceProcess(
        "console", env, run / "logs" / "console.log", f"http://127.0.0.1:{port}/readyz"
    )
    svc.start(cwd)
    stack.processes["console"] = svc
    return f"http://127.0.0.1:{port}/", access["ADMUSE_CONSOLE_ADMIN_KEYS"]
