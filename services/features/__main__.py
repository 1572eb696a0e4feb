"""`python -m services.features`: run the features worker (faust)."""

from services.features.app import main

if __name__ == "__main__":
    main()
