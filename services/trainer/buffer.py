"""The training buffer: recent rewards per campaign, bounded by count and age, on disk.

The file (gzip JSON, written atomically) also holds the next offset per partition of the
rewards topic, so a restarted trainer resumes from there instead of replaying the topic. A
missing or unreadable file means: rebuild from `admuse.rewards` (the caller seeks back).
Rows are de-duplicated by decision_id, so a replay never counts a reward twice.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["BufferFileError", "RewardRow", "TrainingBuffer"]

_FORMAT = 1


class BufferFileError(ValueError):
    """The buffer file cannot be read; rebuild from the rewards topic."""


@dataclass(frozen=True)
class RewardRow:
    decision_id: str
    segment: str
    creative_id: str
    propensity: float
    reward: float
    decided_at_ms: int

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> RewardRow:
        """From a decoded Reward record; raises ValueError for values unusable in training."""
        at = rec["decided_at"]
        ms = int(at.timestamp() * 1000) if isinstance(at, datetime) else int(at)
        propensity, reward = float(rec["propensity"]), float(rec["reward"])
        if not 0.0 < propensity <= 1.0:
            raise ValueError(f"propensity {propensity} is outside (0, 1]")
        if reward != reward:  # NaN
            raise ValueError("reward is NaN")
        return cls(
            str(rec["decision_id"]),
            str(rec["segment"]),
            str(rec["creative_id"]),
            propensity,
            reward,
            ms,
        )


class TrainingBuffer:
    """Per campaign, at most `max_rows` rewards decided within `max_age_ms` of the newest."""

    def __init__(self, max_rows: int, max_age_ms: int, path: Path | None = None) -> None:
        self.max_rows = max_rows
        self.max_age_ms = max_age_ms
        self.path = path
        self.offsets: dict[str, dict[int, int]] = {}  # topic -> partition -> next offset
        self._rows: dict[str, OrderedDict[str, RewardRow]] = {}

    def add(self, campaign_id: str, row: RewardRow) -> bool:
        """Add a reward; False when its decision_id is already in the buffer."""
        rows = self._rows.setdefault(campaign_id, OrderedDict())
        if row.decision_id in rows:
            return False
        rows[row.decision_id] = row
        while len(rows) > self.max_rows:
            rows.popitem(last=False)
        return True

    def note_offset(self, topic: str, partition: int, offset: int) -> None:
        """Record that everything before `offset + 1` of `topic`/`partition` is in the buffer."""
        self.offsets.setdefault(topic, {})[partition] = offset + 1

    def evict(self, now_ms: int) -> int:
        """Drop rows decided before `now_ms - max_age_ms`; return how many went."""
        cutoff = now_ms - self.max_age_ms
        dropped = 0
        for rows in self._rows.values():
            old = [k for k, r in rows.items() if r.decided_at_ms < cutoff]
            for k in old:
                del rows[k]
            dropped += len(old)
        return dropped

    def rows(self, campaign_id: str) -> list[RewardRow]:
        return list(self._rows.get(campaign_id, {}).values())

    def campaigns(self) -> list[str]:
        return sorted(k for k, v in self._rows.items() if v)

    def __len__(self) -> int:
        return sum(len(v) for v in self._rows.values())

    def save(self) -> None:
        """Write the buffer atomically (temporary file, then rename)."""
        if self.path is None:
            return
        doc = {
            "format": _FORMAT,
            "offsets": {
                t: {str(p): o for p, o in parts.items()} for t, parts in self.offsets.items()
            },
            "campaigns": {
                c: [list(astuple(r)) for r in rows.values()] for c, rows in self._rows.items()
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".partial")
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=3) as fh:
            json.dump(doc, fh, separators=(",", ":"))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path, max_rows: int, max_age_ms: int) -> TrainingBuffer:
        """Read a saved buffer; BufferFileError when it is missing or unreadable."""
        buf = cls(max_rows, max_age_ms, path)
        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                doc = json.load(fh)
            if doc.get("format") != _FORMAT:
                raise BufferFileError(
                    f"buffer file {path} has format {doc.get('format')!r}, expected {_FORMAT}"
                )
            buf.offsets = {
                t: {int(p): int(o) for p, o in parts.items()} for t, parts in doc["offsets"].items()
            }
            for campaign, rows in doc["campaigns"].items():
                for r in rows:
                    buf.add(
                        campaign,
                        RewardRow(
                            str(r[0]), str(r[1]), str(r[2]), float(r[3]), float(r[4]), int(r[5])
                        ),
                    )
        except FileNotFoundError:
            raise BufferFileError(f"no buffer file at {path}") from None
        except (OSError, EOFError, ValueError, KeyError, TypeError, IndexError) as exc:
            if isinstance(exc, BufferFileError):
                raise
            raise BufferFileError(f"buffer file {path} is unreadable ({exc})") from exc
        return buf

    def extend(self, campaign_id: str, rows: Iterable[RewardRow]) -> int:
        return sum(self.add(campaign_id, r) for r in rows)
