"""Neighbours of proven creatives: the local half of the proposal search.

The generator learns p(creative | segment, clicked) from what was served, so its samples stay
near the catalog's designs and the reward model's favourite errors; a region nobody drew (the
demo's warm mobile banner) is reached rarely. A neighbour is a proven creative (the segment's
best human or promoted one) with one or two attributes drawn afresh, uniformly over their range:
half of it is evidence the bandit already holds, so a test of it asks one question ("is this
background better?") instead of seven at once. Drawn in the encoded space
(`CreativeSpace.columns`), so every attribute kind is handled by its encoding: a categorical
block (and each step of a sequence) gets a uniform one-hot, a numeric column a uniform value, a
color three, a circular one a uniform angle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from services.common.creative_space import Column, CreativeSpace

__all__ = ["neighbours"]


def neighbours(
    space: CreativeSpace,
    anchors: Sequence[Mapping[str, object]],
    n: int,
    rng: np.random.Generator,
    *,
    max_changes: int = 2,
) -> list[dict[str, str | float]]:
    """``n`` creatives, each an anchor (attribute maps or Creative records, drawn in turn,
    the first most often) with 1..``max_changes`` of its attributes drawn uniformly anew."""
    if n <= 0 or not anchors or not space.columns:
        return []
    base = space.encode_lenient(anchors)
    # the first anchor (the incumbent) half the time, the others share the rest
    weights = np.full(len(anchors), 0.5 / max(len(anchors) - 1, 1))
    weights[0] = 0.5 if len(anchors) > 1 else 1.0
    rows = base[rng.choice(len(anchors), size=n, p=weights / weights.sum())].copy()
    cols = space.columns
    for row in rows:
        k = int(rng.integers(1, min(max_changes, len(cols)) + 1))
        for c in rng.choice(len(cols), size=k, replace=False):
            _redraw(row, cols[int(c)], rng)
    return space.decode_many(rows, digits=6)


def _redraw(row: np.ndarray, col: Column, rng: np.random.Generator) -> None:
    off, width = col.offset, col.width
    if col.kind == "circular":
        angle = rng.uniform(0.0, 2 * np.pi)
        row[off : off + 2] = (0.5 + 0.5 * np.cos(angle), 0.5 + 0.5 * np.sin(angle))
        return
    blocks = col.blocks()
    if all(b[0] == "categorical" for b in blocks):
        for _, b_off, b_width in blocks:
            row[b_off : b_off + b_width] = 0.0
            row[b_off + int(rng.integers(b_width))] = 1.0
        return
    row[off : off + width] = rng.uniform(0.0, 1.0, size=width)
