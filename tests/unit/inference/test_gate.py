"""The lifecycle gate: what Decide answers for a campaign that is not active."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from services.inference.gate import Gate
from services.inference.state import State


def _creative(cid: str, **kw: Any) -> dict[str, Any]:
    return {"creative_id": cid, "campaign_id": "spring", "origin": "catalog", "status": "live",
            "segment": None, "attributes": {"headline": f"h-{cid}"}, **kw}  # fmt: skip


def _gate(*creatives: dict[str, Any]) -> tuple[Gate, CollectorRegistry]:
    state = State()
    for c in creatives:
        state.apply_creative(c["creative_id"], c)
    registry = CollectorRegistry()
    return Gate(state, registry), registry


def _count(registry: CollectorRegistry, status: str, creative: str) -> float:
    labels = {"campaign_id": "spring", "status": status, "api": "http", "creative": creative}
    return registry.get_sample_value("admuse_inference_held_answers_total", labels) or 0.0


def test_an_active_campaign_goes_to_the_policy() -> None:
    gate, _ = _gate(_creative("a"))
    assert gate.answer({"campaign_id": "spring", "state": "active"}, "*", "http") is None
    assert gate.answer({"campaign_id": "spring"}, "*", "http") is None  # older record


def test_paused_serves_the_fallback_without_a_decision() -> None:
    gate, registry = _gate(_creative("a"), _creative("b"))
    campaign = {"campaign_id": "spring", "state": "paused", "fallback_creative_id": "b"}
    out = gate.answer(campaign, "country=DE", "http")
    assert out is not None
    assert out["status"] == "paused" and out["decision_id"] is None
    assert out["creative_id"] == "b" and out["attributes"] == {"headline": "h-b"}
    assert out["render_url"] == "/v1/creatives/b.svg" and "paused" in out["message"]
    assert _count(registry, "paused", "fallback") == 1


def test_stopped_without_a_servable_fallback_names_no_creative() -> None:
    gate, registry = _gate(
        _creative("retired", status="retired"),
        _creative("gen", origin="generated"),
        _creative("fr", segment="country=FR"),
    )
    for fallback in (None, "retired", "gen", "fr", "missing"):
        campaign = {"campaign_id": "spring", "state": "stopped", "fallback_creative_id": fallback}
        out = gate.answer(campaign, "country=DE", "http")
        assert out is not None and out["status"] == "stopped", fallback
        assert out["creative_id"] is None and out["render_url"] is None and out["attributes"] == {}
        assert "no fallback creative" in out["message"]
    assert _count(registry, "stopped", "none") == 5


def test_pinned_creatives_hold_the_optimized_arm_only() -> None:
    from services.inference.bandit import ARM_CONTROL, ARM_OPTIMIZED, experiment_arm
    from services.inference.policy import Policy

    state = State()
    state.apply_campaign("spring", {"campaign_id": "spring", "revision": 2, "segment_keys": [],
                                    "holdout_share": 0.5, "attribution_window_ms": 1})  # fmt: skip
    for c in (_creative("a"), _creative("b"), _creative("g", origin="generated", stage="promoted")):
        state.apply_creative(c["creative_id"], c)
    policy = Policy(state, exploration_floor=0.0, n_draws=200, refresh_ms=0,
                    backoff_impressions=0, seed=3)  # fmt: skip
    users = [f"u{i}" for i in range(200)]
    arms = {u: experiment_arm(u, "spring", 0.5, 0.0) for u in users}
    campaign = state.campaigns["spring"]
    state.apply_creative("g", {**state.creatives["g"], "pinned": "*"})
    for u in users:
        choice = policy.choose(campaign, "*", u)
        if arms[u] == ARM_OPTIMIZED:
            assert choice.creative["creative_id"] == "g" and choice.propensity == 1.0
            assert choice.policy == "pinned" and choice.policy_version == "pinned-r2-k1"
        else:
            assert arms[u] == ARM_CONTROL and choice.policy == "uniform"
    state.apply_creative("a", {**state.creatives["a"], "pinned": "other-segment"})
    state.apply_creative("b", {**state.creatives["b"], "pinned": "*"})
    served = {policy.choose(campaign, "*", u).creative["creative_id"]
              for u in users if arms[u] == ARM_OPTIMIZED}  # fmt: skip
    assert served == {"b", "g"}  # two pins share the arm; a's pin is for another segment
    state.apply_creative("g", {**state.creatives["g"], "status": "blocked", "pinned": None})
    state.apply_creative("b", {**state.creatives["b"], "pinned": None})
    optimized = [policy.choose(campaign, "*", u) for u in users if arms[u] == ARM_OPTIMIZED]
    assert {c.policy for c in optimized} == {"thompson"}
    assert "g" not in {c.creative["creative_id"] for c in optimized}  # blocked: never again
