"""The curator under `approval: required`, pins and blocks (no Kafka: records collected)."""

from __future__ import annotations

import time
from typing import Any

from services.common.review import reviewed
from services.inference.models import ModelBundle
from services.inference.settings import Settings
from services.inference.state import State
from tests.unit.inference import onnx_fixtures as fx
from tests.unit.inference.test_service_curator import _curator, settings  # noqa: F401
from tests.unit.inference.test_service_policy import _creative, _stats


async def _admit(cfg: Settings, **campaign: Any) -> tuple[Any, State, list[dict[str, Any]]]:
    seg = fx.SEGMENTS[0]
    state = State()
    state.apply_campaign("spring", fx.campaign(max_generated=3, **campaign))
    catalog = {"headline": "New in", "cta": "Shop", "font_scale": 1.0,
               "background": "#ffffff", "text_color": "#000000"}  # fmt: skip
    state.apply_creative("cat", {**_creative("cat", attributes=catalog), "campaign_id": "spring"})
    state.apply_stats(f"spring/{seg}/cat", {**_stats("cat", seg, 4000, 80),
                                            "campaign_id": "spring"})  # fmt: skip
    curator, published = _curator(cfg, state)
    curator.following = True
    now = time.time()  # the curator's clock (wall time in service, simulated in benches)
    for i in range(3000):  # a minute of optimized traffic, plenty of challenger slots
        curator._policy.traffic.hit(("spring", seg), now=now - 60 + i / 50)
    metadata = fx.metadata("m1")
    metadata["metrics"] = {"reward_auc": 0.8, "reward_ece": 0.005}
    bundle = ModelBundle.load(metadata, fx.generator(0), fx.reward_model(),
                              ["CPUExecutionProvider"])  # fmt: skip
    curator.models["spring"] = bundle
    await curator._add_candidates("spring", bundle)
    return curator, state, [r for r in published if r.get("segment") == seg]


async def test_required_approval_admits_pending_creatives_that_hold_their_slots(
    settings: Settings,  # noqa: F811
) -> None:
    curator, state, added = await _admit(settings, approval="required")
    seg = fx.SEGMENTS[0]
    assert added and all(r["status"] == "pending" for r in added)
    assert {c["creative_id"] for c in state.live_creatives("spring", seg)} == {"cat"}
    before = len(state.creatives)
    for _ in range(3):  # reviews come and go: the queue does not grow past the slots
        await curator.review_retirement()
        await curator._add_candidates("spring", curator.models["spring"], refill=True)
    assert len(state.creatives) == before
    an_hour_ago = int(time.time() * 1000) - 3_600_000  # waited in the queue past decide_s
    approved = reviewed({**added[0], "created_at": an_hour_ago}, "approve", by="ana", now=_now())
    state.apply_creative(approved["creative_id"], approved)
    assert approved["creative_id"] in {
        c["creative_id"] for c in state.live_creatives("spring", seg)
    }
    assert await curator._judge_challengers("spring") == []  # its clock starts at approval


async def test_auto_approval_admits_live_challengers_and_a_blocked_design_never_returns(
    settings: Settings,  # noqa: F811
) -> None:
    curator, state, added = await _admit(settings)
    assert added and all(r["status"] == "live" for r in added)
    for r in added:
        state.apply_creative(r["creative_id"], reviewed(r, "block", by="ana", now=_now()))
    for _ in range(3):
        await curator._add_candidates("spring", curator.models["spring"], refill=True)
    assert all(state.creatives[r["creative_id"]]["status"] == "blocked" for r in added)


async def test_a_paused_campaign_is_neither_curated_nor_judged(
    settings: Settings,  # noqa: F811
) -> None:
    curator, _, added = await _admit(settings, state="paused")
    assert added == []
    assert await curator.review_retirement() == 0


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
