"""The self-contained HTML report of a run: plots as inline PNGs, creatives as inline SVGs.

Opens without a network: every image is a `data:` URI inside the one file. SVGs come from
inference's `GET /v1/creatives/{id}.svg` during the run (the same renderer as the API) and are
embedded as images, never as markup, so nothing in them can run.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.simulator.report import measure, time_series
from services.simulator.result_table import LABELS, present_arms

__all__ = ["gallery_rows", "write_html"]

_COLORS = {"control": "#6b7280", "catalog": "#2563eb", "optimized": "#ea580c"}


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(
    rows: list[dict[str, Any]], names: Mapping[str, str], arms: list[str], rate: str = "CTR"
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = time_series(rows)
    out: dict[str, str] = {}
    if not ts["edges"]:
        return out
    x = ts["edges"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for a in arms:
        s, name = ts["arms"][a], LABELS[a]
        ax.plot(x, s["true_ctr"], color=_COLORS[a], label=f"{name}: true {rate} of what was served")
        ax.plot(x, s["ctr"], "o", color=_COLORS[a], alpha=0.5, ms=4, label=f"{name}: observed")
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel(rate)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    out["ctr"] = _png(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for a in arms:
        s = ts["arms"][a]
        if not s["cum_t"]:
            continue
        # x = the arm's own impressions, so arms with unequal traffic compare by slope
        name = LABELS[a]
        ax1.plot(range(1, len(s["cum_regret"]) + 1), s["cum_regret"], color=_COLORS[a], label=name)
        per = [r / (i + 1) for i, r in enumerate(s["cum_regret"])]
        ax2.plot(s["cum_t"], per, color=_COLORS[a], label=name)
    ax1.set_title("cumulative regret vs the oracle", fontsize=10)
    ax1.set_xlabel("impressions in the arm")
    ax2.set_title("regret per impression (running mean)", fontsize=10)
    ax2.set_xlabel("seconds into the run")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    out["regret"] = _png(fig)

    fig, ax = plt.subplots(figsize=(8, 3.8))
    share = ts["share"]
    labels = [names.get(k, k) for k in share]
    ax.stackplot(x, *share.values(), labels=labels, alpha=0.85)
    ax.set_ylim(0, 1)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel("share of optimized traffic")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    out["share"] = _png(fig)
    return out


def gallery_rows(
    rows: list[dict[str, Any]],
    creatives: Mapping[str, Mapping[str, Any]],
    result: Mapping[str, Any],
    limit: int = 10,
) -> list[dict[str, Any]]:
    """The creatives worth showing: most served, plus each segment's best generated/human."""
    served = Counter(r["creative_id"] for r in rows)
    want = [cid for cid, _ in served.most_common(limit)]
    for b in result.get("best", []):
        for key in ("best_generated", "best_human"):
            if b.get(key) and b[key]["creative_id"] not in want:
                want.append(b[key]["creative_id"])
    out = []
    for cid in want[: limit + 4]:
        rs = [r for r in rows if r["creative_id"] == cid]
        c = creatives.get(cid, {})
        out.append(
            {
                "creative_id": cid,
                "name": c.get("name") or cid,
                "origin": c.get("origin") or (rs[0]["origin"] if rs else "?"),
                "segment": c.get("segment"),
                "status": c.get("status", "?"),
                "impressions": len(rs),
                "clicks": sum(r["clicked"] for r in rs),
                "true_ctr": sum(r["p_click"] for r in rs) / len(rs) if rs else math.nan,
                "predicted_reward": c.get("predicted_reward"),
                "attributes": c.get("attributes") or (rs[0]["attributes"] if rs else {}),
            }
        )
    return out


def _rendering(body: str | bytes | None, name: str) -> str:
    """A creative's rendering inline: SVG text (a banner, a storyboard) as an image, WAV
    bytes (a music track) as an audio player."""
    if isinstance(body, bytes) and body[:4] == b"RIFF":
        data = base64.b64encode(body).decode()
        return f"<audio controls title='{name}' src='data:audio/wav;base64,{data}'></audio>"
    if isinstance(body, str) and body:
        data = base64.b64encode(body.encode()).decode()
        return f"<img alt='{name}' src='data:image/svg+xml;base64,{data}'>"
    return "<p class='muted'>(no rendering fetched)</p>"


def write_html(
    path: Path,
    result: Mapping[str, Any],
    rows: list[dict[str, Any]],
    creatives: Mapping[str, Mapping[str, Any]],
    svgs: Mapping[str, str | bytes],
) -> Path:
    names = {cid: _label(cid, c) for cid, c in creatives.items()}
    shown = present_arms(result)
    e = html.escape
    m = measure(result)
    rate, outcomes = e(m["rate"]), e(m["outcomes"])
    plots = _plots(rows, names, shown, m["rate"])
    arms, cmp, gen = result["arms"], result["comparison"], result.get("generation")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>admuse run — {e(result['campaign_id'])}</title><style>",
        "body{font-family:system-ui,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;"
        "color:#111}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;"
        "padding:4px 10px;text-align:right}th{background:#f3f4f6}td:first-child,th:first-child"
        "{text-align:left}.gallery{display:grid;grid-template-columns:repeat(auto-fill,"
        "minmax(320px,1fr));gap:16px}.card{border:1px solid #ddd;padding:8px;border-radius:6px}"
        ".card img{width:100%}.muted{color:#6b7280;font-size:0.9em}</style></head><body>",
        f"<h1>admuse run — {e(result['campaign_id'])}</h1>",
        f"<p class='muted'>{result['requests']:,} requests over {result['duration_s']:.0f} s, "
        f"{result['failed']:,} failed{_events_note(result)}.</p>",
        f"<h2>{e(' vs '.join(LABELS[a] for a in shown).capitalize())}</h2>"
        "<table><tr><th>policy</th><th>impressions</th><th>never shown</th>"
        f"<th>{outcomes}</th><th>{rate}</th><th>95% interval</th><th>true {rate}</th>"
        "<th>regret / impression</th></tr>",
    ]
    for a in shown:
        s = arms[a]
        parts.append(
            f"<tr><td>{e(LABELS[a])}</td><td>{s['impressions']:,}</td>"
            f"<td>{s.get('never_shown', 0):,}</td><td>{s['clicks']:,}</td>"
            f"<td>{_pct(s.get('ctr'))}</td><td>{_pct(s.get('ctr_low'))} – "
            f"{_pct(s.get('ctr_high'))}</td><td>{_pct(s['true_ctr'])}</td>"
            f"<td>{s['regret_per_impression']:.4f}</td></tr>"
        )
    parts.append("</table>")
    if gen:
        parts.append(
            f"<h3>What generation adds</h3><p>Full loop vs catalog bandit: relative lift "
            f"<b>{gen['lift']:+.1%}</b> (95% interval {gen['lift_low']:+.1%} to "
            f"{gen['lift_high']:+.1%}), probability the full loop beats the catalog bandit "
            f"<b>{gen['prob_full_loop_beats_catalog']:.3f}</b>; difference in true {rate} "
            f"{gen['true_ctr_difference']:+.3%} (95% interval {gen['true_ctr_difference_low']:+.3%}"
            f" to {gen['true_ctr_difference_high']:+.3%}).</p>"
        )
    if cmp:
        observed = ", ".join(
            f"{e(LABELS[a])} {cmp['observed_shares'][a]:.1%} (configured {v:.0%})"
            for a, v in cmp["expected_shares"].items()
        )
        srm_p = "-" if cmp["srm_p_value"] is None else f"{cmp['srm_p_value']:.3g}"
        parts.append(
            f"<p>Full loop vs control: relative lift <b>{cmp['lift']:+.1%}</b> (95% interval "
            f"{cmp['lift_low']:+.1%} to {cmp['lift_high']:+.1%}). Probability optimized beats "
            f"control: <b>{cmp['prob_optimized_beats_control']:.3f}</b>. Sample ratio: "
            f"{observed}, SRM p = {srm_p} ({'mismatch' if cmp['srm_flagged'] else 'ok'}).</p>"
        )
    cr = result["creatives"]
    parts.append(
        f"<p>Creatives: {cr['catalog']} made by people; {cr['generated_admitted']} generated and "
        f"admitted, {cr['generated_served']} served ({cr['generated_share_optimized']:.1%} of "
        f"optimized traffic); {cr['retired']} retired; {cr['models']} model version(s).</p>"
    )
    for key, title in (
        ("ctr", f"{rate} over time per arm"),
        ("regret", "Regret vs the oracle"),
        ("share", "Traffic share per creative over time (optimized arm)"),
    ):
        if key in plots:
            parts.append(
                f"<h2>{title}</h2><img alt='{e(title)}' src='data:image/png;base64,{plots[key]}'>"
            )
    parts.append(
        f"<h2>Best generated vs best human creative (true {rate})</h2><table><tr>"
        f"<th>segment</th><th>best human</th><th>true {rate}</th><th>best generated</th>"
        f"<th>true {rate}</th><th>optimum</th></tr>"
    )
    for b in result["best"]:
        g = b["best_generated"]
        parts.append(
            f"<tr><td>{e(b['segment'])}</td><td>{e(b['best_human']['creative_id'])}</td>"
            f"<td>{_pct(b['best_human']['true_ctr'])}</td>"
            f"<td>{e(g['creative_id']) if g else '(none)'}</td>"
            f"<td>{_pct(g['true_ctr']) if g else '-'}</td><td>{_pct(b['optimum_true_ctr'])}"
            f"{' (outside catalog)' if b['optimum_outside_catalog'] else ''}</td></tr>"
        )
    parts.append("</table><h2>Top creatives</h2><div class='gallery'>")
    for g in gallery_rows(rows, creatives, result):
        img = _rendering(svgs.get(g["creative_id"]), e(g["name"]))
        attrs = ", ".join(f"{e(str(k))}={e(str(v))}" for k, v in sorted(g["attributes"].items()))
        pred = g["predicted_reward"]
        for_segment = f", for {e(g['segment'])}" if g["segment"] else ""
        parts.append(
            f"<div class='card'>{img}<div><b>{e(g['name'])}</b> <span class='muted'>"
            f"{e(g['origin'])}, {e(g['status'])}{for_segment}"
            f"</span></div><div>{g['impressions']:,} impressions, {g['clicks']:,} {outcomes}, "
            f"true {rate} {_pct(g['true_ctr'])}"
            f"{f', predicted {pred:.2%}' if pred is not None else ''}</div>"
            f"<div class='muted'>{attrs}</div></div>"
        )
    parts.append("</div></body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _label(cid: str, creative: Mapping[str, Any]) -> str:
    if creative.get("origin") == "generated":
        return (
            f"{cid[:16]} (generated{', ' + creative['segment'] if creative.get('segment') else ''})"
        )
    return str(creative.get("name") or cid)


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2%}"


def _events_note(result: dict[str, Any]) -> str:
    """`; events: N written, M not written` when the run counted its events (escaped ints)."""
    ev = result.get("events")
    if not ev:
        return ""
    return (
        f"; events: {int(ev['events_sent']):,} written to Kafka, "
        f"{int(ev['events_unsent']):,} not written ({int(ev['clicks_unsent']):,} clicks)"
    )
