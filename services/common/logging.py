"""structlog set-up: JSON lines to stdout, or a console renderer on a TTY.

Call `configure_logging` once, in a service's `main()`. Bind per-message context with
`structlog.contextvars.bound_contextvars(topic=..., partition=..., offset=...)`.

Libraries (aiokafka, faust, uvicorn) log through stdlib `logging`; their records go through the
same processors and renderer, so a JSON log stays JSON. While the broker is away they repeat
the same error many times a second: `RepeatFilter` lets the first of each kind through, then
one line per interval saying how many were held back (`repeated`), so an outage costs a few
lines a minute instead of megabytes. `rate_limited(log)` does the same for our own messages.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from services.common.kafka_logs import install_startup_retry_filter

__all__ = ["RepeatFilter", "configure_logging", "get_logger", "rate_limited", "stdlib_handlers"]

# Loggers whose repeats are folded (third-party clients that log per retry).
_NOISY = ("aiokafka", "kafka", "faust", "mode", "uvicorn.error", "asyncio")


def configure_logging(
    level: str = "INFO",
    fmt: str = "auto",
    service: str | None = None,
    *,
    repeat_interval_s: float = 30.0,
) -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries log through stdlib logging: same processors, same renderer, repeats folded.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _from_record],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    handler.addFilter(RepeatFilter(repeat_interval_s))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(logging.getLevelName(level), logging.WARNING))
    install_startup_retry_filter()  # a fresh broker's expected retries are not faults
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def _from_record(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """A stdlib record's traceback as a string field (`exc_info` is not JSON), and the count of
    repeats `RepeatFilter` held back."""
    record = event.get("_record")
    if record is None:
        return event
    if record.exc_info and record.exc_info[0] is not None:
        event["exception"] = logging.Formatter().formatException(record.exc_info)
        event.pop("exc_info", None)
    if getattr(record, "repeated", 0):
        event["repeated"] = record.repeated
        event["interval_s"] = record.repeat_interval_s
    return event


class RepeatFilter(logging.Filter):
    """Let one record of a kind (logger, level, message template) through per interval.

    The first record of a kind passes; later ones within `interval_s` are held back and counted;
    the first one after the interval passes carrying `repeated=<count held back>` (a field of
    the structured record). Only loggers under `prefixes` are folded.
    """

    def __init__(
        self,
        interval_s: float = 30.0,
        prefixes: tuple[str, ...] = _NOISY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.prefixes = prefixes
        self.clock = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # kind → [last shown, held]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is None or now - seen[0] >= self.interval_s:
                held = int(seen[1]) if seen else 0
                self._seen[kind] = [now, 0]
                if len(self._seen) > 1000:  # unbounded message templates: forget the oldest
                    self._seen.pop(next(iter(self._seen)))
            else:
                seen[1] += 1
                return False
        if held:
            record.repeated = held  # shown as the `repeated` field
            record.repeat_interval_s = self.interval_s
        return True


class _RateLimited:
    """`log.warning(event, **kw)` at most once per interval per event name, with a count."""

    def __init__(self, log: Any, interval_s: float, clock: Callable[[], float]) -> None:
        self._log = log
        self._interval_s = interval_s
        self._clock = clock
        self._seen: dict[str, list[float]] = {}

    def _emit(self, method: str, event: str, kw: dict[str, Any]) -> bool:
        now = self._clock()
        seen = self._seen.get(event)
        if seen is not None and now - seen[0] < self._interval_s:
            seen[1] += 1
            return False
        held = int(seen[1]) if seen else 0
        self._seen[event] = [now, 0]
        getattr(self._log, method)(event, repeated=held, interval_s=self._interval_s, **kw)
        return True

    def warning(self, event: str, **kw: Any) -> bool:
        return self._emit("warning", event, kw)

    def error(self, event: str, **kw: Any) -> bool:
        return self._emit("error", event, kw)


def rate_limited(
    log: Any, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
) -> _RateLimited:
    """Wrap a structlog logger so each event name logs once per interval (`repeated=n`)."""
    return _RateLimited(log, interval_s, clock)


def stdlib_handlers() -> list[logging.Handler]:
    """The root handlers `configure_logging` installed (hand them to faust's Worker, which
    otherwise replaces them with its own plain-text one)."""
    return list(logging.getLogger().handlers)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
