"""The player against a stand-in Decide API (httpx transport): events, scoring, reproducibility."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.simulator.groundtruth import GroundTruth
from services.simulator.player import Player
from services.simulator.scenario import Delay, load_scenario


def decide_api(scenario_name: str = "e2e") -> httpx.MockTransport:
    scenario = load_scenario(scenario_name)
    seeds = scenario.campaign.seeds
    count = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-API-Key"] == "k"
        body = json.loads(request.content)
        count["n"] += 1
        if body["user_id"].endswith("7"):
            return httpx.Response(503, text="warming up")
        seed = seeds[hash(body["user_id"]) % len(seeds)]
        return httpx.Response(
            200,
            json={
                "decision_id": f"d{count['n']}",
                "campaign_id": body["campaign_id"],
                "creative_id": scenario.campaign.seed_id(seed),
                "propensity": 0.25,
                "arm": "control" if len(body["user_id"]) % 2 else "optimized",
                "policy": "uniform",
                "policy_version": "p1",
                "model_version": None,
                "segment": "device=x",
                "attributes": dict(seed.attributes),
            },
        )

    return httpx.MockTransport(handler)


async def play(
    tmp_path: Path,
    seed: int,
    shown_share: float = 1.0,
    transport: Any = None,
    keep: dict[str, Any] | None = None,
    name: str = "e2e",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    scenario = load_scenario(name)
    scenario = scenario.model_copy(
        update={"audience": scenario.audience.model_copy(update={"shown_share": shown_share})}
    )
    quick = Delay(median_s=0.05, sigma=0.5, max_s=0.2)  # clicks arrive fast: short test
    scenario = scenario.model_copy(
        update={"truth": scenario.truth.model_copy(update={"click_delay": quick})}
    )
    events: list[dict[str, Any]] = []

    async def send(key: bytes, value: bytes) -> None:
        event = json.loads(value)
        assert key == event["user_id"].encode()
        events.append(event)

    async with httpx.AsyncClient(
        transport=transport or decide_api(name), base_url="http://x", headers={"X-API-Key": "k"}
    ) as client:
        player = Player(
            scenario,
            client=client,
            send=send,
            results_path=tmp_path / f"r{seed}.jsonl",
            seed=seed,
            rate=200.0,
        )
        await player.run(duration_s=0.8, drain_s=5.0)
    if keep is not None:
        keep["stats"] = player.stats
    rows = [json.loads(line) for line in (tmp_path / f"r{seed}.jsonl").read_text().splitlines()]
    return rows, events


async def test_player_sends_contract_events_and_scores_every_answer(tmp_path: Path) -> None:
    rows, events = await play(tmp_path, seed=1)
    answered = [r for r in rows if "error" not in r]
    errors = [r for r in rows if "error" in r]
    assert len(answered) > 100
    assert errors and all(r["error"] == "http 503" for r in errors)
    impressions = [e for e in events if e["type"] == "impression"]
    clicks = [e for e in events if e["type"] == "click"]
    assert len(impressions) == len(answered)
    assert len(clicks) == sum(r["clicked"] for r in answered) > 0
    e = clicks[0]
    assert set(e) >= {
        "event_id",
        "type",
        "occurred_at",
        "campaign_id",
        "creative_id",
        "decision_id",
        "user_id",
        "consent",
        "context",
    }
    assert e["consent"] == {"personalization": True} and e["campaign_id"] == "e2e-loop"
    assert len({ev["event_id"] for ev in events}) == len(events)
    for r in answered:
        assert 0 < r["expected_reward"] <= r["oracle_reward"]
        assert r["best_catalog_reward"] <= r["oracle_reward"]
        assert r["origin"] == "catalog"
    # the ground truth never goes out: events carry no probabilities or oracle values
    assert not any(
        k in ev for ev in events for k in ("p_click", "oracle_reward", "expected_reward")
    )


@pytest.mark.slow
async def test_same_seed_same_users_and_outcomes(tmp_path: Path) -> None:
    a, _ = await play(tmp_path, seed=5)
    b, _ = await play(tmp_path, seed=5)
    c, _ = await play(tmp_path, seed=6)

    def key(rows: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
        return {r["n"]: (r.get("segment"), r.get("clicked"), r.get("error")) for r in rows}

    ka, kb = key(a), key(b)
    common = set(ka) & set(kb)
    assert len(common) > 100
    assert all(ka[n] == kb[n] for n in common)
    assert key(c) != ka


async def test_decisions_the_app_does_not_show_send_no_impression_and_no_click(
    tmp_path: Path,
) -> None:
    rows, events = await play(tmp_path, seed=2, shown_share=0.6)
    answered = [r for r in rows if "error" not in r]
    shown = [r for r in answered if r["shown"]]
    assert 0.4 * len(answered) < len(shown) < 0.8 * len(answered)
    assert len([e for e in events if e["type"] == "impression"]) == len(shown)
    assert not any(r["clicked"] for r in answered if not r["shown"])
    assert len({e["decision_id"] for e in events}) == len(shown)  # nothing for the others


async def test_a_paused_campaigns_answers_are_counted_and_send_no_events(tmp_path: Path) -> None:
    inner = decide_api()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["user_id"].endswith(("1", "3")):  # docs/contracts.md: a paused campaign
            return httpx.Response(200, json={
                "status": "paused", "decision_id": None, "campaign_id": body["campaign_id"],
                "creative_id": None, "segment": "*", "render_url": None, "attributes": {},
                "message": "paused"})  # fmt: skip
        return inner.handle_request(request)

    keep: dict[str, Any] = {}
    rows, events = await play(tmp_path, 3, transport=httpx.MockTransport(handler), keep=keep)
    stats = keep["stats"]
    assert stats.held["paused"] > 0 and not stats.errors.keys() - {"http 503"}
    assert len(rows) + stats.held["paused"] == stats.requests - stats.skipped
    assert None not in {e["decision_id"] for e in events}


async def test_events_kafka_did_not_take_are_counted_not_sent(tmp_path: Path) -> None:
    from services.common.producer import NotDelivered

    scenario = load_scenario("e2e")
    quick = Delay(median_s=0.05, sigma=0.5, max_s=0.2)
    scenario = scenario.model_copy(
        update={"truth": scenario.truth.model_copy(update={"click_delay": quick})}
    )
    tried: list[dict[str, Any]] = []

    async def send(key: bytes, value: bytes) -> None:
        event = json.loads(value)
        tried.append(event)
        if len(tried) % 3 == 0:  # the broker is away for every third event
            raise NotDelivered("raw: not acknowledged in time")

    async with httpx.AsyncClient(
        transport=decide_api(), base_url="http://x", headers={"X-API-Key": "k"}
    ) as client:
        player = Player(
            scenario, client=client, send=send, results_path=tmp_path / "r.jsonl", rate=200.0
        )
        stats = await player.run(duration_s=0.5, drain_s=5.0)
    log = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    failed = len(tried) // 3
    assert stats.events_unsent == failed > 10
    assert stats.events_sent == len(tried) - failed
    assert stats.errors["event not sent (NotDelivered)"] == failed
    assert len(log) == len(tried) and sum(not r["sent"] for r in log) == failed
    unsent_clicks = sum(1 for r in log if not r["sent"] and r["type"] == "click")
    assert stats.clicks_unsent == unsent_clicks
    assert {r["event_id"] for r in log} == {e["event_id"] for e in tried}


async def test_listeners_answer_with_the_music_domains_events(tmp_path: Path) -> None:
    rows, events = await play(tmp_path, seed=3, name="music")
    answered = [r for r in rows if "error" not in r]
    engaged = sum(r["clicked"] for r in answered)
    types = Counter(e["type"] for e in events)
    assert len(answered) > 100 and 0 < engaged < len(answered)
    assert "click" not in types and "conversion" not in types
    assert types["play"] == types["listen_through"] == types["impression"] == len(answered)
    assert types["skip"] == len(answered) - engaged and 0 < types["like"] <= engaged
    heard = {e["decision_id"]: e["value"] for e in events if e["type"] == "listen_through"}
    skipped = {e["decision_id"] for e in events if e["type"] == "skip"}
    assert all(0.8 <= f <= 1 for d, f in heard.items() if d not in skipped)
    assert all(0.05 <= heard[d] <= 0.35 for d in skipped)
    assert len({ev["event_id"] for ev in events}) == len(events)  # replays are not duplicates
    truth = GroundTruth(load_scenario("music"))
    for r in answered:  # the oracle counts in the reward the services learn from
        assert 0 < r["expected_reward"] <= r["oracle_reward"] <= 1
        p = truth.p_click(r["segment"], r["attributes"])
        idle, full = 0.6 * 0.2, 0.6 * 0.9 + 0.3 * 0.5 + 0.1 * 0.3  # the feedback model's means
        assert r["expected_reward"] == pytest.approx(idle + p * (full - idle), abs=0.005)
