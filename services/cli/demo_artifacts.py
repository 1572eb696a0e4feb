"""What a demo run keeps beside its result: the top creatives' SVGs from inference and every
service's /metrics."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

__all__ = ["fetch_svgs", "save_metrics", "wanted"]


def wanted(run: Path, watch: Any, scen: Any) -> list[str]:
    from collections import Counter

    from services.simulator import load_results

    rows, _ = load_results(run / "results.jsonl")
    served = Counter(r["creative_id"] for r in rows)
    want = [cid for cid, _ in served.most_common(12)]
    want += [c["creative_id"] for c in watch.generated if c["creative_id"] not in want]
    want += [scen.campaign.seed_id(s) for s in scen.campaign.seeds]
    return list(dict.fromkeys(want))[:40]


async def fetch_svgs(stack: Any, ids: list[str]) -> dict[str, str | bytes]:
    """Each creative's rendering from inference's renderer, while it still runs: the SVG
    (banner, film storyboard), else the WAV (music) as bytes."""
    import httpx

    out: dict[str, str | bytes] = {}
    async with httpx.AsyncClient(
        base_url=stack.decide_url, timeout=5.0, headers={"X-API-Key": stack.api_key}
    ) as client:
        for cid in ids:
            with contextlib.suppress(httpx.HTTPError):
                resp = await client.get(f"/v1/creatives/{cid}.svg")
                if resp.status_code == 200 and resp.text.lstrip().startswith("<svg"):
                    out[cid] = resp.text
                elif resp.status_code == 404:
                    wav = await client.get(f"/v1/creatives/{cid}.wav")
                    if wav.status_code == 200 and wav.content[:4] == b"RIFF":
                        out[cid] = wav.content
    return out


async def save_metrics(stack: Any, run: Path) -> None:
    """Each HTTP service's /metrics at the end of the run, for diagnosis (Decide latency…)."""
    import httpx

    urls = {
        "inference": f"{stack.decide_url}/metrics",
        "ingestion": f"http://127.0.0.1:{stack.ingestion_port}/metrics",
        "features": f"http://127.0.0.1:{stack.features_port}/metrics",
    }
    async with httpx.AsyncClient(timeout=5.0, headers={"X-API-Key": stack.api_key}) as client:
        for name, url in urls.items():
            with contextlib.suppress(httpx.HTTPError, OSError):
                resp = await client.get(url)
                if resp.status_code == 200:
                    await asyncio.to_thread(
                        (run / "logs" / f"{name}.metrics.txt").write_text, resp.text
                    )
