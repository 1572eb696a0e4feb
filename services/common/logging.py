"""structlog set-up: JSON lines to stdout, or a console renderer on a TTY.

Call `configure_logging` once, in a service's `main()`. Bind per-message context with
`structlog.contextvars.bound_contextvars(topic=..., partition=..., offset=...)`.
"""

from __future__ import annotations

import logging
import sys

import structlog

from services.common.kafka_logs import install_startup_retry_filter

__all__ = ["configure_logging", "get_logger"]


def configure_logging(level: str = "INFO", fmt: str = "auto", service: str | None = None) -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries (aiokafka, uvicorn, faust) log through stdlib logging: route them to stdout too.
    logging.basicConfig(
        level=max(logging.getLevelName(level), logging.WARNING),
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    install_startup_retry_filter()  # a fresh broker's expected retries are not faults
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
