"""`python -m services.cli` is the `admuse` command."""

from services.cli import main

if __name__ == "__main__":
    main()
