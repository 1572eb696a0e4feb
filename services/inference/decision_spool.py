"""The decision log's spool: Decision records waiting on disk for Kafka, in order.

Frames of (key length, value length) big-endian u32, key, value, appended to one file; the
committed read position is in `<spool>.pos` (written atomically). A torn last frame — a crash
mid-write — is cut off when the spool is opened. `DecisionLog` (decisions.py) writes here what
does not fit its memory bound or is left at shutdown, and sends from here before what came
after it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

from services.common.logging import get_logger
from services.inference.metrics import Metrics

__all__ = ["DecisionSpool", "Record"]

_log = get_logger("services.inference.decisions")
_FRAME = struct.Struct(">II")

Record = tuple[bytes, bytes]  # (key, encoded Decision)


class DecisionSpool:
    def __init__(self, path: Path, metrics: Metrics) -> None:
        self.path = path
        self._pos_path = path.with_name(path.name + ".pos")
        self._metrics = metrics
        self._w: BinaryIO | None = None
        self._r: BinaryIO | None = None
        self._pos = 0  # committed read position
        self.count = 0  # records after the committed position

    @property
    def is_open(self) -> bool:
        return self._w is not None

    def append(self, records: list[Record]) -> None:
        if self._w is None:
            self.open()
        assert self._w is not None
        self._w.write(b"".join(_FRAME.pack(len(k), len(v)) + k + v for k, v in records))
        self._w.flush()
        self.count += len(records)
        self._metrics.decisions_spooled.set(self.count)

    def open(self) -> None:
        self._w = open(self.path, "ab")
        self._r = open(self.path, "rb")
        try:
            self._pos = int(self._pos_path.read_text())
        except (FileNotFoundError, ValueError):
            self._pos = 0
        self.count = self._count_frames()
        self._metrics.decisions_spooled.set(self.count)

    def _count_frames(self) -> int:
        assert self._r is not None and self._w is not None
        count, pos = 0, self._pos
        size = os.fstat(self._r.fileno()).st_size
        self._r.seek(pos)
        while pos + _FRAME.size <= size:
            klen, vlen = _FRAME.unpack(self._r.read(_FRAME.size))
            if pos + _FRAME.size + klen + vlen > size:
                break
            self._r.seek(klen + vlen, os.SEEK_CUR)
            pos += _FRAME.size + klen + vlen
            count += 1
        if pos < size:  # torn last frame from a crash mid-write: cut it off
            _log.warning(
                "decision_spool_ends_in_a_torn_frame",
                detail="dropping it",
                path=str(self.path),
                bytes=size - pos,
            )
            self._w.truncate(pos)
        return count

    def read(self, limit: int) -> tuple[list[Record], int]:
        """Up to `limit` records from the committed position, and the position after them."""
        if self._r is None:
            return [], self._pos
        self._r.seek(self._pos)
        out: list[Record] = []
        pos = self._pos
        while len(out) < limit:
            head = self._r.read(_FRAME.size)
            if len(head) < _FRAME.size:
                break
            klen, vlen = _FRAME.unpack(head)
            body = self._r.read(klen + vlen)
            if len(body) < klen + vlen:
                break
            out.append((body[:klen], body[klen:]))
            pos += _FRAME.size + klen + vlen
        return out, pos

    def commit(self, n: int, new_pos: int) -> None:
        """`n` records up to `new_pos` were delivered."""
        self._pos = new_pos
        self.count -= n
        self._metrics.decisions_spooled.set(self.count)
        if self.count <= 0:
            self.remove()
        else:
            _write_atomic(self._pos_path, str(new_pos).encode())

    def put_in_front(self, records: list[Record]) -> None:
        """Rewrite the spool with `records` (older) before what it still holds."""
        rest: list[Record] = []
        if self._r is not None and self.count:
            rest, _ = self.read(self.count)
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            for k, v in [*records, *rest]:
                fh.write(_FRAME.pack(len(k), len(v)) + k + v)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._pos_path.unlink(missing_ok=True)
        self.open()

    def close(self) -> None:
        for fh in (self._r, self._w):
            if fh is not None:
                fh.close()
        self._r = self._w = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self._pos_path.unlink(missing_ok=True)
        self._pos = self.count = 0
        self._metrics.decisions_spooled.set(0)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
