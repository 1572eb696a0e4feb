"""`python -m services.ingestion`."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from services.common.logging import configure_logging


def main() -> None:
    from services.ingestion.app import run
    from services.ingestion.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        print(f"ingestion cannot start: {problems}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log.level, settings.log.format, service="ingestion")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
