"""Committing a transaction only once every record in it was delivered (stream.py says why)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerFenced

__all__ = ["DeliveryFailed", "commit_delivered"]

_log = structlog.get_logger(__name__)


class DeliveryFailed(RuntimeError):
    """Records of a transaction were not delivered: it was aborted, nothing of it committed."""


async def commit_delivered(
    producer: AIOKafkaProducer, futures: Sequence[asyncio.Future[Any]]
) -> None:
    """Commit the open transaction only once every record in it was acknowledged; otherwise
    abort it and raise `DeliveryFailed` (the producer is not to be used again)."""
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        fenced = next((f for f in failed if isinstance(f, ProducerFenced)), None)
        if fenced is not None:
            raise fenced
        _log.error(
            "records_not_delivered",
            detail="aborting the transaction and stopping",
            failed_batches=len(failed),
            error=repr(failed[0]),
        )
        try:
            await producer.abort_transaction()
        except Exception as exc:  # a dead sender refuses it too: the restart's new epoch aborts it
            _log.warning("aborting_the_transaction_failed", error=repr(exc))
        raise DeliveryFailed(f"{len(failed)} batches not delivered: {failed[0]!r}") from failed[0]
    await producer.commit_transaction()
