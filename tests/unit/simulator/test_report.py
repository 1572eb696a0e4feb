"""The run result: numbers from results rows, the terminal table, the self-contained HTML."""

from __future__ import annotations

import base64
import io
import random
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from scipy.io import wavfile

from services.domains.music.synth import render_wav
from services.simulator.groundtruth import GroundTruth
from services.simulator.htmlreport import write_html
from services.simulator.report import analyze
from services.simulator.result_table import print_result
from services.simulator.scenario import load_scenario

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10"/></svg>'


def fake_run(n: int = 3000) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Control serves seeds uniformly; the catalog bandit the best seed; the full loop the best
    seed, later a generated one (arms split as the e2e scenario configures them)."""
    scenario = load_scenario("e2e")
    truth = GroundTruth(scenario)
    rng = random.Random(3)
    seeds = scenario.campaign.seeds
    generated = {
        "layout": "banner",
        "headline": "Save 30% today",
        "cta": "Shop now",
        "background": "#f97316",
        "font_scale": 1.7,
    }
    rows = []
    for i in range(n):
        seg = rng.choice(["mobile", "desktop"])
        u = rng.random()
        holdout, catalog = scenario.campaign.holdout_share, scenario.campaign.catalog_share
        arm = "control" if u < holdout else "catalog" if u < holdout + catalog else "optimized"
        t = i / 30
        if arm == "control":
            s = rng.choice(seeds)
            cid, attrs, origin = scenario.campaign.seed_id(s), dict(s.attributes), "catalog"
        elif arm == "optimized" and t > 50:
            cid, attrs, origin = "gen-1", generated, "generated"
        else:
            cid, attrs, origin = "e2e-loop-deal", dict(seeds[3].attributes), "catalog"
        p = truth.p_click(seg, attrs)
        rows.append(
            {
                "n": i,
                "t": t,
                "segment": seg,
                "segment_key": f"device={seg}",
                "arm": arm,
                "creative_id": cid,
                "origin": origin,
                "attributes": attrs,
                "p_click": p,
                "expected_reward": p,
                "oracle_reward": truth.optimum(seg).reward,
                "best_catalog_reward": truth.best_catalog(seg).reward,
                "clicked": rng.random() < p,
            }
        )
    creatives = {
        "gen-1": {
            "creative_id": "gen-1",
            "origin": "generated",
            "status": "live",
            "segment": None,
            "attributes": generated,
            "name": None,
            "predicted_reward": 0.4,
        }
    }
    return rows, creatives


def test_analysis_finds_the_lift_and_the_generated_winner() -> None:
    rows, creatives = fake_run()
    result = analyze(rows, load_scenario("e2e"), creatives=creatives, failed=4)
    arms, cmp = result["arms"], result["comparison"]
    assert arms["optimized"]["ctr"] > arms["control"]["ctr"]
    assert cmp["lift_low"] > 0 and cmp["prob_optimized_beats_control"] > 0.99
    assert not cmp["srm_flagged"]
    assert arms["optimized"]["regret"] < arms["control"]["regret"]
    gen = result["generation"]  # the generated winner beats the best seed after t = 50 s
    assert gen["true_ctr_difference_low"] > 0 and gen["lift"] > 0
    assert gen["lift_low"] < gen["lift"] < gen["lift_high"]
    assert arms["catalog"]["true_ctr_low"] < arms["catalog"]["true_ctr"]
    assert arms["optimized"]["regret_per_impression"] < arms["catalog"]["regret_per_impression"]
    assert result["creatives"]["generated_served"] == 1
    assert all(b["generated_beats_human"] for b in result["best"])
    assert result["requests"] == len(rows) + 4


@pytest.mark.parametrize("thinned", ["control", "catalog"])
def test_srm_is_flagged_when_the_split_is_off(thinned: str) -> None:
    rows, creatives = fake_run()
    skewed = [r for r in rows if r["arm"] != thinned or r["n"] % 3 == 0]
    result = analyze(skewed, load_scenario("e2e"), creatives=creatives)
    assert result["comparison"]["srm_flagged"]
    assert not analyze(rows, load_scenario("e2e"), creatives=creatives)["comparison"]["srm_flagged"]


@pytest.mark.slow
def test_terminal_table_and_self_contained_html(tmp_path: Path) -> None:
    rows, creatives = fake_run()
    result = analyze(rows, load_scenario("e2e"), creatives=creatives)
    console = Console(record=True, width=160)
    print_result(result, console, tmp_path / "report.html")
    text = console.export_text()
    assert "control vs catalog bandit vs full loop" in text and "relative lift" in text
    assert "what generation adds" in text and "SRM" in text
    assert "best generated vs best human" in text and "gen-1" in text
    page = write_html(tmp_path / "report.html", result, rows, creatives, {"gen-1": SVG})
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "What generation adds" in html and "catalog bandit" in html
    assert "data:image/svg+xml;base64," in html
    # no network needed: every src is inline
    assert not re.search(r"src=['\"](?!data:)", html)
    assert "<script" not in html


def test_music_tracks_play_inline_in_the_report(tmp_path: Path) -> None:
    rows, creatives = fake_run(600)
    result = analyze(rows, load_scenario("e2e"), creatives=creatives)
    wav = render_wav({"melody": "1:1 3:1 5:2", "tempo": 120, "key": 2})
    html = write_html(tmp_path / "r.html", result, rows, creatives, {"gen-1": wav}).read_text()
    (player,) = re.findall(r"<audio controls [^>]*src='data:audio/wav;base64,([^']+)'>", html)
    rate, pcm = wavfile.read(io.BytesIO(base64.b64decode(player)))
    assert rate == 22050 and len(pcm) == 2 * rate  # 4 beats at 120 bpm, playable as is


def test_events_rewarded_campaigns_are_judged_on_engagement_not_ctr(tmp_path: Path) -> None:
    """A music campaign's table and report name the rate engagement (its `clicked` is the
    latent engagement); a banner campaign's stay CTR."""
    rows, creatives = fake_run(600)
    banner = analyze(rows, load_scenario("e2e"), creatives=creatives)
    music = analyze(rows, load_scenario("music"), creatives=creatives)
    assert banner["measure"] == {"rate": "CTR", "outcomes": "clicks"}
    assert music["measure"] == {"rate": "engagement", "outcomes": "engaged"}
    for result, rate, other in (
        (banner, "true CTR", "engagement"),
        (music, "true engagement", "CTR"),
    ):
        console = Console(record=True, width=200)
        print_result(result, console)
        text = console.export_text()
        assert rate in text and other not in text
        page = write_html(tmp_path / "r.html", result, rows, creatives, {}).read_text()
        assert f"<th>{rate}</th>" in page and f"<th>{other}</th>" not in page
