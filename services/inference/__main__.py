"""`python -m services.inference`: the Decide API over HTTP and gRPC."""

import gc

# Start-up is mostly imports, which make no garbage cycles worth collecting: the collector
# stays off until they are done (`app.run` turns it on), about a tenth of a restart.
gc.disable()

from services.inference.app import main  # noqa: E402

if __name__ == "__main__":
    main()
