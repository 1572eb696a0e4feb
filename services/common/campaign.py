"""The campaign spec file (YAML or JSON) that `admuse campaign apply` publishes.

One pydantic model, strict (unknown keys are errors), with messages that name the field:

```yaml
campaign_id: spring
name: Spring sale
attributes:
  - {name: headline, kind: categorical, values: ["Save 20%", "New in"]}
  - {name: font_scale, kind: numeric, min: 0.8, max: 1.6}
  - {name: background, kind: color}
segment_keys: [country, device]
reward: {kind: weighted, weights: {click: 1.0, conversion: 5.0}}
attribution_window: 30        # seconds
holdout_share: 0.1           # users on the control policy (uniform over the catalog)
catalog_share: 0.1           # users on the catalog-only bandit (0: no such arm)
forbidden: [{headline: "New in", cta: "Buy now"}]
min_contrast: 4.5
allow_retire_catalog: false
max_generated: 4
approval: required            # generated creatives wait for a person (default: auto)
fallback: spring-classic      # seed a paused or stopped campaign answers Decide with
seeds:
  - {name: Classic, attributes: {headline: "Save 20%", font_scale: 1.0, background: "#ffffff"}}
```

Seeds are the creatives people made; each is a full assignment of the attributes. Their
`creative_id` is `id` when given, else `<campaign_id>-<slug of name>`, so re-applying the same
file updates the same creatives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from services.common.attributes import (
    Attribute,
    AttributeDecl,
    CategoricalAttribute,
    CircularAttribute,
    ColorAttribute,
    NumericAttribute,
    SequenceAttribute,
    Strict,
)
from services.common.spec_files import (
    SpecError,
    format_validation_error,
    parse_model,
    read_spec_file,
)

__all__ = [
    "Attribute",
    "CampaignSpec",
    "CategoricalAttribute",
    "CircularAttribute",
    "ColorAttribute",
    "NumericAttribute",
    "RewardSpec",
    "RewardWeights",
    "SeedCreative",
    "SequenceAttribute",
    "SpecError",
    "campaign_record",
    "catalog_creative",
    "creative_records",
    "format_validation_error",
    "load_spec",
    "parse_spec",
    "read_spec_file",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class RewardWeights(Strict):
    click: float = Field(1.0, ge=0)
    conversion: float = Field(0.0, ge=0)
    value: float = Field(0.0, ge=0)
    sentiment: float = Field(0.0, ge=0)


class RewardSpec(Strict):
    kind: Literal["click", "conversion", "weighted", "events"] = "click"
    weights: RewardWeights | None = None
    # kind 'events': weight per feedback event type of the campaign's domain (docs/domains.md)
    events: dict[str, float] | None = None

    @model_validator(mode="after")
    def _weights(self) -> RewardSpec:
        if self.kind == "weighted":
            w = self.weights
            if w is None or not (w.click or w.conversion or w.value or w.sentiment):
                raise ValueError("kind 'weighted' needs weights with at least one above 0")
        elif self.weights is not None:
            raise ValueError(f"weights apply only to kind 'weighted', not {self.kind!r}")
        if self.kind == "events":
            e = self.events or {}
            if not any(v > 0 for v in e.values()) or any(v < 0 for v in e.values()):
                raise ValueError("kind 'events' needs events: {type: weight >= 0}, one above 0")
        elif self.events is not None:
            raise ValueError(f"events apply only to kind 'events', not {self.kind!r}")
        return self

    def effective_weights(self) -> RewardWeights:
        """click: (1, 0, 0, 0); conversion: (0, 1, 0, 0); weighted: as given; events: none."""
        if self.kind == "click":
            return RewardWeights(click=1.0)
        if self.kind == "conversion":
            return RewardWeights(click=0.0, conversion=1.0)
        if self.kind == "events":
            return RewardWeights(click=0.0)
        assert self.weights is not None
        return self.weights


class SeedCreative(Strict):
    name: str = Field(min_length=1)
    id: str | None = Field(None, pattern=_ID)
    # sequence values: the text "a:b c:d" or a list of steps ("a:b" or [a, b])
    attributes: dict[str, str | float | list[str | list[str]]]


class CampaignSpec(Strict):
    campaign_id: str = Field(pattern=_ID)
    name: str = Field(min_length=1)
    attributes: list[Attribute] = Field(min_length=1)
    segment_keys: list[str] = Field(default_factory=list)
    reward: RewardSpec = Field(default_factory=RewardSpec)
    attribution_window: float = Field(gt=0, le=7 * 24 * 3600, description="seconds")
    holdout_share: float = Field(0.1, gt=0, lt=1)
    catalog_share: float = Field(0.0, ge=0, lt=1)
    forbidden: list[dict[str, str]] = Field(default_factory=list)
    min_contrast: float = Field(4.5, ge=1, le=21)
    allow_retire_catalog: bool = False
    max_generated: int = Field(4, ge=0, le=1000)
    # 'event': only decisions the app sends an `impression` event for are impressions.
    impressions: Literal["decision", "event"] = "decision"
    # the creative domain plug-in (services/domains) and its options (its rules' settings);
    # the CLI checks both with `services.domains.check_spec` before publishing
    domain: str = Field("banner", pattern=r"^[a-z][a-z0-9_]{0,39}$")
    domain_options: dict[str, Any] = Field(default_factory=dict)
    approval: Literal["auto", "required"] = "auto"  # required: generated creatives need a person
    fallback: str | None = Field(None, pattern=_ID)  # seed creative id served while not active
    seeds: list[SeedCreative] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        names = [a.name for a in self.attributes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"attributes: names must be unique; repeated: {dupes}")
        if self.holdout_share + self.catalog_share >= 1:
            raise ValueError(
                f"holdout_share + catalog_share must leave traffic for the full loop; got "
                f"{self.holdout_share} + {self.catalog_share}"
            )
        if len(set(self.segment_keys)) != len(self.segment_keys):
            raise ValueError(f"segment_keys: repeated key in {self.segment_keys}")
        by_name = self.attribute_map()
        for i, combo in enumerate(self.forbidden):
            if len(combo) < 2:
                raise ValueError(f"forbidden[{i}]: a combination needs at least two attributes")
            for key, value in combo.items():
                attr = by_name.get(key)
                if not isinstance(attr, CategoricalAttribute):
                    cats = [a.name for a in self.attributes if a.kind == "categorical"]
                    raise ValueError(
                        f"forbidden[{i}].{key}: not a categorical attribute of this campaign "
                        f"(categorical: {cats})"
                    )
                if value not in attr.values:
                    raise ValueError(f"forbidden[{i}].{key}: {value!r} is not one of {attr.values}")
        ids: dict[str, int] = {}
        for i, seed in enumerate(self.seeds):
            where = f"seeds[{i}] ({seed.name!r})"
            missing = [n for n in names if n not in seed.attributes]
            extra = sorted(set(seed.attributes) - set(names))
            if missing:
                raise ValueError(
                    f"{where}.attributes: missing {missing}; a seed assigns every attribute"
                )
            if extra:
                raise ValueError(f"{where}.attributes: unknown {extra}; declared: {names}")
            for attr in self.attributes:
                problem = attr.check(seed.attributes[attr.name])
                if problem:
                    raise ValueError(f"{where}.attributes.{attr.name}: {problem}")
            for j, combo in enumerate(self.forbidden):
                if all(seed.attributes.get(k) == v for k, v in combo.items()):
                    raise ValueError(
                        f"{where}: uses the forbidden combination forbidden[{j}] {combo}"
                    )
            cid = self.seed_id(seed)
            if cid in ids:
                raise ValueError(
                    f"{where}: creative id {cid!r} repeats seeds[{ids[cid]}]; give an id"
                )
            ids[cid] = i
        if self.fallback is not None and self.fallback not in ids:
            raise ValueError(f"fallback: {self.fallback!r} is no seed's creative id {sorted(ids)}")
        return self

    def attribute_map(self) -> dict[str, AttributeDecl]:
        return {a.name: a for a in self.attributes}

    def seed_id(self, seed: SeedCreative) -> str:
        if seed.id:
            return seed.id
        slug = re.sub(r"[^a-z0-9]+", "-", seed.name.lower()).strip("-") or "seed"
        return f"{self.campaign_id}-{slug}"[:64]

    def is_forbidden(self, attributes: Mapping[str, Any]) -> bool:
        return any(all(attributes.get(k) == v for k, v in c.items()) for c in self.forbidden)


def campaign_record(
    spec: CampaignSpec, revision: int, now: datetime | None = None
) -> dict[str, Any]:
    """The `Campaign` Avro record for this spec."""
    w = spec.reward.effective_weights()
    return {
        "campaign_id": spec.campaign_id,
        "name": spec.name,
        "revision": revision,
        "attributes": [_attribute_record(a) for a in spec.attributes],
        "segment_keys": list(spec.segment_keys),
        "reward": {
            "kind": spec.reward.kind,
            "click_weight": w.click,
            "conversion_weight": w.conversion,
            "value_weight": w.value,
            "sentiment_weight": w.sentiment,
            "event_weights": dict(spec.reward.events or {}),
        },
        "attribution_window_ms": round(spec.attribution_window * 1000),
        "holdout_share": spec.holdout_share,
        "catalog_share": spec.catalog_share,
        "forbidden": [dict(c) for c in spec.forbidden],
        "min_contrast": spec.min_contrast,
        "allow_retire_catalog": spec.allow_retire_catalog,
        "max_generated": spec.max_generated,
        "impressions": spec.impressions,
        "domain": spec.domain,
        "domain_options": json.dumps(spec.domain_options, sort_keys=True),
        "state": "active",  # a new campaign; `apply` keeps an existing one's state
        "state_changed_at": None,
        "approval": spec.approval,
        "fallback_creative_id": spec.fallback,
        "updated_at": now or datetime.now(UTC),
    }


def _attribute_record(a: AttributeDecl) -> dict[str, Any]:
    """One `Attribute` of the Campaign record (v5: step, length and fields added)."""
    ranged = isinstance(a, NumericAttribute | CircularAttribute)
    return {
        "name": a.name,
        "kind": a.kind,
        "values": list(a.values) if isinstance(a, CategoricalAttribute) else [],
        "min": a.min if ranged else None,
        "max": a.max if ranged else None,
        "step": a.step if isinstance(a, CircularAttribute) else None,
        "length": a.length if isinstance(a, SequenceAttribute) else 0,
        "fields": (
            [{"name": f.name, "values": list(f.values)} for f in a.fields]
            if isinstance(a, SequenceAttribute)
            else []
        ),
    }


def creative_records(spec: CampaignSpec, now: datetime | None = None) -> list[dict[str, Any]]:
    """One live `Creative` record (origin catalog) per seed."""
    now = now or datetime.now(UTC)
    out = []
    for seed in spec.seeds:
        attrs = {a.name: a.canonical(seed.attributes[a.name]) for a in spec.attributes}
        out.append(catalog_creative(spec.seed_id(seed), spec.campaign_id, seed.name, attrs, now))
    return out


def catalog_creative(
    creative_id: str,
    campaign_id: str,
    name: str,
    attributes: Mapping[str, str | float],
    created_at: datetime | int,
) -> dict[str, Any]:
    """A live `Creative` record made by people (origin catalog), with a flat prior."""
    return {
        "creative_id": creative_id,
        "campaign_id": campaign_id,
        "origin": "catalog",
        "name": name,
        "attributes": dict(attributes),
        "status": "live",
        "segment": None,
        "model_version": None,
        "predicted_reward": None,
        "prior_alpha": 1.0,
        "prior_beta": 1.0,
        "created_at": created_at,
        "retired_at": None,
    }


def parse_spec(data: Any, source: str = "campaign spec") -> CampaignSpec:
    """Validate a mapping as a CampaignSpec; raise SpecError naming the fields at fault."""
    return parse_model(CampaignSpec, data, source)


def load_spec(path: Path | str) -> CampaignSpec:
    """Read and validate a campaign spec file."""
    return parse_spec(read_spec_file(path), str(path))
