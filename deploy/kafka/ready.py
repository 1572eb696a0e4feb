"""Exit 0 when a Kafka broker at argv[1] answers a metadata request, 1 otherwise.

Used by kafka.sh to wait for readiness by polling a real call rather than sleeping.
"""

import asyncio
import sys

from aiokafka.client import AIOKafkaClient


async def _probe(bootstrap: str) -> bool:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout=4)
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(_probe(sys.argv[1])) else 1)
