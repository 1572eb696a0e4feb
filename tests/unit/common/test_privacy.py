from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.privacy import ApiKeys, Pseudonymizer, pseudonymize, stable_unit
from services.common.settings import PseudonymSecretSetting


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


def test_pseudonyms_are_the_reference_hmac_sha256() -> None:
    """The one definition: Python's own HMAC-SHA256 of the UTF-8 id, as hex."""
    import hashlib
    import hmac

    want = hmac.new(b"k3y", "zoë".encode(), hashlib.sha256).hexdigest()
    assert pseudonymize(b"k3y", "zoë") == want


@given(st.lists(st.text(max_size=20), max_size=30))
def test_a_cached_pseudonymizer_agrees_with_pseudonymize(ids: list[str]) -> None:
    cached = Pseudonymizer(b"secret", cache=8)
    for user_id in ids + ids:  # the second round comes from the cache
        assert cached(user_id) == pseudonymize(b"secret", user_id)
    assert "secret" not in repr(cached)


def test_the_pseudonym_secret_is_declared_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service and command reads ADMUSE_PSEUDONYM_SECRET through one setting."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "services"
    reads = re.compile(r"(alias=|environ\.get\(|getenv\().{0,40}PSEUDONYM_SECRET")
    declared = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*.py") if reads.search(p.read_text())
    )
    assert declared == ["common/settings.py"], declared
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "s3")
    assert PseudonymSecretSetting().pseudonym_key() == b"s3"
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "")
    with pytest.raises(ValueError, match="ADMUSE_PSEUDONYM_SECRET is not set"):
        PseudonymSecretSetting().pseudonym_key()
