"""Quality of a trained model, in plain numpy (works on ONNX outputs, no torch).

- fidelity per segment: generated vs rewarded (inverse-propensity weighted) creatives,
  1 − KS for numeric/color columns and 1 − total variation for categorical blocks, averaged;
- detection AUC: a logistic classifier telling real from generated (0.5 is ideal);
- diversity: share of distinct creatives among those generated;
- condition fidelity: a segment classifier fitted on real rewarded creatives, applied to
  creatives generated for a segment (accuracy; `condition_fidelity_real` is the same
  classifier on real held-out rows, `1 / n_segments` is chance);
- mean predicted reward of generated vs catalog creatives.

`QualityGate.check` turns the report into a verdict: a model is published (and served) only
when its reward model beats the simple baselines on held-out rows — AUC above 0.5 by a
margin, log-loss below the base-rate model's, calibration error bounded — and its generator
conditions on the segment better than chance (where the rewarded creatives themselves tell
the segments apart better than chance; before that no generator could).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from services.common.creative_space import CreativeSpace

__all__ = [
    "QualityGate",
    "auc",
    "detection_auc",
    "diversity",
    "expected_calibration_error",
    "fidelity",
    "log_loss",
    "quality_report",
]

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (segment one-hot, creative) -> p


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Σ_bins (n_b / n) · |mean(y_b) − mean(p_b)| over equal-width probability bins."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            err += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(err)


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by ranks (ties get their average rank); 0.5 when a class is missing."""
    y, score = np.asarray(y) > 0.5, np.asarray(score, np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_s = score[order]
    i = 0
    while i < len(sorted_s):
        j = i
        while j + 1 < len(sorted_s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _weighted_ks(a: np.ndarray, wa: np.ndarray, b: np.ndarray) -> float:
    grid = np.union1d(a, b)
    order = np.argsort(a)
    cdf_a = np.cumsum(wa[order]) / wa.sum()
    fa = np.concatenate([[0.0], cdf_a])[np.searchsorted(a[order], grid, side="right")]
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def fidelity(
    space: CreativeSpace, real: np.ndarray, weight: np.ndarray, generated: np.ndarray
) -> float:
    """Mean over blocks of 1 − KS (numeric, color and circular columns) or 1 − TV
    (categorical blocks: attributes and each step field of a sequence)."""
    scores = []
    for kind, off, width in space.blocks():
        r = real[:, off : off + width]
        g = generated[:, off : off + width]
        if kind == "categorical":
            pr = (r * weight[:, None]).sum(0) / weight.sum()
            pg = np.bincount(g.argmax(1), minlength=width) / len(g)
            scores.append(1.0 - 0.5 * float(np.abs(pr - pg).sum()))
        else:
            scores.extend(1.0 - _weighted_ks(r[:, k], weight, g[:, k]) for k in range(width))
    return float(np.mean(scores))


def diversity(space: CreativeSpace, generated: np.ndarray) -> float:
    """Share of distinct creatives: categorical values (and sequence steps), numerics and
    circular columns at 1 % of their range, colors at their 8-bit value."""
    if len(generated) == 0:
        return 0.0
    keys = []
    for kind, off, width in space.blocks():
        block = generated[:, off : off + width]
        if kind == "categorical":
            keys.append(block.argmax(1)[:, None])
        elif kind in ("numeric", "circular"):
            keys.append(np.rint(100 * np.clip(block, 0, 1)).astype(int))
        else:
            keys.append(np.rint(255 * np.clip(block, 0, 1)).astype(int))
    return len(np.unique(np.hstack(keys), axis=0)) / len(generated)


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, classes: int, iters: int = 300, lr: float = 0.5
) -> np.ndarray:
    """Multinomial logistic regression by full-batch gradient descent; returns weights."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros((xb.shape[1], classes))
    onehot = np.eye(classes)[y]
    for _ in range(iters):
        z = xb @ w
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        w -= lr * (xb.T @ (p - onehot) / len(x) + 1e-3 * w)
    return w


def _predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    z = np.hstack([x, np.ones((len(x), 1))]) @ w
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def _features(x: np.ndarray) -> np.ndarray:
    # Squares let a linear detector see spread as well as location.
    return np.hstack([x, x * x])


def detection_auc(real: np.ndarray, generated: np.ndarray, seed: int = 0) -> float:
    """Held-out AUC of a logistic classifier for real (1) vs generated (0); 0.5 is ideal."""
    n = min(len(real), len(generated))
    if n < 10:
        return 0.5
    rng = np.random.default_rng(seed)
    x = np.vstack([real[rng.permutation(len(real))[:n]], generated[:n]])
    y = np.concatenate([np.ones(n, int), np.zeros(n, int)])
    order = rng.permutation(2 * n)
    fit, hold = order[:n], order[n:]
    feats = _features(x)
    w = _fit_logistic(feats[fit], y[fit], 2)
    return auc(y[hold], _predict(w, feats[hold])[:, 1])


def quality_report(
    space: CreativeSpace,
    segments: list[str],
    real: np.ndarray,
    real_segment: np.ndarray,
    real_weight: np.ndarray,
    generate: Callable[[int, int], np.ndarray],
    scorer: Scorer,
    catalog: np.ndarray,
    per_segment: int = 400,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric above. `generate(segment_index, n)` returns n encoded creatives;
    `real*` are the rewarded rows with weight reward / propensity."""
    rng = np.random.default_rng(seed)
    n_seg = len(segments)
    out: dict[str, float] = {}
    fids, gen_all, gen_seg, real_draw, real_draw_seg = [], [], [], [], []
    pred_gen, pred_cat = [], []
    for s in range(n_seg):
        g = generate(s, per_segment)
        gen_all.append(g)
        gen_seg.append(np.full(len(g), s))
        onehot = np.zeros((len(g), n_seg), np.float32)
        onehot[:, s] = 1.0
        pred_gen.append(float(scorer(onehot, g).mean()))
        if len(catalog):
            cat_hot = np.zeros((len(catalog), n_seg), np.float32)
            cat_hot[:, s] = 1.0
            pred_cat.append(float(scorer(cat_hot, catalog).mean()))
        m = real_segment == s
        if m.sum() >= 5:
            fids.append(fidelity(space, real[m], real_weight[m], g))
            p = real_weight[m] / real_weight[m].sum()
            pick = rng.choice(np.flatnonzero(m), size=per_segment, p=p)
            real_draw.append(real[pick])
            real_draw_seg.append(np.full(per_segment, s))
    generated = np.vstack(gen_all)
    out["fidelity_mean"] = float(np.mean(fids)) if fids else 0.0
    out["fidelity_min"] = float(np.min(fids)) if fids else 0.0
    out["diversity"] = diversity(space, generated)
    out["predicted_reward_generated"] = float(np.mean(pred_gen))
    if pred_cat:
        out["predicted_reward_catalog"] = float(np.mean(pred_cat))
    if real_draw:
        reals = np.vstack(real_draw)
        out["detection_auc"] = detection_auc(reals, generated, seed)
        if n_seg > 1:
            rs = np.concatenate(real_draw_seg)
            order = rng.permutation(len(reals))
            half = len(order) // 2
            w = _fit_logistic(_features(reals[order[:half]]), rs[order[:half]], n_seg)
            hold = order[half:]
            out["condition_fidelity_real"] = float(
                (_predict(w, _features(reals[hold])).argmax(1) == rs[hold]).mean()
            )
            out["condition_fidelity"] = float(
                (_predict(w, _features(generated)).argmax(1) == np.concatenate(gen_seg)).mean()
            )
    return out


@dataclass(frozen=True)
class QualityGate:
    """Thresholds a model must meet on held-out data to be published (trainer settings)."""

    min_auc_margin: float = 0.02  # reward_auc > 0.5 + margin
    max_logloss_ratio: float = 1.0  # reward_logloss < ratio × base-rate model's log-loss
    max_ece: float = 0.1  # expected calibration error on the held-out rows
    min_condition_margin: float = 0.0  # condition_fidelity > 1 / segments + margin

    def check(self, metrics: Mapping[str, float], n_segments: int) -> list[str]:
        """Why the model fails the gate ([] when it passes); one sentence per failed check."""
        reasons = []
        auc_ = metrics.get("reward_auc", 0.5)
        if not auc_ > 0.5 + self.min_auc_margin:
            reasons.append(
                f"reward_auc {auc_:.4f} is not above 0.5 + {self.min_auc_margin} "
                "(the reward model ranks no better than chance)"
            )
        ll, base = metrics.get("reward_logloss"), metrics.get("reward_base_logloss")
        if ll is None or base is None or not ll < base * self.max_logloss_ratio:
            reasons.append(
                f"reward_logloss {ll} is not below {self.max_logloss_ratio} × the base-rate "
                f"model's {base}"
            )
        ece = metrics.get("reward_ece", 1.0)
        if not ece <= self.max_ece:
            reasons.append(f"reward_ece {ece:.4f} is above {self.max_ece}")
        if n_segments > 1 and "condition_fidelity" in metrics:
            chance = 1.0 / n_segments
            cf = metrics["condition_fidelity"]
            real = metrics.get("condition_fidelity_real")
            # when the rewarded creatives themselves do not tell the segments apart (early on,
            # one catalog served everywhere), no generator can: nothing to hold it to yet
            signal = real is None or real > chance + self.min_condition_margin
            if signal and not cf > chance + self.min_condition_margin:
                reasons.append(
                    f"condition_fidelity {cf:.4f} is not above chance {chance:.4f} + "
                    f"{self.min_condition_margin} (the generator ignores the segment)"
                )
        return reasons

    def verdict(self, metrics: Mapping[str, float], n_segments: int) -> dict[str, Any]:
        """The `quality` entry of metadata.json: passed, reasons, thresholds."""
        reasons = self.check(metrics, n_segments)
        return {"passed": not reasons, "reasons": reasons, "thresholds": asdict(self)}
