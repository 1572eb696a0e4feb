"""A simulator scenario: a campaign spec, an audience, and a hidden ground-truth reward model.

```yaml
campaign: {...}                 # a campaign spec (services/common/campaign.py)
audience:
  rate: 20                      # users arriving per second (Poisson)
  users_per_segment: 5000       # distinct app users per segment (holdout is per user)
  consent_share: 1.0            # share of users who consent to personalization
  shown_share: 1.0              # share of decisions the app shows (impression event sent)
  slate: 1                      # variants one preview shows together (1-4; >1: domains with
                                # a `vote` event, reward kind events; simulator/slates.py)
  segments:
    - {name: de-mobile, share: 0.6, context: {country: DE, device: mobile}}
truth:                          # never sent to the services; used only to score them
  base_logit: -3.0
  segments: {de-mobile: {base_logit: -2.5}}
  effects:                      # additive on the logit of P(click)
    - attribute: headline
      values: {"Save 20%": 0.4}
      segments: {de-mobile: {values: {"New in": 1.2}}}
    - {attribute: font_scale, peak: 1.4, weight: 2.0}      # -weight * ((x - peak) / range)^2
    - {attribute: background, target: "#ff7700", weight: 3.0,
       segments: {de-mobile: {target: "#00aa55"}}}
  interactions:                 # a bonus when every listed value appears together
    - {when: {headline: "Save 20%", cta: "Shop now"}, logit: 0.6, segments: [de-mobile]}
  drift:                        # appeal that changes during the run (creative fatigue, a trend)
    - {when: {headline: "Save 20%"}, logit: -2.0, start_s: 120, ramp_s: 30}   # wears out
  conversion: {rate: 0.1, value_mean: 40, value_sd: 10}    # optional, P(conversion | click)
  click_delay: {median_s: 2.0, sigma: 0.8, max_s: 60}     # lognormal
  conversion_delay: {median_s: 6.0, sigma: 0.8, max_s: 120}
```

A color distance is Euclidean over r, g, b in [0, 1] (at most sqrt(3)); the color penalty is
`weight * distance^2`. Per-segment overrides replace `values` entries, `peak`, `target` or
`weight` for that segment only — the attribute x segment interactions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.campaign import (
    CampaignSpec,
    CategoricalAttribute,
    CircularAttribute,
    ColorAttribute,
    NumericAttribute,
    SequenceAttribute,
    SpecError,
    parse_model,
    read_spec_file,
)
from services.common.segment import segment_of
from services.domains import get_domain

__all__ = [
    "Audience",
    "Delay",
    "Drift",
    "Scenario",
    "SegmentSpec",
    "Truth",
    "TruthEffect",
    "default_scenario_path",
    "load_scenario",
    "parse_scenario",
    "scenario_path",
]

_SCENARIOS = Path(__file__).resolve().parent / "scenarios"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    share: float = Field(gt=0)
    context: dict[str, str] = Field(default_factory=dict)


class Audience(_Strict):
    rate: float = Field(10.0, gt=0, le=10_000, description="arrivals per second")
    users_per_segment: int = Field(5000, ge=1)
    consent_share: float = Field(1.0, ge=0, le=1)
    # share of decisions the app actually shows (sends an `impression` event for); the rest
    # are below the fold or closed: no impression, no click
    shown_share: float = Field(1.0, gt=0, le=1)
    # variants shown together in one preview: one Decide per slot, one vote between them
    # (simulator/slates.py); more than 1 only for domains whose viewers vote
    slate: int = Field(1, ge=1, le=4)
    segments: list[SegmentSpec] = Field(min_length=1)


class TruthEffectOverride(_Strict):
    values: dict[str, float] | None = None
    peak: float | None = None
    target: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    steps: str | None = None
    weight: float | None = Field(None, ge=0)


class TruthEffect(_Strict):
    """categorical: `values` (logit per value); numeric: `peak` (−weight·((x−peak)/range)²);
    circular: `peak` (−weight·d², d the circular distance, 1 = opposite); color: `target`;
    sequence: `steps`, a full sequence (−weight × share of its (step, field) slots that
    differ)."""

    attribute: str
    values: dict[str, float] = Field(default_factory=dict)
    peak: float | None = None
    target: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    steps: str | None = None
    weight: float = Field(1.0, ge=0)
    segments: dict[str, TruthEffectOverride] = Field(default_factory=dict)


class Interaction(_Strict):
    when: dict[str, str] = Field(min_length=2)
    logit: float
    segments: list[str] | None = None


class Drift(_Strict):
    """Creatives with every `when` value gain `logit` (negative: they wear out), ramping in
    linearly over `ramp_s` seconds from `start_s` seconds into the run."""

    when: dict[str, str] = Field(min_length=1)
    logit: float
    start_s: float = Field(ge=0)
    ramp_s: float = Field(0.0, ge=0)
    segments: list[str] | None = None

    def share(self, at_s: float) -> float:
        """How much of the change has happened `at_s` seconds into the run (0 to 1)."""
        if at_s < self.start_s:
            return 0.0
        if self.ramp_s <= 0:
            return 1.0
        return min(1.0, (at_s - self.start_s) / self.ramp_s)


class SegmentTruth(_Strict):
    base_logit: float | None = None


class Conversion(_Strict):
    rate: float = Field(ge=0, le=1)
    value_mean: float = Field(0.0, ge=0)
    value_sd: float = Field(0.0, ge=0)


class Delay(_Strict):
    median_s: float = Field(gt=0)
    sigma: float = Field(0.5, ge=0)
    max_s: float = Field(300.0, gt=0)


class Truth(_Strict):
    base_logit: float = -3.0
    segments: dict[str, SegmentTruth] = Field(default_factory=dict)
    effects: list[TruthEffect] = Field(default_factory=list)
    interactions: list[Interaction] = Field(default_factory=list)
    drift: list[Drift] = Field(default_factory=list)
    conversion: Conversion | None = None
    click_delay: Delay = Field(default_factory=lambda: Delay(median_s=2.0, sigma=0.8, max_s=60))
    conversion_delay: Delay = Field(
        default_factory=lambda: Delay(median_s=6.0, sigma=0.8, max_s=120)
    )


class Scenario(_Strict):
    campaign: CampaignSpec
    audience: Audience
    truth: Truth

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = [s.name for s in self.audience.segments]
        if len(set(names)) != len(names):
            raise ValueError(f"audience.segments: names repeat in {names}")
        keys: dict[str, str] = {}
        for i, seg in enumerate(self.audience.segments):
            key = self.segment_key(seg)
            if key in keys:
                raise ValueError(
                    f"audience.segments[{i}] ({seg.name}): context maps to segment {key!r}, like "
                    f"{keys[key]}; segments must differ on campaign.segment_keys "
                    f"{self.campaign.segment_keys}"
                )
            keys[key] = seg.name
        self._check_slate()
        known = set(names)
        for name in self.truth.segments:
            if name not in known:
                raise ValueError(f"truth.segments.{name}: not an audience segment {sorted(known)}")
        attrs = self.campaign.attribute_map()
        for i, eff in enumerate(self.truth.effects):
            _check_effect(i, eff, attrs, known)
        for field_name in ("interactions", "drift"):
            for i, rule in enumerate(getattr(self.truth, field_name)):
                for k, v in rule.when.items():
                    a = attrs.get(k)
                    if not isinstance(a, CategoricalAttribute) or v not in a.values:
                        raise ValueError(
                            f"truth.{field_name}[{i}].when.{k}: {v!r} is not a value of a "
                            "categorical attribute of the campaign"
                        )
                for s in rule.segments or []:
                    if s not in known:
                        raise ValueError(
                            f"truth.{field_name}[{i}].segments: {s!r} is not an audience segment"
                        )
        return self

    def _check_slate(self) -> None:
        k, spec = self.audience.slate, self.campaign
        if k == 1:
            return
        feedback = sorted(get_domain(spec.domain).feedback)
        if "vote" not in feedback:
            raise ValueError(
                f"audience.slate: {k} variants per preview need a domain whose viewers vote "
                f"between them (a `vote` feedback event); domain {spec.domain!r} has {feedback}"
            )
        if spec.reward.kind != "events":
            raise ValueError(
                f"audience.slate: {k} variants per preview need campaign.reward kind `events` "
                f"(the vote is one of the domain's feedback events), not {spec.reward.kind!r}"
            )

    def segment_key(self, seg: SegmentSpec) -> str:
        """The canonical segment key the services compute for this segment's context."""
        return segment_of(self.campaign.segment_keys, seg.context)

    def shares(self) -> list[float]:
        total = sum(s.share for s in self.audience.segments)
        return [s.share / total for s in self.audience.segments]


def _check_effect(i: int, eff: TruthEffect, attrs: Mapping[str, Any], segments: set[str]) -> None:
    where = f"truth.effects[{i}] ({eff.attribute})"
    attr = attrs.get(eff.attribute)
    if attr is None:
        raise ValueError(f"{where}: not an attribute of the campaign {sorted(attrs)}")
    for seg in eff.segments:
        if seg not in segments:
            raise ValueError(f"{where}.segments.{seg}: not an audience segment {sorted(segments)}")
    overrides = list(eff.segments.values())
    if isinstance(attr, CategoricalAttribute):
        for values in [eff.values, *(o.values or {} for o in overrides)]:
            bad = sorted(set(values) - set(attr.values))
            if bad:
                raise ValueError(f"{where}.values: {bad} not in {attr.values}")
        if eff.peak is not None or eff.target is not None:
            raise ValueError(f"{where}: a categorical effect takes `values`, not peak/target")
    elif isinstance(attr, NumericAttribute):
        if eff.peak is None:
            raise ValueError(f"{where}: a numeric effect needs `peak`")
        if eff.values or eff.target is not None:
            raise ValueError(f"{where}: a numeric effect takes `peak` and `weight` only")
    elif isinstance(attr, ColorAttribute):
        if eff.target is None:
            raise ValueError(f"{where}: a color effect needs `target` ('#rrggbb')")
        if eff.values or eff.peak is not None:
            raise ValueError(f"{where}: a color effect takes `target` and `weight` only")
    elif isinstance(attr, CircularAttribute):
        for peak in [eff.peak, *(o.peak for o in overrides if o.peak is not None)]:
            problem = attr.check(peak) if peak is not None else "missing"
            if problem:
                raise ValueError(f"{where}: a circular effect needs a `peak` on it ({problem})")
    elif isinstance(attr, SequenceAttribute):
        for steps in [eff.steps, *(o.steps for o in overrides if o.steps is not None)]:
            problem = attr.check(steps) if steps is not None else "missing"
            if problem:
                raise ValueError(f"{where}: a sequence effect needs full `steps` ({problem})")
    if eff.steps is not None and not isinstance(attr, SequenceAttribute):
        raise ValueError(f"{where}: `steps` applies to sequence attributes only")


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    return parse_model(Scenario, data, source)


def default_scenario_path() -> Path:
    return _SCENARIOS / "demo.yaml"


def scenario_path(name_or_path: str | Path) -> Path:
    """A path as given, or the name of a bundled scenario (`demo`, `bench`, `e2e`)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml", ".json") or p.is_file():
        return p
    bundled = _SCENARIOS / f"{name_or_path}.yaml"
    if not bundled.is_file():
        names = sorted(x.stem for x in _SCENARIOS.glob("*.yaml"))
        raise SpecError(f"scenario {name_or_path!r}: no such file and not a bundled one {names}")
    return bundled


def load_scenario(name_or_path: str | Path) -> Scenario:
    path = scenario_path(name_or_path)
    return parse_scenario(read_spec_file(path), str(path))
