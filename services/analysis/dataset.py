"""Logged decisions as columns: the one shape every estimator and report reads.

Contexts and actions are integer codes into vocabularies (`contexts`, `actions`), so per-cell
statistics are `np.bincount` calls and a target policy is a small (contexts x actions) matrix.
A context is the segment key `k1=v1|k2=v2` (services.common.segment), whatever the source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["LoggedData", "encode_strings"]


@dataclass(frozen=True)
class LoggedData:
    """n logged decisions with their outcome.

    context, action: int32 codes into `contexts` / `actions`.
    reward: float64; propensity: float64 in (0, 1] (probability the logging policy gave the
    logged action); timestamp_ms: int64 epoch ms (decision time); arm: int8 codes into `arms`.
    extra: optional per-row columns kept for writing the rows back out (user, position,
    decision_id, raw context fields), each a numpy array of length n.
    """

    context: np.ndarray
    contexts: tuple[str, ...]
    action: np.ndarray
    actions: tuple[str, ...]
    reward: np.ndarray
    propensity: np.ndarray
    timestamp_ms: np.ndarray
    arm: np.ndarray
    arms: tuple[str, ...]
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_contexts(self) -> int:
        return len(self.contexts)

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    @classmethod
    def from_columns(
        cls,
        *,
        context: Sequence[str] | np.ndarray,
        action: Sequence[str] | np.ndarray,
        reward: Sequence[float] | np.ndarray,
        propensity: Sequence[float] | np.ndarray,
        timestamp_ms: Sequence[int] | np.ndarray | None = None,
        arm: Sequence[str] | np.ndarray | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> LoggedData:
        """Encode string columns into codes (vocabularies sorted)."""
        ctx_vocab, ctx_codes = _encode(context)
        act_vocab, act_codes = _encode(action)
        n = len(act_codes)
        if arm is None:
            arm_vocab, arm_codes = ("logged",), np.zeros(n, dtype=np.int64)
        else:
            arm_vocab, arm_codes = _encode(arm)
        ts = (
            np.zeros(n, dtype=np.int64)
            if timestamp_ms is None
            else np.asarray(timestamp_ms, dtype=np.int64)
        )
        out = cls(
            context=ctx_codes.astype(np.int32),
            contexts=ctx_vocab,
            action=act_codes.astype(np.int32),
            actions=act_vocab,
            reward=np.asarray(reward, dtype=np.float64),
            propensity=np.asarray(propensity, dtype=np.float64),
            timestamp_ms=ts,
            arm=arm_codes.astype(np.int8),
            arms=arm_vocab,
            extra={k: np.asarray(v) for k, v in (extra or {}).items()},
        )
        out.check()
        return out

    def check(self) -> None:
        """Raise ValueError when columns disagree in length or values are out of range."""
        n = self.n
        for name in ("context", "action", "propensity", "timestamp_ms", "arm"):
            if getattr(self, name).shape != (n,):
                raise ValueError(
                    f"column {name} has shape {getattr(self, name).shape}, expected ({n},)"
                )
        for name, col in self.extra.items():
            if len(col) != n:
                raise ValueError(f"extra column {name} has {len(col)} rows, expected {n}")
        bad = ~((self.propensity > 0) & (self.propensity <= 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{int(bad.sum())} propensities outside (0, 1], first at row {i}: "
                f"{self.propensity[i]!r}"
            )
        if not np.isfinite(self.reward).all():
            raise ValueError("rewards must be finite numbers")

    def select(self, mask: np.ndarray) -> LoggedData:
        """Rows where `mask` is true (vocabularies unchanged)."""
        return replace(
            self,
            context=self.context[mask],
            action=self.action[mask],
            reward=self.reward[mask],
            propensity=self.propensity[mask],
            timestamp_ms=self.timestamp_ms[mask],
            arm=self.arm[mask],
            extra={k: v[mask] for k, v in self.extra.items()},
        )

    def arm_mask(self, arm: str) -> np.ndarray:
        """Boolean mask of rows in `arm` (all false when the arm never occurs)."""
        if arm not in self.arms:
            return np.zeros(self.n, dtype=bool)
        return self.arm == self.arms.index(arm)

    def is_binary(self) -> bool:
        return bool(np.isin(self.reward, (0.0, 1.0)).all())


def _encode(values: Sequence[str] | np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    return encode_strings(values)


def encode_strings(values: Sequence[Any] | np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """(sorted vocabulary, int64 codes) of a string column.

    Hash-based (Arrow dictionary encoding, O(n)) rather than a sort of every row: a 1M-row
    column encodes in tens of milliseconds. Values that are not strings are stringified.
    """
    import pyarrow as pa

    n = len(values)
    if n == 0:
        return (), np.zeros(0, dtype=np.int64)
    try:
        arr = pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = None
    if arr is None or arr.null_count:
        arr = pa.array([str(v) for v in values], type=pa.string())
    encoded = arr.dictionary_encode()
    dictionary = encoded.dictionary.to_pylist()
    order = np.argsort(np.array(dictionary, dtype=object))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return tuple(dictionary[i] for i in order), rank[indices]
