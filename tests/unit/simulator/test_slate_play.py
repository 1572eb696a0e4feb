"""The player shows film previews as slates against a uniform-logging stand-in Decide API, and
the votes it sends carry the truth's preference through `vote_value` (domains/film/votes.py)."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.domains.film.votes import Slot, vote_value
from services.simulator.app import summary_of
from services.simulator.groundtruth import GroundTruth
from services.simulator.live import LiveStats
from services.simulator.player import Player
from services.simulator.scenario import Delay, Scenario, load_scenario
from services.simulator.slates import vote_chance


def film(slate: int, base_logit: float = -2.0) -> Scenario:
    """The film scenario, short delays; a higher base logit gives more votes per second."""
    s = load_scenario("film")
    quick = Delay(median_s=0.05, sigma=0.5, max_s=0.2)
    truth = s.truth.model_copy(update={"click_delay": quick, "base_logit": base_logit})
    audience = s.audience.model_copy(update={"slate": slate})
    return s.model_copy(update={"truth": truth, "audience": audience})


def uniform_decide(scenario: Scenario, fail_every: int = 0) -> httpx.MockTransport:
    """Each call draws a catalog cut uniformly (propensity 1/3), whoever asks; every
    `fail_every`-th call answers 503."""
    seeds, rng, count = scenario.campaign.seeds, random.Random(7), Counter[str]()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        count["n"] += 1
        if fail_every and count["n"] % fail_every == 0:
            return httpx.Response(503, text="warming up")
        seed = rng.choice(seeds)
        return httpx.Response(200, json={
            "decision_id": f"d{count['n']}", "campaign_id": body["campaign_id"],
            "creative_id": scenario.campaign.seed_id(seed), "propensity": 1 / len(seeds),
            "arm": "optimized", "policy": "uniform", "policy_version": "p1",
            "model_version": None, "segment": "audience=x", "attributes": dict(seed.attributes),
        })  # fmt: skip

    return httpx.MockTransport(handler)


async def play(
    tmp_path: Path, scenario: Scenario, fail_every: int = 0, duration_s: float = 0.8
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], LiveStats]:
    events: list[dict[str, Any]] = []

    async def send(key: bytes, value: bytes) -> None:
        events.append(json.loads(value))

    transport = uniform_decide(scenario, fail_every)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        player = Player(
            scenario, client=client, send=send, results_path=tmp_path / "r.jsonl", rate=300.0
        )
        stats = await player.run(duration_s=duration_s, drain_s=5.0)
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    return rows, events, stats


async def test_a_slate_gets_at_most_one_vote_for_an_engaged_slot_of_its_own(
    tmp_path: Path,
) -> None:
    scenario = film(2, base_logit=0.0)
    rows, events, stats = await play(tmp_path, scenario, fail_every=9)
    answered = [r for r in rows if "error" not in r]
    by_slate: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in answered:
        by_slate[r["slate"]].append(r)
    row_of = {r["decision_id"]: r for r in answered}
    votes = [e for e in events if e["type"] == "vote"]
    assert len(votes) == stats.votes > 20
    per_slate = Counter(row_of[v["decision_id"]]["slate"] for v in votes)
    assert max(per_slate.values()) == 1  # one vote per viewer
    for v in votes:
        winner = row_of[v["decision_id"]]
        assert winner["voted"] and winner["clicked"] and winner["shown"]
        assert winner["slate_shown"] >= 2 and v["creative_id"] == winner["creative_id"]
    assert sum(r["voted"] for r in answered) == len(votes)
    # viewers who engaged with some slot of a two-slot preview all voted
    engaged = [s for s in by_slate.values() if len(s) == 2 and any(r["clicked"] for r in s)]
    assert len(engaged) == len(votes)
    # a failed Decide leaves its slot out: that viewer saw one variant and cast no vote
    errors = [r for r in rows if "error" in r]
    assert errors and all(r["error"] == "http 503" and r["slot"] in (0, 1) for r in errors)
    short = [s for s in by_slate.values() if len(s) < 2]
    assert short and not any(r["voted"] for s in short for r in s)
    assert stats.slates_short == len(short) + sum(
        1 for n in {r["n"] for r in errors} if n not in by_slate
    )
    assert summary_of(stats)["slates"] == {
        "previews": stats.slates,
        "short": stats.slates_short,
        "votes": len(votes),
    }
    # every shown slot sends its own watch_through; event ids stay unique across slots
    watched = Counter(e["decision_id"] for e in events if e["type"] == "watch_through")
    assert set(watched) == {r["decision_id"] for r in answered} and max(watched.values()) == 1
    assert len({e["event_id"] for e in events}) == len(events)
    # the truth of a slot is its reward against the slot(s) it was shown beside
    truth = GroundTruth(scenario)
    for slate in by_slate.values():
        for r in slate:
            rivals = [o["p_click"] for o in slate if o is not r]
            assert r["expected_reward"] == pytest.approx(
                truth.slate_reward(r["p_click"], rivals), abs=1e-5
            )
            assert r["expected_reward"] <= r["best_catalog_reward"] + 1e-6 <= r["oracle_reward"]


async def test_the_votes_carry_the_truths_preference_to_the_estimator(tmp_path: Path) -> None:
    """Uniform logging over the three cuts; by IPS on the simulated votes, a policy that
    always shows each segment's truly best cut wins more of the vote than one showing the
    worst."""
    scenario = film(2, base_logit=0.0)
    rows, events, _ = await play(tmp_path, scenario, duration_s=1.0)
    answered = [r for r in rows if "error" not in r]
    chosen = {e["decision_id"] for e in events if e["type"] == "vote"}
    slates: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in answered:
        slates[r["slate"]].append(r)
    votes = []
    for slate in slates.values():
        slots = [Slot(r["decision_id"], r["creative_id"], r["propensity"], r["segment"])
                 for r in slate]  # fmt: skip
        winner = [s.decision_id for s in slots if s.decision_id in chosen]
        assert len(winner) <= 1  # the vote names a slot of its own slate
        votes.append((slots, winner[0] if winner else None))
    assert len(votes) > 150 and sum(w is not None for _, w in votes) > 50
    truth = GroundTruth(scenario)
    spec = scenario.campaign
    best = {seg: truth.best_catalog(seg).creative_id for seg in truth.segments}
    worst = {
        seg: min(spec.seeds, key=lambda s, seg=seg: truth.p_click(seg, s.attributes))
        for seg in truth.segments
    }
    worst_id = {seg: spec.seed_id(s) for seg, s in worst.items()}
    assert all(best[seg] != worst_id[seg] for seg in best)
    v_best = vote_value(votes, lambda seg, c: float(c == best[seg]))
    v_worst = vote_value(votes, lambda seg, c: float(c == worst_id[seg]))
    assert v_best.ips > v_worst.ips and v_best.snips > v_worst.snips
    # and each estimate covers the policy's true vote share against uniform opponents
    shares = dict(zip([s.name for s in scenario.audience.segments], scenario.shares(), strict=True))
    for policy, est in ((best, v_best), (worst_id, v_worst)):
        true = 0.0
        for seg, share in shares.items():
            p = {spec.seed_id(s): truth.p_click(seg, s.attributes) for s in spec.seeds}
            mine = p[policy[seg]]
            true += share * sum(mine * vote_chance(mine, [o]) for o in p.values()) / len(p)
        lo, hi = est.interval(2.576)
        assert lo <= true <= hi, (policy, true, est)


async def test_slate_one_keeps_the_single_variant_preview(tmp_path: Path) -> None:
    """With slate 1 an engaged viewer votes for the one variant shown, as before slates."""
    rows, events, stats = await play(tmp_path, film(1, base_logit=0.0), duration_s=0.5)
    answered = [r for r in rows if "error" not in r]
    assert answered and not any({"slate", "slot", "voted"} & set(r) for r in answered)
    voted = {e["decision_id"] for e in events if e["type"] == "vote"}
    assert voted == {r["decision_id"] for r in answered if r["clicked"]} != set()
    assert stats.slates == stats.votes == 0 and "slates" not in summary_of(stats)
    truth = GroundTruth(film(1, base_logit=0.0))
    for r in answered:
        assert r["expected_reward"] == pytest.approx(
            truth.expected_reward(r["segment"], r["attributes"]), abs=1e-5
        )
