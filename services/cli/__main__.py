"""`python -m services.cli` is the `admuse` command."""

from services.cli import app

if __name__ == "__main__":
    app()
