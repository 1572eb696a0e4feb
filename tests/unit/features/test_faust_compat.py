"""The faust internals the features worker relies on (services/features/faust_compat.py).

Each test names one; a faust upgrade that renames, moves or changes one fails here, loudly,
instead of in production. Upgrading faust means re-checking every adapter and CHECKED_FAUST.
"""

from __future__ import annotations

import asyncio
import inspect
import logging

import faust
import pytest
from faust.streams import current_event

from services.features.faust_compat import (
    CHECKED_FAUST,
    FeaturesApp,
    changelog_topic_name,
    quiet_library_loggers,
    recovery_completed,
    set_changelog_event,
)


@pytest.fixture
def app() -> FeaturesApp:
    return FeaturesApp(
        "compat-test", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )


class _Event:  # faust keeps a weak reference to the current event
    pass


def test_the_adapters_were_checked_against_this_faust() -> None:
    assert faust.__version__ == CHECKED_FAUST, (
        f"faust-streaming is {faust.__version__}, the adapters in faust_compat.py were "
        f"checked against {CHECKED_FAUST}: re-check each, then update CHECKED_FAUST"
    )


def test_setting_the_current_event_is_what_table_writes_read(app: FeaturesApp) -> None:
    stream = app.stream(app.topic("compat-in"))
    event = _Event()
    set_changelog_event(stream, event)  # type: ignore[arg-type]
    assert current_event() is event  # faust.tables.base reads this for the partition
    assert stream.current_event is event


def test_the_producer_factory_and_start_hook_are_still_there() -> None:
    base = faust.App
    assert callable(base._new_producer)
    assert inspect.iscoroutinefunction(inspect.unwrap(base.maybe_start_producer))
    source = inspect.getsource(base.maybe_start_producer)
    # the shortcut keeps faust's two branches: transactions, and starting the producer
    assert "in_transaction" in source and "producer.maybe_start()" in source


async def test_the_shortcut_returns_a_running_producer_without_awaiting_start(
    app: FeaturesApp,
) -> None:
    class _Running:
        started = True

        async def maybe_start(self) -> None:  # pragma: no cover - must not be called
            raise AssertionError("started again")

    app.producer = _Running()  # type: ignore[assignment]
    assert await app.maybe_start_producer() is app.producer


def test_our_producer_gets_the_draining_flush(app: FeaturesApp) -> None:
    producer = app._new_producer()
    assert producer.buffer.flush.__qualname__.startswith("_Drain.")


async def test_recovery_completion_is_an_event(app: FeaturesApp) -> None:
    completed = app.tables.recovery.completed
    assert isinstance(completed, asyncio.Event)
    assert recovery_completed(app) is False
    completed.set()
    assert recovery_completed(app) is True


def test_the_changelog_topic_name_is_the_one_faust_declares(app: FeaturesApp) -> None:
    table = app.Table("join", partitions=4)
    assert changelog_topic_name(table) == "compat-test-join-changelog"
    assert table.changelog_topic.partitions in (None, 4)


def test_library_loggers_follow_the_service_level() -> None:
    for name in ("aiokafka", "faust", "mode"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    quiet_library_loggers("WARNING")
    assert all(logging.getLogger(n).level == logging.WARNING for n in ("aiokafka", "faust"))
