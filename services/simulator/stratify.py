"""The true-CTR difference of two arms, stratified by audience segment.

The experiment splits *users* between the arms, so each arm's mix of segments differs from the
audience's by chance (a segment of 5,000 users puts 49 % or 51 % of them in a 50 % arm). When
segments click at very different rates, that chance alone moves an arm's mean true CTR by more
than the policies differ: on the default demo scenario an A/A comparison (two arms serving the
same distribution) came out 0.08 points apart, outside its unstratified interval. Comparing
within each segment and weighting by the audience's segment shares takes that noise out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

__all__ = ["stratified_difference"]


def stratified_difference(
    a: Iterable[tuple[str, float]],
    b: Iterable[tuple[str, float]],
    shares: Mapping[str, float],
    z: float = 1.96,
) -> tuple[float, float, float]:
    """(difference, low, high) of ``Σ_s w_s (mean_a,s − mean_b,s)`` over (segment, value)
    pairs, ``w`` the segments' shares normalized over the segments both arms served (at least
    two values each); normal interval from the per-segment variances. NaNs without any."""
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for seg, x in a:
        groups.setdefault(seg, ([], []))[0].append(float(x))
    for seg, x in b:
        groups.setdefault(seg, ([], []))[1].append(float(x))
    usable = {s: g for s, g in groups.items() if len(g[0]) > 1 and len(g[1]) > 1 and s in shares}
    total = sum(shares[s] for s in usable)
    if total <= 0:
        return math.nan, math.nan, math.nan
    diff = var = 0.0
    for s, (xa, xb) in usable.items():
        w = shares[s] / total
        ma, va = _mean_var(xa)
        mb, vb = _mean_var(xb)
        diff += w * (ma - mb)
        var += w * w * (va / len(xa) + vb / len(xb))
    half = z * math.sqrt(var)
    return diff, diff - half, diff + half


def _mean_var(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
