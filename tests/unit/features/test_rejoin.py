"""A features worker takes only the partitions of its first assignment in place; gaining any
later makes it stop and exit 75 to be started afresh (services/features/rejoin.py). The
end-to-end proof is tests/integration/test_features_kill.py (a peer's takeover, a crash loop)."""

from __future__ import annotations

import inspect
import signal
from typing import Any

import pytest
from faust.transport.consumer import ThreadDelegateConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from services.common.health import RESTART_EXIT_CODE
from services.features import app as features_app
from services.features import commit_gaps, rejoin
from services.features.commit_gaps import GapSafeConsumer
from services.features.rejoin import REJOIN_EXIT_CODE, HeldPartitions

partition_sets = st.frozensets(st.integers(0, 11), max_size=12)


@given(first=partition_sets, later=st.lists(partition_sets, max_size=6))
def test_only_an_assignment_that_adds_partitions_gains(
    first: frozenset[int], later: list[frozenset[int]]
) -> None:
    held = HeldPartitions()
    assert held.gained(first) == frozenset(), "the first assignment is taken as it is"
    last = first
    for assigned in later:
        gained = held.gained(assigned)
        assert gained == assigned - last
        if gained:
            break  # the worker restarts
        last = assigned  # kept or shrunk: taken in place, and it is what is held now
        assert held.held == assigned


class _Consumer:
    """What GapSafeConsumer.on_partitions_assigned reads of faust's consumer."""

    def __init__(self) -> None:
        self.held_partitions = HeldPartitions()

    def _is_changelog_tp(self, tp: TP) -> bool:
        return tp.topic.endswith("-changelog")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"faust": [], "rejoin": []}

    async def faust_assigned(self: Any, assigned: set[TP], generation_id: int = 0) -> None:
        seen["faust"].append(set(assigned))

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", faust_assigned)
    monkeypatch.setattr(
        commit_gaps, "request_rejoin", lambda g, h: seen["rejoin"].append((set(g), set(h)))
    )
    return seen


async def test_a_gained_stream_partition_never_reaches_faust(calls: dict[str, list[Any]]) -> None:
    c = _Consumer()
    ev0, ev1, dec0 = TP("admuse.events", 0), TP("admuse.events", 1), TP("admuse.decisions", 0)
    log1 = TP("app-join-changelog", 1)
    await GapSafeConsumer.on_partitions_assigned(c, {ev0, dec0})  # type: ignore[arg-type]
    await GapSafeConsumer.on_partitions_assigned(c, {ev0, log1})  # type: ignore[arg-type]
    assert calls["faust"] == [{ev0, dec0}, {ev0, log1}], "first, then shrunk (+ a changelog)"
    await GapSafeConsumer.on_partitions_assigned(c, {ev0, ev1})  # type: ignore[arg-type]
    assert calls["rejoin"] == [({ev1}, {ev0})]
    assert len(calls["faust"]) == 2, "faust never saw the assignment with a gained partition"


def test_faust_delivers_assignments_through_the_consumer_method_we_override() -> None:
    # aiokafka's listener → the consumer thread → the main loop's consumer, by this name
    listener = inspect.getsource(faust_aiokafka.ConsumerRebalanceListener.on_partitions_assigned)
    assert "self._thread.on_partitions_assigned(" in listener
    assert "self.on_partitions_assigned," in inspect.getsource(
        ThreadDelegateConsumer.threadsafe_partitions_assigned
    )
    assert hasattr(faust_aiokafka.Consumer, "_is_changelog_tp")


def test_a_rejoin_stops_the_worker_once_and_arms_a_hard_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kills: list[tuple[int, int]] = []
    timers: list[tuple[float, Any, tuple[Any, ...]]] = []

    class _Timer:
        def __init__(self, seconds: float, fn: Any, args: tuple[Any, ...]) -> None:
            timers.append((seconds, fn, args))
            self.daemon = False

        def start(self) -> None:
            assert self.daemon, "the hard exit must not keep the process alive"

    monkeypatch.setattr(rejoin.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    monkeypatch.setattr(rejoin.threading, "Timer", _Timer)
    monkeypatch.setattr(rejoin, "_requested", rejoin.threading.Event())
    assert not rejoin.rejoin_requested()
    rejoin.request_rejoin({TP("admuse.events", 1)}, {TP("admuse.events", 0)})
    rejoin.request_rejoin({TP("admuse.events", 2)}, set())  # a second call changes nothing
    assert rejoin.rejoin_requested()
    assert kills == [(rejoin.os.getpid(), signal.SIGTERM)]
    assert [(fn, args) for _, fn, args in timers] == [(rejoin.os._exit, (REJOIN_EXIT_CODE,))]
    assert REJOIN_EXIT_CODE == RESTART_EXIT_CODE == 75


@pytest.mark.parametrize("requested, code", [(True, 75), (False, 0)])
def test_the_worker_exits_75_after_a_rejoin_and_as_faust_says_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, requested: bool, code: int
) -> None:
    monkeypatch.setenv("ADMUSE_FEATURES_STATE_DIR", str(tmp_path))

    class _Worker:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def execute_from_commandline(self) -> None:
            raise SystemExit(0)  # mode's worker always ends with sys.exit

    monkeypatch.setattr(features_app.faust, "Worker", _Worker)
    monkeypatch.setattr(
        features_app, "build_app", lambda settings: type("A", (), {"conf": _Conf()})()
    )
    monkeypatch.setattr(features_app, "rejoin_requested", lambda: requested)
    with pytest.raises(SystemExit) as ended:
        features_app.main()
    assert ended.value.code == code


class _Conf:
    loghandlers: Any = None
