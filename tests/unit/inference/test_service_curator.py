"""Retirement of losing creatives (no Kafka: the published records are collected)."""

from __future__ import annotations

from typing import Any

import pytest

from services.inference.curator import Curator
from services.inference.metrics import Metrics
from services.inference.models import ModelBundle
from services.inference.policy import Policy
from services.inference.settings import Settings
from services.inference.state import State
from tests.unit.inference.test_service_policy import SEG, _campaign, _creative, _stats


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ADMUSE_INFERENCE_API_KEYS", "k")
    monkeypatch.setenv("ADMUSE_PSEUDONYM_SECRET", "s")
    return Settings(retire_after_s=60, retire_check_s=30, retire_min_impressions=100)  # type: ignore[call-arg]


def _curator(settings: Settings, state: State) -> tuple[Curator, list[dict[str, Any]]]:
    published: list[dict[str, Any]] = []

    async def publish(key: str, record: dict[str, Any]) -> None:
        published.append(record)
        state.apply_creative(key, record)  # as the state follower would, reading it back

    policy = Policy(state, exploration_floor=0.0, n_draws=100, refresh_ms=0,
                    backoff_impressions=0)  # fmt: skip
    return Curator(settings, state, policy, Metrics(), publish, ["CPUExecutionProvider"]), published


async def test_a_persistent_loser_is_retired_after_the_patience(settings: Settings) -> None:
    state = State()
    state.apply_campaign("c", _campaign())
    rows = {"a": (1000, 50), "b": (1000, 40), "g1": (1000, 0), "g2": (1000, 60), "g3": (50, 0)}
    for cid, (n, clicks) in rows.items():
        origin, segment = ("catalog", None) if cid in "ab" else ("generated", SEG)
        state.apply_creative(cid, _creative(cid, origin, segment=segment))
        state.apply_stats(f"c/{SEG}/{cid}", _stats(cid, SEG, n, clicks))
    curator, published = _curator(settings, state)
    assert await curator.review_retirement() == 0  # below the threshold once: not yet
    assert await curator.review_retirement() == 1
    (retired,) = published
    assert retired["creative_id"] == "g1" and retired["status"] == "retired"
    assert retired["retired_at"] is not None
    assert "g1" not in {c["creative_id"] for c in state.live_creatives("c", SEG)}
    for _ in range(3):  # too few impressions (g3) or good enough (g2): kept
        await curator.review_retirement()
    assert [r["creative_id"] for r in published] == ["g1"]


async def test_catalog_creatives_stay_unless_the_campaign_allows_retiring_them(
    settings: Settings,
) -> None:
    state = State()
    state.apply_campaign("c", _campaign())
    for cid, clicks in (("a", 60), ("b", 50), ("bad", 0)):
        state.apply_creative(cid, _creative(cid))
        state.apply_stats(f"c/*/{cid}", _stats(cid, "*", 2000, clicks))
    curator, published = _curator(settings, state)
    for _ in range(3):
        await curator.review_retirement()
    assert published == []
    state.apply_campaign("c", _campaign(allow_retire_catalog=True))
    for _ in range(2):
        await curator.review_retirement()
    assert [r["creative_id"] for r in published] == ["bad"]


@pytest.mark.parametrize(("clicks", "replaced"), [(0, 2), (950, 0)])
async def test_a_new_model_replaces_weak_generated_creatives_when_the_segment_is_full(
    settings: Settings, clicks: int, replaced: int
) -> None:
    from tests.unit.inference import onnx_fixtures as fx

    seg = fx.SEGMENTS[0]
    state = State()
    state.apply_campaign("spring", fx.campaign(max_generated=2))
    catalog = {"headline": "New in", "cta": "Shop", "font_scale": 1.0,
               "background": "#ffffff", "text_color": "#000000"}  # fmt: skip
    state.apply_creative("cat", {**_creative("cat", attributes=catalog), "campaign_id": "spring"})
    for cid in ("old1", "old2"):
        old = {**_creative(cid, "generated", segment=seg, model_version="m0"),
               "campaign_id": "spring"}  # fmt: skip
        state.apply_creative(cid, old)
        state.apply_stats(f"spring/{seg}/{cid}", {**_stats(cid, seg, 1000, clicks),
                                                  "campaign_id": "spring"})  # fmt: skip
    curator, published = _curator(settings, state)
    curator.following = True
    bundle = ModelBundle.load(fx.metadata("m1"), fx.generator(0), fx.reward_model(),
                              ["CPUExecutionProvider"])  # fmt: skip
    curator.models["spring"] = bundle
    await curator._add_candidates("spring", bundle)
    retired = [r["creative_id"] for r in published if r["status"] == "retired"]
    added = [r for r in published if r["status"] == "live" and r.get("segment") == seg]
    assert sorted(retired) == ["old1", "old2"][:replaced]
    assert len(added) == replaced and all(r["model_version"] == "m1" for r in added)
    own = [c for c in state.live_creatives("spring", seg) if c["origin"] == "generated"
           and c.get("segment") == seg]  # fmt: skip
    assert len(own) == 2  # never more than max_generated
