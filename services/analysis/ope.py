"""Off-policy evaluation: the value of a target policy from logged decisions with propensities.

With w_i = pi(a_i | x_i) / mu_i (mu_i the logged propensity) and a reward model q(x, a):

- IPS    V = mean(w_i r_i)
- SNIPS  V = sum(w_i r_i) / sum(w_i)
- DM     V = mean_i sum_a pi(a | x_i) q(x_i, a)          (q fit on all rows)
- DR     V = mean_i [sum_a pi(a | x_i) q_k(i)(x_i, a) + w_i (r_i - q_k(i)(x_i, a_i))]
         with q_k(i) fit on the folds that do not hold row i (cross-fitting)

q is tabular: per (context, action) mean reward, shrunk toward the action's mean (and that toward
the global mean) with `smoothing` pseudo-rows. Target mass on actions with no logged row in a
context is predicted by that shrinkage (that is DM's extrapolation, and why thin support refuses).

Intervals are analytic (CLT on each estimator's per-row influence values): IPS and DR on their
per-row terms; SNIPS by the delta method, w_i (r_i - V) / mean(w); DM on the influence function
of the tabular plug-in estimator, which equals the DR terms with empirical propensities
n(x, a) / n(x) — so DM's interval accounts for the reward model's own estimation error.

Everything is vectorized (bincount and fancy indexing): no Python loop over rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from services.analysis.compare import jsonable
from services.analysis.dataset import LoggedData
from services.analysis.policies import TargetPolicy
from services.analysis.stats import normal_interval

__all__ = ["ESTIMATORS", "Estimate", "OpeResult", "Support", "SupportThresholds", "evaluate"]

ESTIMATORS = ("DM", "IPS", "SNIPS", "DR")


@dataclass(frozen=True)
class Estimate:
    name: str
    value: float
    se: float
    low: float
    high: float


@dataclass(frozen=True)
class Support:
    """How well the log supports the target policy.

    ess: effective sample size (sum w)^2 / sum w^2; ess_share = ess / n.
    unsupported_mass: average target probability on actions never logged in the row's context.
    max_weight: largest importance weight pi / mu.
    """

    n: int
    ess: float
    ess_share: float
    unsupported_mass: float
    max_weight: float
    mean_weight: float


@dataclass(frozen=True)
class SupportThresholds:
    """When to refuse: too few effective rows, or too much mass where the log is blind."""

    min_ess: float = 100.0
    max_unsupported_mass: float = 0.01


@dataclass(frozen=True)
class OpeResult:
    policy: str
    n: int
    logged_value: Estimate
    support: Support
    estimates: dict[str, Estimate] = field(default_factory=dict)
    refused: bool = False
    reasons: tuple[str, ...] = ()
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def evaluate(
    data: LoggedData,
    policy: TargetPolicy,
    *,
    folds: int = 5,
    smoothing: float = 1.0,
    seed: int = 0,
    confidence: float = 0.95,
    thresholds: SupportThresholds | None = None,
    force: bool = False,
) -> OpeResult:
    """Estimate the target policy's value with DM, IPS, SNIPS and DR.

    Refuses (estimates empty, `reasons` filled) when support is too thin, unless `force`: then
    the estimates are reported and the reasons stay as warnings.
    """
    thresholds = thresholds or SupportThresholds()
    n = data.n
    logged = _mean_estimate("logged", data.reward, confidence)
    if n == 0:
        empty = Support(0, 0.0, 0.0, 1.0, float("nan"), float("nan"))
        return OpeResult(
            policy.name,
            0,
            logged,
            empty,
            refused=True,
            reasons=("no logged rows to evaluate",),
            confidence=confidence,
        )
    if policy.probs.shape != (data.n_contexts, data.n_actions):
        raise ValueError("policy was built for another dataset (vocabulary sizes differ)")

    n_x, n_a = data.n_contexts, data.n_actions
    cell = data.context.astype(np.int64) * n_a + data.action
    counts = np.bincount(cell, minlength=n_x * n_a).reshape(n_x, n_a).astype(np.float64)
    sums = np.bincount(cell, weights=data.reward, minlength=n_x * n_a).reshape(n_x, n_a)

    pi_rows = policy.row_probs(data)
    w = pi_rows / data.propensity
    support = _support(data, policy, counts, w)
    reasons = _refusal_reasons(support, thresholds)
    if reasons and not force:
        return OpeResult(
            policy.name, n, logged, support, refused=True, reasons=reasons, confidence=confidence
        )

    r = data.reward
    wr = w * r
    estimates: dict[str, Estimate] = {"IPS": _mean_estimate("IPS", wr, confidence)}

    w_mean = w.mean()
    snips = wr.sum() / w.sum() if w.sum() > 0 else float("nan")
    psi = w * (r - snips) / w_mean if w_mean > 0 else np.full(n, np.nan)
    estimates["SNIPS"] = _centred_estimate("SNIPS", snips, psi, confidence)

    # DM: full-data model; interval from the plug-in's influence function.
    q = _reward_model(counts, sums, smoothing)
    fallback = _global_mean(counts, sums)
    dm_per_context = (policy.probs * q).sum(axis=1) + policy.unlogged * fallback
    dm_rows = dm_per_context[data.context]
    emp_prop = counts[data.context, data.action] / counts.sum(axis=1)[data.context]
    dm_psi = dm_rows + pi_rows / emp_prop * (r - q[data.context, data.action])
    estimates["DM"] = _centred_estimate(
        "DM", float(dm_rows.mean()), dm_psi - dm_psi.mean(), confidence
    )

    # DR: cross-fitted model.
    dr_rows = _dr_terms(data, policy, w, folds, smoothing, seed)
    estimates["DR"] = _mean_estimate("DR", dr_rows, confidence)

    ordered = {k: estimates[k] for k in ESTIMATORS}
    return OpeResult(
        policy.name,
        n,
        logged,
        support,
        ordered,
        refused=False,
        reasons=reasons,
        confidence=confidence,
    )


def _dr_terms(
    data: LoggedData, policy: TargetPolicy, w: np.ndarray, folds: int, smoothing: float, seed: int
) -> np.ndarray:
    n, n_x, n_a = data.n, data.n_contexts, data.n_actions
    k = max(2, min(folds, n))
    fold = np.random.default_rng(seed).integers(0, k, size=n)
    cell = data.context.astype(np.int64) * n_a + data.action
    size = n_x * n_a
    fold_cell = fold * size + cell
    f_counts = np.bincount(fold_cell, minlength=k * size).reshape(k, n_x, n_a).astype(np.float64)
    f_sums = np.bincount(fold_cell, weights=data.reward, minlength=k * size).reshape(k, n_x, n_a)
    train_counts = f_counts.sum(axis=0, keepdims=True) - f_counts
    train_sums = f_sums.sum(axis=0, keepdims=True) - f_sums
    q = np.stack([_reward_model(train_counts[j], train_sums[j], smoothing) for j in range(k)])
    fallback = np.array([_global_mean(train_counts[j], train_sums[j]) for j in range(k)])
    # v[j, x] = sum_a pi(a|x) q_j(x, a) + unlogged(x) * fallback_j
    v = (q * policy.probs[None]).sum(axis=2) + policy.unlogged[None] * fallback[:, None]
    q_logged = q[fold, data.context, data.action]
    return v[fold, data.context] + w * (data.reward - q_logged)


def _reward_model(counts: np.ndarray, sums: np.ndarray, smoothing: float) -> np.ndarray:
    """q(x, a) shrunk toward the action mean, which is shrunk toward the global mean."""
    glob = _global_mean(counts, sums)
    a_counts, a_sums = counts.sum(axis=0), sums.sum(axis=0)
    action_mean = _ratio(a_sums + smoothing * glob, a_counts + smoothing, glob)
    return _ratio(sums + smoothing * action_mean[None, :], counts + smoothing, action_mean[None, :])


def _ratio(num: np.ndarray, den: np.ndarray, empty: np.ndarray | float) -> np.ndarray:
    """num / den, and `empty` where den == 0 (only with smoothing 0: a cell with no rows)."""
    out = np.broadcast_to(np.asarray(empty, dtype=np.float64), np.shape(num)).copy()
    np.divide(num, den, out=out, where=den > 0)
    return out


def _global_mean(counts: np.ndarray, sums: np.ndarray) -> float:
    total = counts.sum()
    return float(sums.sum() / total) if total > 0 else 0.0


def _support(data: LoggedData, policy: TargetPolicy, counts: np.ndarray, w: np.ndarray) -> Support:
    blind = (policy.probs * (counts == 0)).sum(axis=1) + policy.unlogged  # per context
    unsupported = float(blind[data.context].mean())
    sw, sw2 = float(w.sum()), float((w * w).sum())
    ess = sw * sw / sw2 if sw2 > 0 else 0.0
    return Support(
        n=data.n,
        ess=ess,
        ess_share=ess / data.n,
        unsupported_mass=unsupported,
        max_weight=float(w.max()),
        mean_weight=float(w.mean()),
    )


def _refusal_reasons(support: Support, t: SupportThresholds) -> tuple[str, ...]:
    reasons = []
    if support.unsupported_mass > t.max_unsupported_mass:
        reasons.append(
            f"{support.unsupported_mass:.1%} of the target policy's probability is on creatives "
            f"never logged in that context (limit {t.max_unsupported_mass:.1%}): the log cannot "
            "say what they would earn"
        )
    if support.ess < t.min_ess:
        reasons.append(
            f"effective sample size {support.ess:.1f} is below {t.min_ess:g}: the target policy "
            "agrees with the logging policy on too few rows"
        )
    return tuple(reasons)


def _mean_estimate(name: str, values: np.ndarray, confidence: float) -> Estimate:
    n = values.shape[0]
    if n == 0:
        return Estimate(name, float("nan"), float("nan"), float("nan"), float("nan"))
    mean = float(values.mean())
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    low, high = normal_interval(mean, se, confidence)
    return Estimate(name, mean, se, low, high)


def _centred_estimate(name: str, value: float, psi: np.ndarray, confidence: float) -> Estimate:
    n = psi.shape[0]
    se = float(np.sqrt((psi * psi).sum() / (n - 1)) / np.sqrt(n)) if n > 1 else float("nan")
    low, high = normal_interval(value, se, confidence)
    return Estimate(name, float(value), se, low, high)
