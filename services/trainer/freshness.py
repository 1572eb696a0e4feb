"""Does the published model still describe the rewards? Its log-loss on the rewards that arrived
since it was trained (prequential: data it never saw), against its own held-out log-loss.

The service keeps its last built model per campaign, scores the rewards that arrived since
(`TrainerState.since_trained`) every few seconds off the event loop, and marks the campaign
stale (`TrainerState.mark_stale`) when the error grew by more than `retrain_loss_increase`
beyond two standard errors of the new rewards' mean loss (noise alone is no reason to retrain).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from services.common.creative_space import EncodingError
from services.trainer.buffer import RewardRow
from services.trainer.pipeline import BuiltModel, build_dataset
from services.trainer.quality import log_loss
from services.trainer.train import TrainingError

__all__ = ["prequential_logloss"]

MIN_ROWS = 200


def prequential_logloss(
    built: BuiltModel,
    campaign: Mapping[str, Any],
    creatives: Mapping[str, Mapping[str, Any]],
    rows: Sequence[RewardRow],
) -> tuple[float, float] | None:
    """Log-loss of `built`'s reward model on `rows` and its standard error (None: too few
    usable rows to say)."""
    if built.reward_model is None or len(rows) < MIN_ROWS:
        return None
    try:
        data, _ = build_dataset(campaign, creatives, rows)
    except (EncodingError, TrainingError, KeyError, ValueError):
        return None
    known = {name: i for i, name in enumerate(built.metadata.get("segments", []))}
    seg_idx = np.array([known.get(data.segments[s], -1) for s in data.segment], dtype=np.int64)
    keep = seg_idx >= 0
    if keep.sum() < MIN_ROWS or data.x.shape[1] != built.metadata.get("creative_dim"):
        return None
    onehot = np.zeros((int(keep.sum()), len(known)), np.float32)
    onehot[np.arange(len(onehot)), seg_idx[keep]] = 1.0
    with torch.no_grad():
        p = built.reward_model(torch.from_numpy(onehot), torch.from_numpy(data.x[keep]))
    y = data.label[keep].astype(np.float64)
    q = np.clip(p.squeeze(1).numpy().astype(np.float64), 1e-7, 1 - 1e-7)
    losses = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    return log_loss(y, q), float(losses.std(ddof=1) / np.sqrt(len(losses)))
