"""Keyed pseudonyms for user ids (HMAC-SHA256). Ingestion and inference use the same secret
(`ADMUSE_PSEUDONYM_SECRET`), so a user's events and decisions carry the same pseudonym and no
raw id is stored past the door it came in by."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["ApiKeys", "Pseudonymizer", "pseudonymize", "stable_unit"]


def pseudonymize(secret: bytes, user_id: str) -> str:
    """Hex HMAC-SHA256 of the user id under `secret` (64 lowercase hex chars)."""
    return Pseudonymizer(secret, cache=0)(user_id)


class Pseudonymizer:
    """`pseudonymize` under one key, for a service that pseudonymizes every request: the
    keyed HMAC state is made once and copied per id, and the `cache` most recent users'
    pseudonyms are remembered (in memory only, like the key itself)."""

    __slots__ = ("_mac", "pseudonymize")

    def __init__(self, secret: bytes, *, cache: int = 100_000) -> None:
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)
        compute = self._compute
        self.pseudonymize = functools.lru_cache(maxsize=cache)(compute) if cache else compute

    def _compute(self, user_id: str) -> str:
        mac = self._mac.copy()
        mac.update(user_id.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()

    def __call__(self, user_id: str) -> str:
        return self.pseudonymize(user_id)

    def __repr__(self) -> str:  # the key never reaches a log line or a traceback
        return "Pseudonymizer(<key hidden>)"


def stable_unit(pseudonym: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by the pseudonym (and salt): for holdout assignment."""
    digest = hashlib.sha256(f"{salt}:{pseudonym}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class ApiKeys:
    """The API keys a service accepts (`ADMUSE_*_API_KEYS`), checked in constant time."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(k.encode("utf-8", "surrogateescape") for k in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def matches(self, given: str | None) -> bool:
        """Whether `given` is one of the keys. Every key is compared, each in constant time,
        so the timing tells neither which key nor how much of one matched."""
        if not given:
            return False
        raw = given.encode("utf-8", "surrogateescape")
        return sum(hmac.compare_digest(raw, k) for k in self._keys) > 0
