"""`python -m services.inference`: the Decide API over HTTP and gRPC."""

from services.inference.app import main

if __name__ == "__main__":
    main()
