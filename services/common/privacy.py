"""Keyed pseudonyms for user ids (HMAC-SHA256). Ingestion and inference use the same secret
(`ADMUSE_PSEUDONYM_SECRET`), so a user's events and decisions carry the same pseudonym and no
raw id is stored past the door it came in by."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["pseudonymize", "stable_unit"]


def pseudonymize(secret: bytes, user_id: str) -> str:
    """Hex HMAC-SHA256 of the user id under `secret` (64 lowercase hex chars)."""
    return hmac.new(secret, user_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def stable_unit(pseudonym: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by the pseudonym (and salt): for holdout assignment."""
    digest = hashlib.sha256(f"{salt}:{pseudonym}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
