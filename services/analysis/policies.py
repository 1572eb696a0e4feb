"""Target policies for off-policy evaluation, as (contexts x actions) probability matrices.

A policy is built against a dataset's vocabularies: `probs[x, a]` is the probability the target
policy gives logged action `a` in context `x`, and `unlogged[x]` the probability it gives
actions that never appear in the log at all (they count as unsupported mass).

Policy specs on the command line:
- `uniform`                       uniform over every creative in the log
- `creative:<creative_id>`        always that creative
- `greedy` / `greedy:<state.json>` argmax posterior mean of a bandit state
  (`{segment: {creative_id: {"alpha": a, "beta": b}}}`, or read from admuse.stats)
- `file:<policy.json|yaml>`       a per-context distribution
  (`{"contexts": {segment: {creative_id: prob}}}`; the segment `*` is the default)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from services.analysis.dataset import LoggedData

__all__ = [
    "BanditState",
    "PolicyError",
    "PolicySpec",
    "TargetPolicy",
    "check_size",
    "fixed",
    "from_distribution",
    "greedy",
    "load_bandit_state",
    "load_distribution",
    "parse_policy_spec",
    "uniform",
]

DEFAULT_CONTEXT = "*"
MAX_CELLS = 20_000_000  # contexts x creatives: a dense float64 matrix of 160 MB
# {segment: {creative_id: (alpha, beta)}}
BanditState = Mapping[str, Mapping[str, tuple[float, float]]]


class PolicyError(ValueError):
    """A policy spec or file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class TargetPolicy:
    name: str
    probs: np.ndarray  # (n_contexts, n_actions) float64
    unlogged: np.ndarray  # (n_contexts,) float64

    def row_probs(self, data: LoggedData) -> np.ndarray:
        """pi(logged action | context) per row."""
        return self.probs[data.context, data.action]


@dataclass(frozen=True)
class PolicySpec:
    kind: str  # uniform | creative | greedy | file
    arg: str | None = None


def parse_policy_spec(spec: str) -> PolicySpec:
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "uniform" and not arg:
        return PolicySpec("uniform")
    if kind == "greedy":
        return PolicySpec("greedy", arg or None)
    if kind in ("creative", "file") and arg:
        return PolicySpec(kind, arg)
    raise PolicyError(
        f"unknown policy {spec!r}; use uniform, creative:<id>, greedy, greedy:<state.json> "
        "or file:<policy.json>"
    )


def check_size(data: LoggedData) -> None:
    """Policies are dense (contexts x creatives) matrices: refuse absurd sizes up front."""
    cells = data.n_contexts * data.n_actions
    if cells > MAX_CELLS:
        raise PolicyError(
            f"the log has {data.n_contexts:,} contexts x {data.n_actions:,} creatives = "
            f"{cells:,} cells (limit {MAX_CELLS:,}); OPE here is per segment — map fewer or "
            "coarser context columns (an id is not a segment)"
        )


def uniform(data: LoggedData) -> TargetPolicy:
    check_size(data)
    a = max(data.n_actions, 1)
    return TargetPolicy(
        "uniform", np.full((data.n_contexts, data.n_actions), 1.0 / a), np.zeros(data.n_contexts)
    )


def fixed(data: LoggedData, creative_id: str) -> TargetPolicy:
    check_size(data)
    probs = np.zeros((data.n_contexts, data.n_actions))
    unlogged = np.zeros(data.n_contexts)
    if creative_id in data.actions:
        probs[:, data.actions.index(creative_id)] = 1.0
    else:
        unlogged[:] = 1.0
    return TargetPolicy(f"creative:{creative_id}", probs, unlogged)


def greedy(data: LoggedData, state: BanditState, name: str = "greedy") -> TargetPolicy:
    """Argmax posterior mean alpha / (alpha + beta) per segment; ties share the mass.

    A segment the state does not know uses the state's `*` entry if any, else the creatives'
    posteriors pooled over all segments (alpha and beta summed).
    """
    if not state:
        raise PolicyError("the bandit state is empty: no segment has any creative")
    pooled: dict[str, list[float]] = {}
    for creatives in state.values():
        for cid, (a, b) in creatives.items():
            acc = pooled.setdefault(cid, [0.0, 0.0])
            acc[0] += a
            acc[1] += b
    fallback = state.get(DEFAULT_CONTEXT) or {k: (v[0], v[1]) for k, v in pooled.items()}
    dist: dict[str, dict[str, float]] = {}
    for ctx in data.contexts:
        creatives = state.get(ctx) or fallback
        means = {cid: a / (a + b) for cid, (a, b) in creatives.items() if a + b > 0}
        if not means:
            raise PolicyError(f"bandit state for segment {ctx!r} has no usable posterior")
        best = max(means.values())
        winners = [cid for cid, m in means.items() if m >= best - 1e-12]
        dist[ctx] = {cid: 1.0 / len(winners) for cid in winners}
    return _matrix(data, dist, name)


def from_distribution(
    data: LoggedData, distribution: Mapping[str, Mapping[str, float]], name: str = "file"
) -> TargetPolicy:
    """A policy from {context: {creative_id: probability}}; `*` is the default context."""
    for ctx, probs in distribution.items():
        values = np.array(list(probs.values()), dtype=np.float64)
        if values.size == 0 or (values < 0).any() or not np.isfinite(values).all():
            raise PolicyError(
                f"policy for context {ctx!r} must map creatives to probabilities >= 0"
            )
        if abs(values.sum() - 1.0) > 1e-6:
            raise PolicyError(
                f"policy for context {ctx!r} sums to {values.sum():.6g}, not 1; fix the file"
            )
    missing = [c for c in data.contexts if c not in distribution]
    if missing and DEFAULT_CONTEXT not in distribution:
        raise PolicyError(
            f"policy has no distribution for {len(missing)} logged context(s), e.g. "
            f"{missing[:3]}; add them or a default entry '*'"
        )
    dist = {c: distribution.get(c) or distribution[DEFAULT_CONTEXT] for c in data.contexts}
    return _matrix(data, dist, name)


def load_distribution(path: str | Path) -> dict[str, dict[str, float]]:
    """Read `{"contexts": {segment: {creative_id: prob}}}` (JSON or YAML)."""
    raw = _load(path)
    contexts = raw.get("contexts", raw) if isinstance(raw, dict) else None
    if not isinstance(contexts, dict) or not all(isinstance(v, dict) for v in contexts.values()):
        raise PolicyError(
            f"{path}: expected {{'contexts': {{segment: {{creative_id: probability}}}}}}"
        )
    try:
        return {str(c): {str(k): float(v) for k, v in d.items()} for c, d in contexts.items()}
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{path}: probabilities must be numbers ({exc})") from None


def load_bandit_state(path: str | Path) -> dict[str, dict[str, tuple[float, float]]]:
    """Read `{segment: {creative_id: {"alpha": a, "beta": b}}}` (JSON or YAML)."""
    raw = _load(path)
    try:
        return {
            str(seg): {str(cid): (float(p["alpha"]), float(p["beta"])) for cid, p in cre.items()}
            for seg, cre in raw.items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise PolicyError(
            f"{path}: expected {{segment: {{creative_id: {{'alpha': a, 'beta': b}}}}}} ({exc!r})"
        ) from None


def _load(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {p}: {exc.strerror}") from None
    try:
        return json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"{p} is not valid JSON/YAML: {exc}") from None


def _matrix(data: LoggedData, dist: Mapping[str, Mapping[str, float]], name: str) -> TargetPolicy:
    check_size(data)
    index = {a: i for i, a in enumerate(data.actions)}
    probs = np.zeros((data.n_contexts, data.n_actions))
    unlogged = np.zeros(data.n_contexts)
    for x, ctx in enumerate(data.contexts):
        for cid, p in dist[ctx].items():
            if cid in index:
                probs[x, index[cid]] += p
            else:
                unlogged[x] += p
    return TargetPolicy(name, probs, unlogged)
