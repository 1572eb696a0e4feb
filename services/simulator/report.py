"""The result of a simulator run: numbers (`analyze`), a terminal table, an HTML report.

Inputs are the simulator's own `results.jsonl` (one line per request, scored by the oracle),
the scenario (for the ground truth) and what the system published (creatives, models). The
experiment table compares the arms on the clicks users actually made; regret and "true CTR"
use the hidden ground truth, which only the simulator knows.

Three arms: `control` (uniform over the catalog), `catalog` (the bandit over the catalog
alone, present when the campaign has a `catalog_share`) and `optimized` (the full loop).
`comparison` is optimized vs control; `generation` is the question an advertiser asks — full
loop vs catalog bandit: the lift on observed clicks with its 95 % interval, and (simulator
only) the difference in true CTR with its 95 % interval. The sample-ratio check covers every
configured arm.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from services.analysis import compare_arms, srm_test
from services.simulator.groundtruth import GroundTruth
from services.simulator.scenario import Scenario
from services.simulator.stratify import stratified_difference

__all__ = ["ARMS", "analyze", "load_results", "measure", "time_series"]

ARMS = ("control", "catalog", "optimized")


def load_results(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(answered requests, failed requests) from a results.jsonl file."""
    answered, failed = [], []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            (failed if "error" in row else answered).append(row)
    answered.sort(key=lambda r: r["t"])
    return answered, failed


def analyze(
    rows: list[dict[str, Any]],
    scenario: Scenario,
    *,
    creatives: Mapping[str, Mapping[str, Any]] | None = None,
    models: Iterable[Mapping[str, Any]] = (),
    failed: int = 0,
) -> dict[str, Any]:
    """Every number the result table and the report show, JSON-ready."""
    creatives = dict(creatives or {})
    truth = GroundTruth(scenario)
    arm_rows = {a: [r for r in rows if r["arm"] == a and r.get("shown", True)] for a in ARMS}
    unshown = Counter(r["arm"] for r in rows if "arm" in r and not r.get("shown", True))
    arms = {a: {**_arm_summary(rs), "never_shown": unshown[a]} for a, rs in arm_rows.items()}
    shares = expected_shares(scenario)
    srm = _srm(arms, shares)
    comparison = None
    c, o = arms["control"], arms["optimized"]
    if c["impressions"] and o["impressions"]:
        cmp = compare_arms(
            control=(c["clicks"], c["impressions"]), treatment=(o["clicks"], o["impressions"])
        )
        for a, rate in (("control", cmp.control), ("optimized", cmp.treatment)):
            arms[a].update(ctr=rate.rate, ctr_low=rate.low, ctr_high=rate.high)
        total = sum(arms[a]["impressions"] for a in ARMS)
        comparison = {
            "lift": cmp.lift.estimate,
            "lift_low": cmp.lift.low,
            "lift_high": cmp.lift.high,
            "prob_optimized_beats_control": cmp.prob_treatment_beats_control,
            "srm_p_value": srm["p_value"] if srm else None,
            "srm_flagged": bool(srm["flagged"]) if srm else False,
            "expected_control_share": scenario.campaign.holdout_share,
            "observed_control_share": c["impressions"] / total,
            "expected_shares": shares,
            "observed_shares": {a: arms[a]["impressions"] / total for a in ARMS},
            "ctr_ratio": (o["clicks"] / o["impressions"]) / (c["clicks"] / c["impressions"])
            if c["clicks"]
            else None,
            "true_ctr_ratio": o["true_ctr"] / c["true_ctr"] if c["true_ctr"] else None,
        }
    segment_shares = {s.name: s.share for s in scenario.audience.segments}
    generation = _generation(arms, arm_rows, segment_shares)
    served = Counter(r["creative_id"] for r in rows)
    generated_ids = {cid for cid, cr in creatives.items() if cr.get("origin") == "generated"}
    generated_ids |= {r["creative_id"] for r in rows if r["origin"] == "generated"}
    opt_n = max(1, o["impressions"])
    summary_creatives = {
        "catalog": len(scenario.campaign.seeds),
        "generated_admitted": len(generated_ids),
        "generated_served": sum(1 for cid in generated_ids if served[cid]),
        "generated_share_optimized": sum(
            1 for r in arm_rows["optimized"] if r["origin"] == "generated"
        )
        / opt_n,
        "retired": sum(1 for cr in creatives.values() if cr.get("status") == "retired"),
        "promoted": sum(1 for cr in creatives.values() if cr.get("stage") == "promoted"),
        "models": len(list(models)),
    }
    return {
        "campaign_id": scenario.campaign.campaign_id,
        "requests": len(rows) + failed,
        "failed": failed,
        "duration_s": rows[-1]["t"] if rows else 0.0,
        "arms": arms,
        "comparison": comparison,
        "generation": generation,
        "creatives": summary_creatives,
        "best": _best_by_segment(rows, scenario, truth, creatives),
        "measure": measure_names(scenario),
    }


def measure_names(scenario: Scenario) -> dict[str, str]:
    """What the rates are called: a campaign rewarded by its domain's events (music, film) is
    judged on engagement (the result's `ctr` / `clicks` count engaged listeners or viewers),
    every other on clicks."""
    if scenario.campaign.reward.kind == "events":
        return {"rate": "engagement", "outcomes": "engaged"}
    return {"rate": "CTR", "outcomes": "clicks"}


def measure(result: Mapping[str, Any]) -> dict[str, str]:
    """The result's measure names (results written before they were recorded: clicks)."""
    return dict(result.get("measure") or {"rate": "CTR", "outcomes": "clicks"})


def expected_shares(scenario: Scenario) -> dict[str, float]:
    """Configured traffic share of each arm (arms with share 0 left out)."""
    holdout, catalog = scenario.campaign.holdout_share, scenario.campaign.catalog_share
    shares = {"control": holdout, "catalog": catalog, "optimized": 1.0 - holdout - catalog}
    return {a: v for a, v in shares.items() if v > 0}


def _arm_summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rs)
    regrets = [r["oracle_reward"] - r["expected_reward"] for r in rs]
    true_ctr, true_half = _mean_interval([r["p_click"] for r in rs])
    regret, regret_half = _mean_interval(regrets)
    return {
        "impressions": n,
        "clicks": sum(r["clicked"] for r in rs),
        "true_ctr": true_ctr,
        "true_ctr_low": true_ctr - true_half,
        "true_ctr_high": true_ctr + true_half,
        "expected_reward": sum(r["expected_reward"] for r in rs),
        "regret": sum(regrets),
        "regret_per_impression": regret,
        "regret_per_impression_low": regret - regret_half,
        "regret_per_impression_high": regret + regret_half,
        "regret_by_quarter": _quarters(rs),
    }


def _srm(
    arms: Mapping[str, Mapping[str, Any]], shares: Mapping[str, float]
) -> dict[str, Any] | None:
    # decisions, shown or not: the split is of users, whatever the app then showed
    observed = [int(arms[a]["impressions"] + arms[a].get("never_shown", 0)) for a in shares]
    if len(shares) < 2 or sum(observed) == 0:
        return None
    result = srm_test(observed, list(shares.values()))
    return {"p_value": result.p_value, "flagged": bool(result.flagged)}


def _generation(
    arms: dict[str, dict[str, Any]],
    arm_rows: Mapping[str, list[dict[str, Any]]],
    segment_shares: Mapping[str, float],
) -> dict[str, Any] | None:
    """Full loop vs catalog bandit: what generation adds (None without a catalog arm)."""
    k, o = arms["catalog"], arms["optimized"]
    if not (k["impressions"] and o["impressions"]):
        return None
    cmp = compare_arms(
        control=(k["clicks"], k["impressions"]), treatment=(o["clicks"], o["impressions"])
    )
    k.update(ctr=cmp.control.rate, ctr_low=cmp.control.low, ctr_high=cmp.control.high)
    diff, half = _difference_interval(
        [r["p_click"] for r in arm_rows["optimized"]], [r["p_click"] for r in arm_rows["catalog"]]
    )
    strat, strat_low, strat_high = stratified_difference(
        [(r["segment"], r["p_click"]) for r in arm_rows["optimized"]],
        [(r["segment"], r["p_click"]) for r in arm_rows["catalog"]],
        segment_shares,
    )
    return {
        "lift": cmp.lift.estimate,
        "lift_low": cmp.lift.low,
        "lift_high": cmp.lift.high,
        "prob_full_loop_beats_catalog": cmp.prob_treatment_beats_control,
        "true_ctr_difference": diff,
        "true_ctr_difference_low": diff - half,
        "true_ctr_difference_high": diff + half,
        "true_lift": diff / k["true_ctr"] if k["true_ctr"] else None,
        "true_lift_low": (diff - half) / k["true_ctr"] if k["true_ctr"] else None,
        "true_lift_high": (diff + half) / k["true_ctr"] if k["true_ctr"] else None,
        # per segment, weighted by the audience (`stratify`): free of the arms' chance mixes
        "true_ctr_difference_stratified": strat,
        "true_ctr_difference_stratified_low": strat_low,
        "true_ctr_difference_stratified_high": strat_high,
    }


def _mean_interval(xs: list[float], z: float = 1.96) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation interval."""
    n = len(xs)
    if n == 0:
        return 0.0, 0.0
    m = sum(xs) / n
    if n == 1:
        return m, 0.0
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, z * math.sqrt(var / n)


def _difference_interval(a: list[float], b: list[float], z: float = 1.96) -> tuple[float, float]:
    ma, ha = _mean_interval(a, 1.0)
    mb, hb = _mean_interval(b, 1.0)
    return ma - mb, z * math.sqrt(ha**2 + hb**2)


def _best_by_segment(
    rows: list[dict[str, Any]],
    scenario: Scenario,
    truth: GroundTruth,
    creatives: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Per segment: best human creative vs best generated one (admitted for it), by true CTR."""
    attrs_of: dict[str, Mapping[str, Any]] = {
        cid: c.get("attributes", {})
        for cid, c in creatives.items()
        if c.get("origin") == "generated"
    }
    segment_of: dict[str, str | None] = {
        cid: c.get("segment") for cid, c in creatives.items() if c.get("origin") == "generated"
    }
    for r in rows:  # generated creatives seen only through Decide answers
        if r["origin"] == "generated" and r["creative_id"] not in attrs_of:
            attrs_of[r["creative_id"]] = r["attributes"]
            segment_of[r["creative_id"]] = r.get("segment_key")
    served = Counter((r["segment"], r["creative_id"]) for r in rows)
    out = []
    for seg in scenario.audience.segments:
        key = scenario.segment_key(seg)
        human = truth.best_catalog(seg.name)
        optimum = truth.optimum(seg.name)
        candidates = [
            (truth.p_click(seg.name, attrs_of[cid]), cid)
            for cid in attrs_of
            if segment_of.get(cid) in (None, "*", key)
        ]
        best_gen = max(candidates, default=None)
        out.append(
            {
                "segment": seg.name,
                "segment_key": key,
                "best_human": {"creative_id": human.creative_id, "true_ctr": human.p_click},
                "best_generated": {
                    "creative_id": best_gen[1],
                    "true_ctr": best_gen[0],
                    "impressions": served[(seg.name, best_gen[1])],
                }
                if best_gen
                else None,
                "optimum_true_ctr": optimum.p_click,
                "optimum_outside_catalog": optimum.p_click > human.p_click * 1.05,
                "generated_beats_human": bool(best_gen and best_gen[0] > human.p_click),
            }
        )
    return out


def time_series(rows: list[dict[str, Any]], bins: int = 20) -> dict[str, Any]:
    """Per-arm CTR (observed and true), cumulative regret and traffic share over time."""
    if not rows:
        return {"edges": [], "arms": {}, "share": {}}
    end = max(r["t"] for r in rows) or 1.0
    width = end / bins
    edges = [width * (i + 0.5) for i in range(bins)]
    out: dict[str, Any] = {"edges": edges, "arms": {}, "share": {}}
    for a in ARMS:
        n, clicks, p = [0] * bins, [0] * bins, [0.0] * bins
        cum_t, cum_regret, total = [], [], 0.0
        for r in rows:
            if r["arm"] != a:
                continue
            i = min(bins - 1, int(r["t"] / width))
            n[i] += 1
            clicks[i] += r["clicked"]
            p[i] += r["p_click"]
            total += r["oracle_reward"] - r["expected_reward"]
            cum_t.append(r["t"])
            cum_regret.append(total)
        out["arms"][a] = {
            "ctr": [clicks[i] / n[i] if n[i] else math.nan for i in range(bins)],
            "true_ctr": [p[i] / n[i] if n[i] else math.nan for i in range(bins)],
            "impressions": n,
            "cum_t": cum_t,
            "cum_regret": cum_regret,
        }
    per_bin: list[Counter[str]] = [Counter() for _ in range(bins)]
    for r in rows:
        if r["arm"] == "optimized":
            per_bin[min(bins - 1, int(r["t"] / width))][r["creative_id"]] += 1
    totals = Counter(r["creative_id"] for r in rows if r["arm"] == "optimized")
    top = [cid for cid, _ in totals.most_common(8)]
    share: dict[str, list[float]] = defaultdict(list)
    for counts in per_bin:
        total = sum(counts.values()) or 1
        for cid in top:
            share[cid].append(counts[cid] / total)
        share["other"].append(sum(v for k, v in counts.items() if k not in top) / total)
    out["share"] = dict(share)
    return out


def _quarters(rs: list[dict[str, Any]]) -> list[float | None]:
    if not rs:
        return [None] * 4
    end = max(r["t"] for r in rs) or 1.0
    buckets: list[list[float]] = [[], [], [], []]
    for r in rs:
        buckets[min(3, int(4 * r["t"] / end))].append(r["oracle_reward"] - r["expected_reward"])
    return [sum(b) / len(b) if b else None for b in buckets]


def _mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0
