"""`python -m services.simulator`: play a scenario's audience against a running Decide API."""

from services.simulator.app import main

if __name__ == "__main__":
    main()
