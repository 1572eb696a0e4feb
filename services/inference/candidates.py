"""New creatives from a model version: generate, gate, score, keep the best few (DESIGN.md §1).

Prior. An admitted creative enters the bandit with a Beta prior centred on the reward model's
prediction ``p`` and worth ``prior_strength`` impressions (default 20):
``alpha = prior_strength · p``, ``beta = prior_strength · (1 − p)``, with ``p`` clipped to
[0.001, 0.999]. Twenty pseudo-impressions are modest next to the hundreds a live creative
collects, so real rewards outweigh the model within minutes, yet a creative the model rates
poorly starts with a low mean instead of the optimistic uniform prior.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from services.inference.admission import admit, attributes_of, distance, distance_matrix
from services.inference.models import ModelBundle
from services.inference.neighbours import neighbours
from services.inference.searches import search_of

__all__ = ["DEFAULT_PRIOR_STRENGTH", "prior_from_prediction", "propose"]

DEFAULT_PRIOR_STRENGTH = 20.0


def prior_from_prediction(
    predicted_reward: float, strength: float = DEFAULT_PRIOR_STRENGTH
) -> tuple[float, float]:
    """Beta(alpha, beta) with mean ``predicted_reward`` worth ``strength`` pseudo-impressions."""
    p = float(np.clip(predicted_reward, 0.001, 0.999)) if np.isfinite(predicted_reward) else 0.5
    return strength * p, strength * (1.0 - p)


def propose(
    bundle: ModelBundle,
    campaign: Mapping[str, Any],
    segment: str,
    live: Sequence[Mapping[str, Any]],
    *,
    n_generate: int,
    n_admit: int,
    rng: np.random.Generator,
    min_distance: float = 0.05,
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
    anchors: Sequence[Mapping[str, Any]] = (),
    n_neighbours: int = 0,
    trust_radius: float = 0.0,
    searches: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Up to ``n_admit`` new creatives for ``segment``, best predicted reward first.

    Generates ``n_generate`` candidates, and ``n_neighbours`` more around ``anchors`` (the
    segment's proven creatives, incumbent first: `neighbours`), keeps those the admission gate
    accepts against ``campaign`` and the ``live`` creatives (attribute maps or Creative
    records), scores them with the reward model, and keeps the best that are not
    near-duplicates of one another. With ``trust_radius`` > 0 they are ranked by the score
    times ``exp(-d / trust_radius)``, ``d`` the distance (`admission.distance`, 0..1) to the
    nearest anchor: a generator trained to raise the model's score finds where the model is
    wrong, far from the data it was fit on (on the demo scenario its picks clicked at a fifth
    to a half of their prediction; one or two attributes from a proven creative, the model
    errs less). ``predicted_reward`` stays the model's own number.
    With ``searches`` (`searches.pick`: the search each slot goes to), slot ``i`` takes the
    best-ranked candidate of search ``searches[i]`` (local: within two attributes of an
    anchor; global: further), or the best left of the other when that one has none.
    Each result is ``{"attributes", "predicted_reward", "prior_alpha", "prior_beta"}``.
    """
    if n_admit <= 0 or n_generate <= 0:
        return []
    space = {a["name"]: a for a in campaign.get("attributes", [])}
    drawn = bundle.generate(segment, n_generate, rng)
    drawn += neighbours(bundle.encoding, [attributes_of(a) for a in anchors], n_neighbours, rng)
    # The gate, with the near-duplicate check vectorized over all candidates x live creatives.
    admitted = [c for c in drawn if admit(c, campaign, []).admitted]
    if admitted and live:
        nearest = distance_matrix(admitted, [attributes_of(c) for c in live], space).min(axis=1)
        admitted = [c for c, d in zip(admitted, nearest, strict=True) if d >= min_distance]
    if not admitted:
        return []
    scores = bundle.score(segment, admitted)
    rank = scores
    if trust_radius > 0 and anchors:
        # the model's word counts for less the further a candidate lies from what was served
        near = distance_matrix(admitted, [attributes_of(a) for a in anchors], space).min(axis=1)
        rank = scores * np.exp(-near / trust_radius)
    wanted: list[str | None] = [None] * n_admit
    if searches is not None:
        wanted = list(searches)[:n_admit]
    need = Counter(wanted)
    picked: list[int] = []
    spare: list[int] = []

    def fresh(i: int) -> bool:  # not a near-duplicate of one already picked
        return all(distance(admitted[i], admitted[j], space) >= min_distance for j in picked)

    for i in (int(i) for i in np.argsort(-rank, kind="stable")):
        if len(picked) >= len(wanted):
            break
        if not fresh(i):
            continue
        kind = search_of(admitted[i], anchors, space) if searches is not None else None
        if need[kind] > 0:
            need[kind] -= 1
            picked.append(i)
        else:
            spare.append(i)
    for i in spare:  # a search with too few candidates: its slots go to the best of the rest
        if len(picked) >= len(wanted):
            break
        if fresh(i):
            picked.append(i)
    chosen: list[dict[str, Any]] = []
    for i in sorted(picked, key=lambda j: -rank[j]):
        alpha, beta = prior_from_prediction(float(scores[i]), prior_strength)
        chosen.append(
            {
                "attributes": admitted[i],
                "predicted_reward": float(scores[i]),
                "prior_alpha": alpha,
                "prior_beta": beta,
            }
        )
    return chosen
