"""The admuse web console (DESIGN.md §5): campaigns, the live experiment, creatives and their
review, models, operations — read from the topics, acted on through the same contracts and
library functions as the `admuse` CLI. `python -m services.console`."""

from services.console.app import create_app, main
from services.console.settings import Settings

__all__ = ["Settings", "create_app", "main"]
