"""Retirement of losing creatives, the challenger budget's admissions and verdicts (no Kafka:
the published records are collected)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from services.inference.challengers import ChallengerBudget, slice_weights
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


def _curator(
    settings: Settings, state: State, seed: int | None = None
) -> tuple[Curator, list[dict[str, Any]]]:
    published: list[dict[str, Any]] = []

    async def publish(key: str, record: dict[str, Any]) -> None:
        published.append(record)
        state.apply_creative(key, record)  # as the state follower would, reading it back

    policy = Policy(state, exploration_floor=0.0, n_draws=100, refresh_ms=0,
                    backoff_impressions=0, challenger_share=settings.challenger_share)  # fmt: skip
    curator = Curator(settings, state, policy, Metrics(), publish, ["CPUExecutionProvider"],
                      seed=seed)  # fmt: skip
    return curator, published


async def test_a_persistent_loser_is_retired_after_the_patience(settings: Settings) -> None:
    state = State()
    state.apply_campaign("c", _campaign())
    rows = {"a": (1000, 50), "b": (1000, 40), "g1": (1000, 0), "g2": (1000, 60), "g3": (50, 0)}
    for cid, (n, clicks) in rows.items():
        origin, segment = ("catalog", None) if cid in "ab" else ("generated", SEG)
        state.apply_creative(cid, _creative(cid, origin, segment=segment, stage="promoted"))
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


async def test_challengers_are_promoted_or_retired_on_their_own_evidence_or_the_clock(
    settings: Settings,
) -> None:
    """Judged apart from the main bandit: enough impressions decide (better than the best
    proven creative: promoted; worse: retired); too few wait for the deadline."""
    state = State()
    state.apply_campaign("c", _campaign())
    now_ms = int(time.time() * 1000)
    needed = ChallengerBudget().impressions_needed(450 / 10_000)  # pooled proven CTR
    rows = {"a": (5000, 250, 0), "b": (5000, 200, 0), "win": (needed, 0.09 * needed, 0),
            "lose": (needed, 0.01 * needed, 0), "young": (20, 0, 0),
            "old": (20, 0, 10_000)}  # fmt: skip
    for cid, (n, clicks, age_s) in rows.items():
        origin, segment = ("catalog", None) if cid in "ab" else ("generated", SEG)
        created = now_ms - age_s * 1000
        state.apply_creative(cid, _creative(cid, origin, segment=segment, stage="challenger",
                                            created_at=created))  # fmt: skip
        state.apply_stats(f"c/{SEG}/{cid}", _stats(cid, SEG, n, int(clicks)))
    curator, published = _curator(settings, state)
    assert curator.budget.decide_within_s < 10_000
    await curator.review_retirement()
    verdicts = {r["creative_id"]: (r["status"], r.get("stage")) for r in published}
    assert verdicts == {"win": ("live", "promoted"), "lose": ("retired", "challenger"),
                        "old": ("retired", "challenger")}  # fmt: skip
    live = {c["creative_id"] for c in state.live_creatives("c", SEG)}
    assert live == {"a", "b", "win", "young"}
    policy = curator._policy
    props = policy.propensities(state.campaigns["c"], SEG)
    # the promoted one competes in the main bandit; the young challenger gets at most the
    # slice, in proportion to its chance of beating the best proven creative
    young = policy.arms("c", SEG, [state.creatives["young"]])
    best = max(policy.arms("c", SEG, [state.creatives[c] for c in ("a", "b", "win")]),
               key=lambda a: a.alpha / (a.alpha + a.beta))  # fmt: skip
    weight = slice_weights(young, best)[0]
    assert 0 < weight <= 1
    # the slice this campaign earned: 1 promoted, 2 retired → q = 2/5 → 80 % of the share
    assert policy.challenger_share("c") == pytest.approx(settings.challenger_share * 0.8)
    assert props["young"] == pytest.approx(policy.challenger_share("c") * weight)
    assert props["win"] > props["b"]


@pytest.mark.parametrize("rate", [0.0, 2.0, 50.0])
async def test_challengers_are_admitted_only_into_free_slots_with_an_honest_prior(
    settings: Settings, rate: float
) -> None:
    from tests.unit.inference import onnx_fixtures as fx

    seg = fx.SEGMENTS[0]
    state = State()
    state.apply_campaign("spring", fx.campaign(max_generated=3))
    catalog = {"headline": "New in", "cta": "Shop", "font_scale": 1.0,
               "background": "#ffffff", "text_color": "#000000"}  # fmt: skip
    state.apply_creative("cat", {**_creative("cat", attributes=catalog), "campaign_id": "spring"})
    state.apply_stats(f"spring/{seg}/cat", {**_stats("cat", seg, 4000, 80),
                                            "campaign_id": "spring"})  # fmt: skip
    curator, published = _curator(settings, state)
    curator.following = True
    now = time.time()  # the curator's clock
    for i in range(int(rate * 60)):  # a minute of optimized traffic at `rate` per second
        curator._policy.traffic.hit(("spring", seg), now=now - 60 + i / rate)
    slots = curator.challenger_slots("spring", seg)
    assert slots == curator.budget.slots(curator.segment_rate("spring", seg), 0.02)
    metadata = fx.metadata("m1")
    metadata["metrics"] = {"reward_auc": 0.8, "reward_ece": 0.005,
                           "predicted_reward_catalog": 0.02}  # fmt: skip
    bundle = ModelBundle.load(metadata, fx.generator(0), fx.reward_model(),
                              ["CPUExecutionProvider"])  # fmt: skip
    curator.models["spring"] = bundle
    await curator._add_candidates("spring", bundle)
    added = [r for r in published if r.get("segment") == seg]
    assert len(added) == min(slots, 3, settings.n_admit)
    if rate == 0.0:
        assert added == []  # no traffic measured: nothing could be judged in time
    if rate == 50.0:
        assert added
    bar = float(bundle.score(seg, [catalog])[0])  # the model's word on the incumbent
    for r in added:
        assert r["predicted_reward"] > bar  # only what the model expects to beat it is tested
        assert r["stage"] == "challenger" and r["status"] == "live"
        strength = r["prior_alpha"] + r["prior_beta"]
        assert strength == pytest.approx(20 * 0.6 * 0.75)  # cap · gini · calibration
        assert r["prior_alpha"] / strength <= 81 / 4002 + 1e-9  # never above the proven mean
    before = len(published)
    await curator._add_candidates("spring", bundle, refill=True)
    assert len(published) == before  # the slots are full until a challenger is decided


async def test_the_model_word_on_generated_creatives_is_discounted_by_their_record(
    settings: Settings,
) -> None:
    """Generated creatives that clicked at a tenth of what the model said: the next model's
    candidates must clear the incumbent bar at a tenth of their predicted reward, so the
    slice's traffic is not spent on the model's over-confidence again."""
    from tests.unit.inference import onnx_fixtures as fx

    seg = fx.SEGMENTS[0]
    state = State()
    state.apply_campaign("spring", fx.campaign(max_generated=3))
    catalog = {"headline": "New in", "cta": "Shop", "font_scale": 1.0,
               "background": "#ffffff", "text_color": "#000000"}  # fmt: skip
    state.apply_creative("cat", {**_creative("cat", attributes=catalog), "campaign_id": "spring"})
    state.apply_stats(f"spring/{seg}/cat", {**_stats("cat", seg, 4000, 80),
                                            "campaign_id": "spring"})  # fmt: skip
    for i in range(4):  # earlier challengers: predicted 10 %, clicked 1 % over 2,000 each
        cid = f"old{i}"
        state.apply_creative(cid, {**_creative(cid, "generated", segment=seg, status="retired",
                                               stage="challenger", predicted_reward=0.10),
                                   "campaign_id": "spring"})  # fmt: skip
        state.apply_stats(f"spring/{seg}/{cid}", {**_stats(cid, seg, 2000, 20),
                                                  "campaign_id": "spring"})  # fmt: skip
    curator, published = _curator(settings, state)
    curator.following = True
    assert curator.generated_calibration("spring") == pytest.approx((80 + 5) / (800 + 5))
    assert curator.generated_calibration("nobody") == 1.0
    now = time.time()
    for i in range(50 * 60):
        curator._policy.traffic.hit(("spring", seg), now=now - 60 + i / 50)
    metadata = fx.metadata("m1")
    metadata["metrics"] = {"reward_auc": 0.8, "reward_ece": 0.005,
                           "predicted_reward_catalog": 0.02}  # fmt: skip
    bundle = ModelBundle.load(metadata, fx.generator(0), fx.reward_model(),
                              ["CPUExecutionProvider"])  # fmt: skip
    curator.models["spring"] = bundle
    await curator._add_candidates("spring", bundle)
    bar = float(bundle.score(seg, [catalog])[0])
    # the record of the model about to be trusted: its own word on the earlier challengers
    rho = curator.generated_calibration("spring", bundle)
    said = sum(float(bundle.score(seg, [state.creatives[f"old{i}"]["attributes"]])[0]) * 2000
               for i in range(4))  # fmt: skip
    assert rho == pytest.approx((80 + 5) / (said + 5))
    for r in published:
        # the discounted word still beats the incumbent, up to the margin
        assert rho * r["predicted_reward"] > bar * (1 - settings.incumbent_margin)
        assert r["prior_alpha"] / (r["prior_alpha"] + r["prior_beta"]) <= 81 / 4002 + 1e-9


def test_slots_are_sized_at_the_ctr_of_the_bandits_incumbent(settings: Settings) -> None:
    """Not at the pooled CTR, which also counts the bandit's exploration of weak creatives:
    a challenger worth promoting clicks at least as often as the incumbent."""
    state = State()
    state.apply_campaign("c", _campaign())
    for cid, n, clicks in (("a", 4000, 80), ("b", 400, 2)):
        state.apply_creative(cid, _creative(cid))
        state.apply_stats(f"c/{SEG}/{cid}", _stats(cid, SEG, n, clicks))
    curator, _ = _curator(settings, state)
    assert curator.segment_ctr("c", SEG) == pytest.approx(0.02)
    assert curator.segment_ctr("c", "nobody") == 0.0


async def test_a_seeded_curator_proposes_the_same_creatives(settings: Settings) -> None:
    from tests.unit.inference import onnx_fixtures as fx

    seg = fx.SEGMENTS[0]
    runs = []
    for _ in range(2):
        state = State()
        state.apply_campaign("spring", fx.campaign(max_generated=3))
        catalog = {"headline": "New in", "cta": "Shop", "font_scale": 1.0,
                   "background": "#ffffff", "text_color": "#000000"}  # fmt: skip
        state.apply_creative("cat", {**_creative("cat", attributes=catalog),
                                     "campaign_id": "spring"})  # fmt: skip
        state.apply_stats(f"spring/{seg}/cat", {**_stats("cat", seg, 4000, 80),
                                                "campaign_id": "spring"})  # fmt: skip
        curator, published = _curator(settings, state, seed=3)
        curator.following = True
        now = time.time()
        for i in range(50 * 60):
            curator._policy.traffic.hit(("spring", seg), now=now - 60 + i / 50)
        bundle = ModelBundle.load(fx.metadata("m1"), fx.generator(0), fx.reward_model(),
                                  ["CPUExecutionProvider"])  # fmt: skip
        curator.models["spring"] = bundle
        await curator._add_candidates("spring", bundle)
        runs.append([r["attributes"] for r in published])
    assert runs[0] and runs[0] == runs[1]


def test_each_decided_challenger_counts_for_the_search_it_lies_in(settings: Settings) -> None:
    """Promoted and retired challengers are the record of their proposal search: within two
    attributes of a proven creative of their segment local, further global; those still being
    judged count for neither."""
    from tests.unit.inference import onnx_fixtures as fx

    seg = fx.SEGMENTS[0]
    state = State()
    state.apply_campaign("spring", fx.campaign())
    catalog = {"headline": "New in", "cta": "Shop", "font_scale": 1.0,
               "background": "#ffffff", "text_color": "#000000"}  # fmt: skip
    state.apply_creative("cat", {**_creative("cat", attributes=catalog), "campaign_id": "spring"})
    near = {**catalog, "font_scale": 1.4, "background": "#fafafa"}
    far = {**near, "headline": "Last chance", "cta": "Learn more", "text_color": "#202020"}
    cases = [("won", near, "promoted", "live"), ("lost-near", near | {"font_scale": 0.9},
             "challenger", "retired"), ("lost-far", far, "challenger", "retired"),
             ("judged", far | {"font_scale": 1.7}, "challenger", "live")]  # fmt: skip
    for cid, attrs, stage, status in cases:
        record = _creative(cid, "generated", segment=seg, status=status, stage=stage,
                           attributes=attrs)  # fmt: skip
        state.apply_creative(cid, {**record, "campaign_id": "spring"})
    curator, _ = _curator(settings, state)
    # "won" is proven now, but is judged against the others: one attribute from "cat"
    assert curator.search_record("spring") == {"local": (1, 1), "global": (0, 1)}
    assert curator.search_record("nobody") == {"local": (0, 0), "global": (0, 0)}
    # a decided challenger keeps the search it was read as, whatever is proven later
    state.apply_creative("later", {**_creative("later", segment=seg, attributes=far),
                                   "campaign_id": "spring"})  # fmt: skip
    assert curator.search_record("spring") == {"local": (1, 1), "global": (0, 1)}
