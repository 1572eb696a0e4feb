"""A synthetic campaign with a known reward function, for tests and benchmarks.

The click-through rate depends on attribute × segment interactions (headline and layout
preferences differ by country and device, font scale helps on mobile and hurts on desktop),
and rewards are logged under uniform exploration over a catalog, with propensity 1/|catalog|.
The ground truth is only used to score what the trainer learns, never by the trainer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.common.campaign import catalog_creative
from services.common.segment import segment_of

__all__ = ["SyntheticTruth", "synthetic_campaign", "synthetic_catalog", "synthetic_rewards"]

_COUNTRIES = ("DE", "US")
_DEVICES = ("mobile", "desktop")
_HEADLINES = ("Spring sale", "New arrivals", "Free shipping", "Last chance")
_LAYOUTS = ("hero", "split", "grid")
_CTAS = ("Buy now", "Shop", "Learn more")


def synthetic_campaign(
    campaign_id: str = "spring", updated_at_ms: int = 1_795_000_000_000
) -> dict[str, Any]:
    """A Campaign record (schemas/Campaign.v1.avsc)."""
    return {
        "campaign_id": campaign_id,
        "name": "Synthetic spring campaign",
        "revision": 1,
        "attributes": [
            {
                "name": "layout",
                "kind": "categorical",
                "values": list(_LAYOUTS),
                "min": None,
                "max": None,
            },
            {
                "name": "headline",
                "kind": "categorical",
                "values": list(_HEADLINES),
                "min": None,
                "max": None,
            },
            {"name": "cta", "kind": "categorical", "values": list(_CTAS), "min": None, "max": None},
            {"name": "font_scale", "kind": "numeric", "values": [], "min": 0.8, "max": 1.6},
            {"name": "background", "kind": "color", "values": [], "min": None, "max": None},
        ],
        "segment_keys": ["country", "device"],
        "reward": {
            "kind": "click",
            "click_weight": 1.0,
            "conversion_weight": 0.0,
            "value_weight": 0.0,
            "sentiment_weight": 0.0,
        },
        "attribution_window_ms": 60_000,
        "holdout_share": 0.1,
        "forbidden": [],
        "min_contrast": 4.5,
        "allow_retire_catalog": False,
        "max_generated": 4,
        "updated_at": updated_at_ms,
    }


@dataclass(frozen=True)
class SyntheticTruth:
    """CTR(segment, creative) = sigmoid(bias + headline[country] + layout[device] + font term)."""

    seed: int = 0
    bias: float = -1.8

    def contexts(self) -> list[dict[str, str]]:
        return [{"country": c, "device": d} for c in _COUNTRIES for d in _DEVICES]

    def segments(self) -> list[str]:
        return [segment_of(["country", "device"], c) for c in self.contexts()]

    def ctr(self, segment: str, attributes: dict[str, Any]) -> float:
        rng = np.random.default_rng(self.seed)
        headline = rng.normal(0, 1.5, (len(_COUNTRIES), len(_HEADLINES)))
        layout = rng.normal(0, 1.0, (len(_DEVICES), len(_LAYOUTS)))
        parts = dict(p.split("=", 1) for p in segment.split("|"))
        c, d = _COUNTRIES.index(parts["country"]), _DEVICES.index(parts["device"])
        font = (float(attributes["font_scale"]) - 1.2) / 0.4  # in [-1, 1]
        z = (
            self.bias
            + headline[c, _HEADLINES.index(attributes["headline"])]
            + layout[d, _LAYOUTS.index(attributes["layout"])]
            + (1.0 if d == 0 else -1.0) * font
        )
        return float(1.0 / (1.0 + np.exp(-z)))


def synthetic_catalog(
    campaign_id: str = "spring", n: int = 16, seed: int = 1, created_at_ms: int = 1_795_000_000_000
) -> list[dict[str, Any]]:
    """`n` Creative records (origin catalog) with random attribute values."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        attrs = {
            "layout": str(rng.choice(_LAYOUTS)),
            "headline": str(rng.choice(_HEADLINES)),
            "cta": str(rng.choice(_CTAS)),
            "font_scale": float(np.round(rng.uniform(0.8, 1.6), 2)),
            "background": "#" + "".join(f"{v:02x}" for v in rng.integers(0, 256, 3)),
        }
        out.append(
            catalog_creative(
                f"{campaign_id}-cat-{i:02d}", campaign_id, f"catalog {i}", attrs, created_at_ms
            )
        )
    return out


def synthetic_rewards(
    catalog: list[dict[str, Any]],
    n: int,
    truth: SyntheticTruth | None = None,
    seed: int = 2,
    start_ms: int = 1_795_000_000_000,
    step_ms: int = 1000,
) -> list[dict[str, Any]]:
    """`n` Reward records under uniform exploration over `catalog` (propensity 1/|catalog|)."""
    truth = truth or SyntheticTruth()
    rng = np.random.default_rng(seed)
    contexts = truth.contexts()
    segments = truth.segments()
    ctr = np.array([[truth.ctr(s, c["attributes"]) for c in catalog] for s in segments])
    seg_idx = rng.integers(0, len(segments), n)
    cre_idx = rng.integers(0, len(catalog), n)
    clicked = rng.uniform(size=n) < ctr[seg_idx, cre_idx]
    out = []
    for i in range(n):
        s, c = int(seg_idx[i]), int(cre_idx[i])
        at = start_ms + i * step_ms
        out.append(
            {
                "decision_id": uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i).hex,
                "campaign_id": catalog[c]["campaign_id"],
                "segment": segments[s],
                "context": contexts[s],
                "user_id": f"u{i % 997:04d}",
                "creative_id": catalog[c]["creative_id"],
                "propensity": 1.0 / len(catalog),
                "arm": "control",
                "policy": "uniform",
                "policy_version": "v0",
                "model_version": None,
                "reward": float(clicked[i]),
                "clicked": bool(clicked[i]),
                "converted": False,
                "conversion_value": 0.0,
                "sentiment": None,
                "outcome": "click" if clicked[i] else "timeout",
                "decided_at": at,
                "event_at": at + 500 if clicked[i] else None,
                "rewarded_at": at + 1000,
            }
        )
    return out
