"""Values of the two structured attribute kinds: circular numbers and step sequences.

- **circular**: a number on a circle of circumference ``max - min`` (a hue in degrees, a musical
  key as a position on the circle of fifths), so ``max`` is ``min`` again. It is encoded as the
  point ``(0.5 + 0.5·cos θ, 0.5 + 0.5·sin θ)`` with ``θ = 2π (x - min) / (max - min)``: both
  columns stay in [0, 1] like every other continuous column, and the two ends of the range are
  one point, so neither the GAN nor the reward model sees a seam. With a ``step`` the decoded
  value snaps to ``min + k·step`` (twelve keys: ``min 0, max 12, step 1``).
- **sequence**: a fixed number of steps, each step one token from the vocabulary of each of
  the sequence's fields (a melody: ``degree`` and ``duration``; a story: ``beat``). The wire
  value (a Creative record's attribute, a string) is the canonical text
  ``"tok:tok tok:tok …"``: steps separated by one space, a step's fields by ``:``, in the
  declared field order. Tokens are therefore restricted to `TOKEN` (no space, no colon).

Pure functions, no numpy state: the campaign model, the creative space, the admission gate and
the domains all parse and measure these values through this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TOKEN",
    "SequenceShape",
    "circular_decode",
    "circular_distance",
    "circular_encode",
    "circular_positions",
]

TOKEN = re.compile(r"^[A-Za-z0-9_.#+/'-]{1,40}$")

Steps = tuple[tuple[str, ...], ...]


def circular_encode(x: float, lo: float, hi: float) -> tuple[float, float]:
    """A value on the circle [lo, hi) → its two columns in [0, 1]."""
    theta = 2.0 * math.pi * (float(x) - lo) / (hi - lo)
    return 0.5 + 0.5 * math.cos(theta), 0.5 + 0.5 * math.sin(theta)


def circular_decode(c: float, s: float, lo: float, hi: float, step: float | None = None) -> float:
    """Two columns (any point, not only on the circle) → the value in [lo, hi) at its angle;
    the centre (no angle) decodes to ``lo``. With ``step``, the nearest ``lo + k·step``."""
    theta = math.atan2(2.0 * s - 1.0, 2.0 * c - 1.0) % (2.0 * math.pi)
    span = hi - lo
    x = theta / (2.0 * math.pi) * span
    if step:
        n = circular_positions(lo, hi, step)
        return lo + (round(x / step) % n) * step
    value = lo + x
    return lo if value >= hi else value  # lo + x can round up to hi: hi is lo again


def circular_positions(lo: float, hi: float, step: float) -> int:
    """How many ``step``s go round the circle; ValueError unless a whole number of them."""
    n = (hi - lo) / step
    if step <= 0 or n < 2 or abs(n - round(n)) > 1e-9 * max(1.0, n):
        raise ValueError(f"step {step} must divide max - min ({hi - lo}) into 2 or more parts")
    return round(n)


def circular_distance(x: float, y: float, lo: float, hi: float) -> float:
    """Shortest way round between two values, as a share of half the circle: 0 (same point)
    to 1 (opposite points)."""
    span = hi - lo
    d = abs(float(x) - float(y)) % span
    return min(d, span - d) / (span / 2.0)


@dataclass(frozen=True)
class SequenceShape:
    """``length`` steps; ``fields`` = ((field name, vocabulary), …) in step order."""

    length: int
    fields: tuple[tuple[str, tuple[str, ...]], ...]

    def __post_init__(self) -> None:
        if not 1 <= self.length <= 64:
            raise ValueError(f"a sequence needs 1 to 64 steps, got length {self.length}")
        if not self.fields:
            raise ValueError("a sequence needs at least one field")
        names = [n for n, _ in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"sequence field names repeat: {names}")
        for name, vocab in self.fields:
            if not vocab or len(set(vocab)) != len(vocab):
                raise ValueError(f"field {name!r} needs distinct values, got {list(vocab)}")
            bad = [t for t in vocab if not TOKEN.match(t)]
            if bad:
                raise ValueError(
                    f"field {name!r}: {bad} are not tokens (letters, digits, _ . # + / ' -; "
                    "no space or colon)"
                )

    @classmethod
    def from_record(cls, attr: Mapping[str, Any]) -> SequenceShape:
        """From a Campaign record's attribute (or an `encoding` entry): length, fields."""
        fields = tuple(
            (str(f["name"]), tuple(str(v) for v in f["values"])) for f in attr.get("fields") or ()
        )
        return cls(int(attr.get("length") or 0), fields)

    @property
    def step_width(self) -> int:
        return sum(len(v) for _, v in self.fields)

    @property
    def width(self) -> int:
        return self.length * self.step_width

    def parse(self, value: object) -> Steps:
        """The canonical text, or a list of steps (``"a:b"`` strings or token lists) → steps;
        ValueError naming the step and field at fault."""
        if isinstance(value, str):
            raw: list[object] = value.split(" ") if value else []
        elif isinstance(value, Sequence):
            raw = list(value)
        else:
            raise ValueError(f"{value!r} is not a sequence (text 'a:b c:d' or a list of steps)")
        if len(raw) != self.length:
            raise ValueError(f"has {len(raw)} steps, the sequence has {self.length}")
        steps = []
        for i, step in enumerate(raw):
            tokens = step.split(":") if isinstance(step, str) else step
            if not isinstance(tokens, Sequence) or len(tokens) != len(self.fields):
                raise ValueError(f"step {i} {step!r} needs {len(self.fields)} field(s)")
            for (name, vocab), tok in zip(self.fields, tokens, strict=True):
                if tok not in vocab:
                    raise ValueError(f"step {i} {name}={tok!r} is not one of {list(vocab)}")
            steps.append(tuple(str(t) for t in tokens))
        return tuple(steps)

    def is_valid(self, value: object) -> bool:
        try:
            self.parse(value)
        except ValueError:
            return False
        return True

    @staticmethod
    def format(steps: Sequence[Sequence[str]]) -> str:
        """Steps → the canonical text (the inverse of `parse`)."""
        return " ".join(":".join(step) for step in steps)

    def canonical(self, value: object) -> str:
        return self.format(self.parse(value))

    def field(self, steps: Steps, name: str) -> tuple[str, ...]:
        """One field's tokens along the sequence (a melody's degrees)."""
        i = [n for n, _ in self.fields].index(name)
        return tuple(step[i] for step in steps)

    def distance(self, a: Steps, b: Steps) -> float:
        """Share of (step, field) slots that differ: 0 (same) to 1 (nothing in common)."""
        slots = self.length * len(self.fields)
        pairs = zip(a, b, strict=True)
        return sum(x != y for sa, sb in pairs for x, y in zip(sa, sb, strict=True)) / slots
