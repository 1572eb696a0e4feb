"""A live source's claim: below every event it holds, never ahead of its wall clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.source_watermark import HeldEvents

T0 = 1_796_000_000_000

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("hold"), st.integers(-5_000, 5_000)),  # occurred, relative to now
        st.tuples(st.just("release"), st.integers(0, 50)),  # which held token
        st.tuples(st.just("refuse"), st.integers(-5_000, 5_000), st.integers(0, 10_000)),
        st.tuples(st.just("time"), st.integers(0, 3_000)),
    ),
    max_size=60,
)


@given(ops=_ops, lag=st.integers(0, 2_000))
def test_the_claim_stays_below_everything_held(ops: list[tuple], lag: int) -> None:
    held = HeldEvents()
    now = T0
    tokens: dict[int, int] = {}  # token -> occurred (brute force)
    refused: list[tuple[int, int]] = []  # (occurred, until)
    for op in ops:
        if op[0] == "hold":
            occurred = now + op[1]
            tokens[held.hold(occurred)] = occurred
        elif op[0] == "release" and tokens:
            token = sorted(tokens)[op[1] % len(tokens)]
            held.release(token)
            held.release(token)  # twice is harmless
            del tokens[token]
        elif op[0] == "refuse":
            refused.append((now + op[1], now + op[2]))
            held.refused(now + op[1], now + op[2])
        elif op[0] == "time":
            now += op[1]
        claim = held.claim(now, lag)
        waiting = [*tokens.values(), *(o for o, until in refused if until > now)]
        expected = min([now - lag, *waiting]) - 1
        assert claim == expected
        assert all(claim < o for o in waiting) and claim < now - lag


def test_a_refusal_holds_until_its_horizon_then_the_claim_follows_the_clock() -> None:
    held = HeldEvents()
    held.refused(T0 - 300, until_ms=T0 + 30_000)
    assert held.claim(T0 + 29_999) == T0 - 301
    assert held.held == 1
    assert held.claim(T0 + 30_000) == T0 + 29_999
    assert held.held == 0


def test_an_event_on_its_way_holds_the_claim_until_released() -> None:
    held = HeldEvents()
    token = held.hold(T0)
    assert held.claim(T0 + 60_000) == T0 - 1
    held.release(token)
    assert held.claim(T0 + 60_000, lag_ms=1000) == T0 + 58_999


class _FlakyProducer:
    """Raises a non-Kafka error (a bug's stand-in) on the first `bad` calls, then accepts."""

    def __init__(self, bad: int) -> None:
        self.bad = bad
        self.sent: list[tuple[str, int]] = []

    async def partitions_for(self, topic: str, timeout_s: float) -> set[int]:
        if self.bad:
            self.bad -= 1
            raise RuntimeError("unexpected")
        return {0, 1}

    async def send(self, topic: str, value: bytes, **kw: object) -> None:
        self.sent.append((topic, int(kw["partition"])))  # type: ignore[call-overload]


async def test_an_unexpected_error_is_counted_and_logged_and_the_claims_go_on() -> None:
    from structlog.testing import capture_logs

    from services.common.codec import SchemaRegistry
    from services.common.source_watermark import SourceWatermarks
    from services.common.watermark import WatermarkCodec
    from tests.polling import eventually

    producer = _FlakyProducer(bad=2)
    source = SourceWatermarks(
        producer,  # type: ignore[arg-type]
        topic="raw",
        codec=WatermarkCodec(SchemaRegistry.load()),
        name="s",
        held=HeldEvents(),
        interval_s=0.01,
    )
    with capture_logs() as logs:
        source.start()
        await eventually(lambda: source.stated >= 1, timeout_s=5, what="a claim after the errors")
        await source.close(end=False)
    assert source.failed == 2
    assert sorted(p for _, p in producer.sent[:2]) == [0, 1]
    failures = [e for e in logs if e["event"] == "source_watermark_failed"]
    assert (
        failures and failures[0]["log_level"] == "error" and "RuntimeError" in failures[0]["error"]
    )
