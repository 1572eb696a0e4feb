from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.common.privacy import ApiKeys, pseudonymize, stable_unit


def test_api_keys_accept_exactly_the_configured_keys() -> None:
    keys = ApiKeys(["alpha-key", "beta-key"])
    assert keys
    assert keys.matches("alpha-key")
    assert keys.matches("beta-key")
    for wrong in ("alpha", "alpha-key ", "ALPHA-KEY", "beta-keyx", "", None):
        assert not keys.matches(wrong), wrong


def test_no_keys_accepts_nothing() -> None:
    keys = ApiKeys([])
    assert not keys
    assert not keys.matches("anything")


@given(st.text(), st.text())
def test_api_keys_never_raise_on_any_header_text(key: str, given_key: str) -> None:
    keys = ApiKeys([key]) if key else ApiKeys([])
    assert keys.matches(given_key) == (bool(key) and given_key == key)


def test_pseudonyms_are_keyed_and_stable() -> None:
    a = pseudonymize(b"secret-a", "user-1")
    assert a == pseudonymize(b"secret-a", "user-1")
    assert a != pseudonymize(b"secret-b", "user-1")
    assert a != pseudonymize(b"secret-a", "user-2")
    assert len(a) == 64 and "user-1" not in a


def test_stable_unit_is_in_range_and_salted() -> None:
    values = [stable_unit(pseudonymize(b"k", f"u{i}"), "exp") for i in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert 0.45 < sum(values) / len(values) < 0.55
    assert stable_unit("p", "a") != stable_unit("p", "b")
