"""The experiment report of one campaign: arms, their comparison with control, SRM, effects.

With a catalog-bandit arm (`catalog`, the campaign's `catalog_share`), `generation` compares
the full loop (`optimized`) with it: what generating creatives adds over optimizing the
catalog alone. The SRM check covers every configured arm.

Input is columns, not Kafka: `decisions` (arm and decision time per decision — impressions and
the split) and `rewards` (`LoggedData` of decisions whose outcome is known). So the same report
runs on a replayed file or a test fixture.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from services.analysis.compare import ArmComparison, compare_arms, jsonable
from services.analysis.dataset import LoggedData
from services.analysis.effects import GroupEffect, attribute_effects, creative_effects
from services.analysis.stats import Rate, SrmResult, rate, srm_test

__all__ = ["PENDING_NOTE_SHARE", "ArmRow", "CampaignReport", "build_report", "report_from_logs"]

CONTROL = "control"
CATALOG = "catalog"
TREATMENT = "optimized"
PENDING_NOTE_SHARE = 0.05  # above this share of pending decisions the report says so


@dataclass(frozen=True)
class ArmRow:
    """One arm: `impressions` decisions logged, `outcomes` of them shown and with a known
    reward, `unshown` of them known never shown (campaign impressions: event)."""

    arm: str
    impressions: int
    outcomes: int
    pending: int
    rewarded: Rate  # share of outcomes with reward > 0, Wilson interval
    mean_reward: float
    unshown: int = 0


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: str
    from_ms: int | None
    to_ms: int | None
    generated_at_ms: int
    arms: list[ArmRow]
    comparisons: dict[str, ArmComparison]
    srm: SrmResult | None
    expected_control_share: float | None
    creatives: list[GroupEffect]
    attributes: dict[str, list[GroupEffect]]
    notes: list[str] = field(default_factory=list)
    generation: ArmComparison | None = None  # full loop vs catalog bandit
    expected_shares: dict[str, float] = field(default_factory=dict)
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return jsonable(asdict(self))


def build_report(
    campaign_id: str,
    rewards: LoggedData,
    *,
    decision_arms: np.ndarray | None = None,
    expected_control_share: float | None = None,
    expected_catalog_share: float = 0.0,
    attributes: Mapping[str, Mapping[str, str | float]] | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    looks: int = 200,
    confidence: float = 0.95,
) -> CampaignReport:
    """Build the report. `decision_arms`: arm of every decision in range (impressions)."""
    notes: list[str] = []
    if decision_arms is None:
        decision_arms = np.array([rewards.arms[a] for a in rewards.arm], dtype=object)
        notes.append("no decisions read: impressions are the decisions with a known outcome")
    arm_names = sorted(
        set(decision_arms.tolist()) | set(rewards.arms), key=lambda a: (a != CONTROL, a)
    )
    unshown: dict[str, int] = {}
    if "shown" in rewards.extra:
        shown = rewards.extra["shown"].astype(bool)
        unshown = {arm: int((rewards.arm_mask(arm) & ~shown).sum()) for arm in arm_names}
        if not shown.all():
            notes.append(
                f"{int((~shown).sum())} decisions were never shown (no impression event): "
                "they count in no rate, lift or effect"
            )
        rewards = rewards.select(shown)
    success = rewards.reward > 0
    if not rewards.is_binary():
        notes.append(
            "rewards are not 0/1: rates count outcomes with reward > 0; "
            "mean reward is shown beside them"
        )
    rows: list[ArmRow] = []
    counts: dict[str, tuple[int, int]] = {}
    for arm in arm_names:
        mask = rewards.arm_mask(arm)
        n_out, s = int(mask.sum()), int(success[mask].sum())
        impressions = int((decision_arms == arm).sum())
        counts[arm] = (s, n_out)
        mean = float(rewards.reward[mask].mean()) if n_out else float("nan")
        rows.append(
            ArmRow(
                arm,
                impressions,
                n_out,
                max(impressions - n_out - unshown.get(arm, 0), 0),
                rate(s, n_out, confidence),
                mean,
                unshown.get(arm, 0),
            )
        )

    if any(r.outcomes > r.impressions for r in rows):
        notes.append(
            "some arms have more outcomes than decisions: the rewards read include decisions "
            "outside the decisions range (offset ranges of the two topics differ)"
        )
    comparisons: dict[str, ArmComparison] = {}
    srm = None
    if CONTROL in counts:
        history = _history(rewards, success, looks)
        for arm in arm_names:
            if arm == CONTROL:
                continue
            comparisons[arm] = compare_arms(
                counts[CONTROL],
                counts[arm],
                confidence=confidence,
                history=history.get(arm),
            )
    else:
        notes.append("no control arm in range: no lift, win probability or sequential test")
    generation = None
    if CATALOG in counts and TREATMENT in counts:
        generation = compare_arms(counts[CATALOG], counts[TREATMENT], confidence=confidence)
    arm_impr = {r.arm: r.impressions for r in rows}
    shares: dict[str, float] = {}
    if expected_control_share is None:
        notes.append(
            "SRM check skipped: the configured holdout share is unknown "
            "(no campaign record; pass --control-share)"
        )
    else:
        configured = {
            CONTROL: expected_control_share,
            CATALOG: expected_catalog_share,
            TREATMENT: 1 - expected_control_share - expected_catalog_share,
        }
        shares = {a: v for a, v in configured.items() if v > 0}
        if set(arm_impr) <= set(shares) and len(shares) >= 2:
            srm = srm_test([arm_impr.get(a, 0) for a in shares], list(shares.values()))
            if srm.flagged:
                split = ", ".join(
                    f"{a} {arm_impr.get(a, 0)} (expected {v:.1%})" for a, v in shares.items()
                )
                notes.append(
                    f"SAMPLE RATIO MISMATCH: of {sum(arm_impr.values())} decisions {split} "
                    f"(p = {srm.p_value:.2g}); the split is broken — do not trust the comparison"
                )
        else:
            notes.append(
                f"SRM check skipped: the arms found {sorted(arm_impr)} are not the configured "
                f"ones {sorted(shares)}"
            )
    return CampaignReport(
        campaign_id=campaign_id,
        from_ms=from_ms,
        to_ms=to_ms,
        generated_at_ms=int(time.time() * 1000),
        arms=rows,
        comparisons=comparisons,
        srm=srm,
        expected_control_share=expected_control_share,
        generation=generation,
        expected_shares=shares,
        creatives=creative_effects(rewards, confidence),
        attributes=attribute_effects(rewards, attributes or {}, confidence),
        notes=notes,
        confidence=confidence,
    )


def _history(
    rewards: LoggedData, success: np.ndarray, looks: int
) -> dict[str, list[tuple[float, int, float, int]]]:
    """Cumulative (s_control, n_control, s_arm, n_arm) at `looks` points in outcome order."""
    if rewards.n == 0:
        return {}
    order_key = rewards.extra.get("rewarded_at_ms", rewards.timestamp_ms)
    order = np.argsort(order_key, kind="stable")
    arm = rewards.arm[order]
    succ = success[order]
    points = np.unique(np.linspace(0, rewards.n - 1, min(looks, rewards.n)).astype(np.int64))
    ctrl = rewards.arms.index(CONTROL) if CONTROL in rewards.arms else -1
    cs = np.cumsum(succ & (arm == ctrl))[points]
    cn = np.cumsum(arm == ctrl)[points]
    out: dict[str, list[tuple[float, int, float, int]]] = {}
    for code, name in enumerate(rewards.arms):
        if code == ctrl:
            continue
        ts = np.cumsum(succ & (arm == code))[points]
        tn = np.cumsum(arm == code)[points]
        out[name] = [
            (float(a), int(b), float(c), int(d)) for a, b, c, d in zip(cs, cn, ts, tn, strict=True)
        ]
    return out


def report_from_logs(
    campaign_id: str,
    logs: Any,
    *,
    control_share: float | None = None,
    from_ms: int | None = None,
    to_ms: int | None = None,
    looks: int = 200,
) -> CampaignReport:
    """The report of `admuse report` and the console from what `load_campaign` read (a
    `CampaignLogs`): the campaign's configured shares unless `control_share` is given, plus
    the notes on undecodable records, pending decisions and an empty range."""
    share = control_share
    catalog_share = 0.0
    if logs.campaign is not None:
        catalog_share = float(logs.campaign.get("catalog_share") or 0.0)
        if share is None:
            share = float(logs.campaign["holdout_share"])
    result = build_report(
        campaign_id,
        logs.rewards,
        decision_arms=logs.decision_arms,
        expected_control_share=share,
        expected_catalog_share=catalog_share,
        attributes=logs.attributes,
        from_ms=from_ms,
        to_ms=to_ms,
        looks=looks,
    )
    for name, st in logs.stats.items():
        if st.undecodable:
            result.notes.append(
                f"{st.undecodable} record(s) of {name} did not decode and were skipped"
            )
    pending = sum(row.pending for row in result.arms)
    total = sum(row.impressions for row in result.arms)
    pending_share = pending / total if total else 0.0
    if pending_share > PENDING_NOTE_SHARE:
        result.notes.append(
            f"{pending} of {total} decisions ({pending_share:.1%}) have no Reward yet "
            "(attribution window still open): rates and comparisons will move as they close"
        )
    if logs.rewards.n == 0 and logs.decision_arms is not None and len(logs.decision_arms) == 0:
        result.notes.append(f"no decisions or rewards of campaign {campaign_id!r} in range")
    return result
