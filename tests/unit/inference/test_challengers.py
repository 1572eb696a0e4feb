"""The challenger budget: the slice is never exceeded, every challenger is decided in time
under the traffic the slice was sized for, and the model's prior is only as strong as its
held-out quality."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.inference.bandit import Arm, experiment_arm, prob_best
from services.inference.challengers import (
    PROMOTE,
    RETIRE,
    ChallengerBudget,
    RateMeter,
    earned_share,
    generated_calibration,
    honest_prior,
    is_challenger,
    mix_challengers,
    prior_strength,
    slice_weights,
)

shares = st.floats(0.0, 0.9)
ctrs = st.floats(0.001, 0.4)
rates = st.floats(0.1, 500.0)
budgets = st.builds(
    ChallengerBudget,
    share=st.floats(0.01, 0.9),
    decide_within_s=st.floats(10.0, 3600.0),
    precision=st.floats(0.1, 1.0),
)


@given(
    main=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12).filter(lambda m: sum(m) > 0),
    k=st.integers(0, 10),
    share=shares,
)
def test_challengers_never_get_more_than_the_slice(main: list[float], k: int, share: float) -> None:
    p = mix_challengers(np.array(main), k, share)
    assert len(p) == len(main) + k
    assert p.sum() == pytest.approx(1.0)
    assert (p >= 0).all()
    assert p[len(main) :].sum() <= share + 1e-9
    if k:  # each challenger the same share: none starves on the model's or early clicks' word
        assert np.allclose(p[len(main) :], share / k)
        # the proven creatives keep the main bandit's proportions
        assert np.allclose(p[: len(main)], (1 - share) * (np.array(main) / sum(main)))


@given(
    main=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=8),
    weights=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6),
    share=shares,
)
def test_weighted_challengers_use_at_most_their_slots_and_return_the_rest(
    main: list[float], weights: list[float], share: float
) -> None:
    p = mix_challengers(np.array(main), weights, share)
    k = len(weights)
    assert p.sum() == pytest.approx(1.0) and (p >= 0).all()
    assert np.allclose(p[len(main) :], share * np.array(weights) / k)  # never above share / k
    assert p[len(main) :].sum() <= share + 1e-9
    # what challengers leave goes back to the main bandit, in its own proportions
    left = 1 - share * sum(weights) / k
    assert np.allclose(p[: len(main)], left * np.array(main) / sum(main))


@settings(deadline=None)  # quadrature per example: slow on a loaded machine, not wrong
@given(
    best_ctr=st.floats(0.005, 0.3),
    best_n=st.integers(100, 100_000),
    ctr=st.floats(0.0, 1.0),
    n=st.integers(0, 20_000),
    prior=st.floats(0.0, 20.0),
)
def test_slice_weight_is_full_while_a_challenger_may_win_and_shrinks_as_it_loses(
    best_ctr: float, best_n: int, ctr: float, n: int, prior: float
) -> None:
    best = Arm("best", 1 + best_ctr * best_n, 1 + (1 - best_ctr) * best_n)
    s = ctr * n
    arm = Arm("c", prior * best_ctr + s + 1e-3, prior * (1 - best_ctr) + n - s + 1e-3)
    (w,) = slice_weights([arm], best)
    assert 0.05 <= w <= 1.0
    p_better = float(prob_best([arm, best])[0])
    if p_better >= 0.5:
        assert w == 1.0
    else:
        assert w == pytest.approx(max(0.05, 2 * p_better))
    assert slice_weights([arm], None).tolist() == [1.0]


@settings(max_examples=100, deadline=None)
@given(
    budget=budgets,
    ctr=st.floats(0.005, 0.3),
    clicks_share=st.floats(0.0, 1.0),
    frac=st.floats(0.0, 1.2),
    age=st.floats(0.0, 1.0),
)
def test_early_verdicts_only_on_clear_evidence(
    budget: ChallengerBudget, ctr: float, clicks_share: float, frac: float, age: float
) -> None:
    """Before its impressions and deadline a challenger is never promoted, retired only when
    its own data make it better than the best proven creative with P ≤ early, and never
    decided on less than `early_after` of the impressions it needs; with them in, promoted
    only at P ≥ promote_prob, retired only when not ahead."""
    best = Arm("best", 1 + ctr * 5000, 1 + (1 - ctr) * 5000)
    needed = budget.impressions_needed(ctr)
    n = int(frac * needed)
    s = min(n, 3 * ctr * n * clicks_share)
    t = age * budget.decide_within_s * 0.999
    verdict = budget.decide(s, n, t, best, ctr)
    p = budget.p_better(s, n, best)
    if n >= needed:  # its impressions are in: clear verdicts, or it keeps testing
        if verdict == PROMOTE:
            assert p >= budget.promote_prob
        elif verdict == RETIRE:
            assert p < 0.5
        else:
            assert 0.5 <= p < budget.promote_prob
        return
    assert verdict != PROMOTE
    if n < budget.early_after * needed:
        assert verdict is None
    elif verdict == RETIRE:
        assert p <= budget.early
    else:
        assert p > budget.early


@settings(max_examples=200, deadline=None)
@given(budget=budgets, rate=rates, ctr=ctrs, arrivals=st.integers(0, 10_000))
def test_every_challenger_is_decided_within_its_stated_time_at_the_assumed_traffic(
    budget: ChallengerBudget, rate: float, ctr: float, arrivals: int
) -> None:
    """Admit challengers into free slots only; the slice, served at the assumed rate, gives
    each challenger the impressions it needs before its deadline, and the deadline decides the
    rest whatever the evidence."""
    slots = budget.slots(rate, ctr)
    needed = budget.impressions_needed(ctr)
    assert slots * needed <= rate * budget.share * budget.decide_within_s + 1e-6
    if slots == 0:
        return
    # k ≤ slots live challengers each receive rate·share/k per second in expectation
    for k in range(1, slots + 1):
        t_decide = needed / (rate * budget.share / k)
        assert t_decide <= budget.decide_within_s * (1 + 1e-9)
    # the clock decides too: at the deadline a verdict comes with any evidence
    best = Arm("best", 1 + ctr * 1000, 1 + (1 - ctr) * 1000)
    few = min(arrivals, needed - 1)
    assert budget.decide(0, few, budget.decide_within_s, best, ctr) in (PROMOTE, RETIRE)
    # before it: no verdict, or an early retirement when no click is clearly worse already
    assert budget.decide(0, few, budget.decide_within_s * 0.5, best, ctr) in (None, RETIRE)
    if few < budget.early_after * needed:
        assert budget.decide(0, few, budget.decide_within_s * 0.5, best, ctr) is None


@settings(max_examples=20, deadline=None)
@given(
    budget=st.builds(
        ChallengerBudget, share=st.floats(0.05, 0.3), decide_within_s=st.floats(60, 600)
    ),
    rate=st.floats(5.0, 50.0),
    ctr=st.floats(0.01, 0.05),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_simulated_slice_decides_every_challenger_in_time(
    budget: ChallengerBudget, rate: float, ctr: float, seed: int
) -> None:
    """Poisson traffic at the assumed rate, one-second steps, admission into free slots,
    verdicts at reviews every 10 s (as the curator makes them): no challenger lives past its
    stated time plus one review and the slice's impressions never exceed its share of the
    traffic by more than sampling noise allows."""
    review = 10
    rng = np.random.default_rng(seed)
    slots = budget.slots(rate, ctr)
    best = Arm("best", 1 + ctr * 5000, 1 + (1 - ctr) * 5000)
    live: list[dict[str, float]] = []
    lifetimes: list[float] = []
    served_slice = served_total = 0
    horizon = int(3 * budget.decide_within_s)
    for t in range(horizon):
        while len(live) < slots:
            live.append({"born": t, "n": 0, "s": 0})
        requests = int(rng.poisson(rate))
        p = mix_challengers(np.array([1.0]), len(live), budget.share)
        picks = rng.choice(len(p), size=requests, p=p) if requests else np.array([], int)
        served_total += requests
        for i in picks[picks > 0]:
            c = live[int(i) - 1]
            c["n"] += 1
            c["s"] += int(rng.random() < ctr)
            served_slice += 1
        for c in list(live) if (t + 1) % review == 0 else []:
            verdict = budget.decide(c["s"], c["n"], t + 1 - c["born"], best, ctr)
            if verdict is not None:
                lifetimes.append(t + 1 - c["born"])
                live.remove(c)
    assert all(life <= math.ceil(budget.decide_within_s) + review for life in lifetimes)
    assert all(horizon - c["born"] <= math.ceil(budget.decide_within_s) + review for c in live)
    if served_total:
        sd = math.sqrt(served_total * budget.share * (1 - budget.share))
        assert served_slice <= budget.share * served_total + 5 * sd + 1


def test_no_traffic_no_challengers_and_more_traffic_more_slots() -> None:
    b = ChallengerBudget(share=0.2, decide_within_s=300)
    assert b.slots(0.0, 0.02) == 0
    assert b.slots(float("nan"), 0.02) == 0
    assert b.slots(1.0, 0.005) == 0  # 60 slice impressions cannot judge a 0.5 % CTR
    assert b.slots(100.0, 0.02) > b.slots(25.0, 0.02) >= 1
    assert b.slots(100.0, 0.10) > b.slots(100.0, 0.02)
    assert b.impressions_needed(0.02) == math.ceil(4 * 0.98 / (0.02 * 0.25))


def test_a_better_challenger_is_promoted_and_a_worse_one_retired() -> None:
    b = ChallengerBudget(share=0.2, decide_within_s=300)
    best = Arm("human", 1 + 200, 1 + 9800)  # 2 % over 10 000 impressions
    n = b.impressions_needed(0.02)
    assert b.decide(0.04 * n, n, 10, best, 0.02) == PROMOTE
    assert b.decide(0.005 * n, n, 10, best, 0.02) == RETIRE
    assert b.decide(0.04 * n / 8, n / 8, 10, best, 0.02) is None  # not enough evidence yet
    # sequential for losers: a clear loser is retired before all its impressions are in; a
    # clear winner still waits for them (repeated looks would promote lucky starts)
    assert b.decide(0, n / 2, 10, best, 0.02) == RETIRE
    assert b.decide(0.06 * n / 2, n / 2, 10, best, 0.02) is None
    assert b.decide(0.06 * n, n, 10, best, 0.02) == PROMOTE
    assert b.decide(0.02 * n / 2, n / 2, 10, best, 0.02) is None  # level: wait for the rest
    plain = ChallengerBudget(share=0.2, decide_within_s=300, early=0.0)
    assert plain.decide(0, n / 2, 10, best, 0.02) is None  # early=0: impressions or deadline


@given(
    auc=st.floats(0.0, 1.0),
    ece=st.floats(0.0, 1.0),
    level=st.floats(1e-4, 1.0),
    cap=st.floats(1.0, 100.0),
)
def test_prior_strength_follows_held_out_quality(
    auc: float, ece: float, level: float, cap: float
) -> None:
    m = {"reward_auc": auc, "reward_ece": ece, "predicted_reward_catalog": level}
    s = prior_strength(m, cap)
    assert 1.0 <= s <= cap
    if auc <= 0.5 or ece >= level:
        assert s == 1.0  # a model no better than chance, or as wrong as it is large, is mute
    better = prior_strength({**m, "reward_auc": min(1.0, auc + 0.1)}, cap)
    assert better >= s
    assert prior_strength({}, cap) == 1.0
    assert prior_strength({**m, "reward_auc": "x"}, cap) == 1.0


@given(predicted=st.floats(0.0, 1.0), strength=st.floats(1.0, 50.0), proven=ctrs)
def test_an_unproven_creative_never_outbids_a_proven_one_on_the_model_word(
    predicted: float, strength: float, proven: float
) -> None:
    best = Arm("human", proven * 400, (1 - proven) * 400)
    a, b = honest_prior(predicted, strength, [best])
    assert a + b == pytest.approx(strength)
    assert a / (a + b) <= max(proven, 0.001) + 1e-9


def test_stage_and_arms() -> None:
    assert is_challenger({"origin": "generated", "stage": "challenger"})
    assert is_challenger({"origin": "generated"})  # written before stages existed
    assert not is_challenger({"origin": "generated", "stage": "promoted"})
    assert not is_challenger({"origin": "catalog"})
    users = [f"u{i}" for i in range(20_000)]
    arms = [experiment_arm(u, "spring", 0.2, 0.3) for u in users]
    assert abs(arms.count("control") / len(users) - 0.2) < 0.02
    assert abs(arms.count("catalog") / len(users) - 0.3) < 0.02
    assert [experiment_arm(u, "spring", 0.2, 0.0) for u in users].count("catalog") == 0


def test_rate_meter_counts_requests_per_second() -> None:
    meter = RateMeter(window_s=10)
    for i in range(300):
        meter.hit("k", now=100.0 + i / 30)  # 30/s for 10 s
    assert meter.rate("k", now=110.0) == pytest.approx(30, rel=0.1)
    assert meter.rate("k", now=125.0) == 0.0
    assert meter.rate("other", now=110.0) == 0.0


def test_the_catalog_arm_serves_human_creatives_only_and_the_full_loop_bounds_challengers() -> None:
    from services.inference.policy import Policy
    from services.inference.state import State

    state = State()
    campaign = {"campaign_id": "c", "revision": 1, "segment_keys": [], "holdout_share": 0.2,
                "catalog_share": 0.3, "attribution_window_ms": 1000}  # fmt: skip
    state.apply_campaign("c", campaign)
    records = {"h1": ("catalog", None), "h2": ("catalog", None),
               "ch": ("generated", "challenger"), "pr": ("generated", "promoted")}  # fmt: skip
    for cid, (origin, stage) in records.items():
        record = {"creative_id": cid, "campaign_id": "c", "origin": origin, "segment": None,
                  "status": "live", "stage": stage, "attributes": {}, "prior_alpha": 1.0,
                  "prior_beta": 1.0}  # fmt: skip
        state.apply_creative(cid, record)
    policy = Policy(state, exploration_floor=0.1, n_draws=100, refresh_ms=0,
                    backoff_impressions=0, challenger_share=0.25, seed=3)  # fmt: skip
    seen: dict[str, set[str]] = {"control": set(), "catalog": set(), "optimized": set()}
    slice_props = []
    for i in range(3000):
        choice = policy.choose(state.campaigns["c"], "*", f"user{i}")
        seen[choice.arm].add(choice.creative["creative_id"])
        if choice.creative["creative_id"] == "ch":
            slice_props.append(choice.propensity)
    assert seen["control"] == seen["catalog"] == {"h1", "h2"}
    assert seen["optimized"] == {"h1", "h2", "ch", "pr"}
    # no evidence yet: the challenger may well win, so it uses its whole slot
    assert slice_props and all(p == pytest.approx(0.25) for p in slice_props)
    assert sum(policy.propensities(state.campaigns["c"], "*", "catalog").values()) == (
        pytest.approx(1.0)
    )
    assert policy.traffic.rate(("c", "*")) > 0  # the full loop's traffic sizes its slice


def _gen(stage: str | None, status: str = "live") -> dict[str, str | None]:
    return {"origin": "generated", "stage": stage, "status": status}


@given(promoted=st.integers(0, 30), retired=st.integers(0, 30), share=shares)
def test_the_slice_is_earned_by_winners_and_shrinks_with_losers(
    promoted: int, retired: int, share: float
) -> None:
    record = [_gen("promoted")] * promoted + [_gen("challenger", "retired")] * retired
    record += [_gen("challenger"), {"origin": "catalog", "status": "retired"}]  # not decided
    s = earned_share(share, record)
    assert 0.0 <= s <= share + 1e-12
    assert earned_share(share, [*record, _gen("promoted")]) >= s  # a winner never costs slice
    assert earned_share(share, [*record, _gen("challenger", "retired")]) <= s
    if retired <= promoted:
        assert s == pytest.approx(share)  # a generator that wins as often as not keeps it all
    assert earned_share(share, []) == pytest.approx(share)
    if promoted == 0 and retired == 6:
        assert s == pytest.approx(share / 4)


@given(
    rows=st.lists(
        st.tuples(st.floats(0.0, 0.5), st.floats(0.0, 1.0), st.integers(0, 5000)), max_size=10
    ),
    factor=st.floats(0.05, 1.0),
)
def test_the_model_word_on_generated_creatives_is_discounted_by_its_record(
    rows: list[tuple[float, float, int]], factor: float
) -> None:
    """Observed over predicted clicks, shrunk toward 1: exactly 1 without evidence or when the
    model was right, below 1 when generated creatives clicked less than it said."""
    assert generated_calibration([]) == 1.0
    right = [(p, p * n, n) for p, _, n in rows]
    assert generated_calibration(right) == pytest.approx(1.0)
    over = [(p, factor * p * n, n) for p, _, n in rows]
    rho = generated_calibration(over)
    assert factor - 1e-9 <= rho <= 1.0 + 1e-9
    lots = [(0.05, factor * 0.05 * 10_000_000, 10_000_000)]
    assert generated_calibration(lots) == pytest.approx(factor, rel=0.01)
    assert generated_calibration([(float("nan"), 1.0, 10), (0.1, 5.0, -1)]) == 1.0


@settings(max_examples=50, deadline=None)
@given(
    own=st.tuples(st.integers(0, 50), st.integers(50, 3000)),
    proven=st.lists(
        st.tuples(st.floats(0.005, 0.3), st.integers(10, 20_000)), min_size=1, max_size=6
    ),
)
def test_promotion_needs_to_beat_every_proven_creative_not_just_the_leader(
    own: tuple[int, int], proven: list[tuple[float, int]]
) -> None:
    """Against several proven creatives the challenger must beat their maximum, whose
    uncertainty counts: never more likely than beating the leader by mean alone."""
    arms = [Arm(f"h{i}", 1 + p * n, 1 + (1 - p) * n) for i, (p, n) in enumerate(proven)]
    leader = max(arms, key=lambda a: a.alpha / (a.alpha + a.beta))
    clicks, n = own
    b = ChallengerBudget()
    assert b.p_better(clicks, n, arms) <= b.p_better(clicks, n, leader) + 1e-3
    if b.decide(clicks, n, b.decide_within_s, arms, 0.02) == PROMOTE:
        assert b.p_better(clicks, n, arms) >= b.settle_prob - 1e-3


@given(budget=budgets, a=st.floats(0.0, 3.0), b=st.floats(0.0, 3.0))
def test_the_deadline_bar_is_stricter_the_less_of_its_sample_a_challenger_has(
    budget: ChallengerBudget, a: float, b: float
) -> None:
    """The normal bar with the planned impressions in (or more), stricter with fewer, and
    never impossible to retire against."""
    lo, hi = sorted((a, b))
    assert budget.settle_prob <= budget.settle_bar(hi) <= budget.settle_bar(lo) <= 1.0
    if lo >= 1.0:
        assert budget.settle_bar(lo) == pytest.approx(budget.settle_prob)


@settings(deadline=None)
@given(ctr=st.floats(0.005, 0.3), frac=st.floats(0.05, 1.5), lift=st.floats(0.0, 4.0))
def test_a_deadline_verdict_on_part_of_the_sample_promotes_only_past_the_stricter_bar(
    ctr: float, frac: float, lift: float
) -> None:
    """Harness, 2 %: mobile challengers reached the deadline with under half their sample and
    a 0.63× one was promoted on 3 clicks in 129 impressions. Before its sample is in, the
    deadline promotes only at P ≥ settle_bar(n / needed); with it in, at settle_prob."""
    b = ChallengerBudget(share=0.2, decide_within_s=300)
    best = Arm("best", 1 + ctr * 5000, 1 + (1 - ctr) * 5000)
    needed = b.impressions_needed(ctr)
    n = int(frac * needed)
    s = min(n, round(lift * ctr * n))
    verdict = b.decide(s, n, b.decide_within_s, best, ctr)
    p = b.p_better(s, n, best)
    assert verdict == (PROMOTE if p >= b.settle_bar(n / needed) else RETIRE)
    if n >= needed:
        assert verdict == (PROMOTE if p >= b.settle_prob else RETIRE)


def test_the_seed_7_loser_is_no_longer_promoted_on_half_its_sample() -> None:
    b = ChallengerBudget(share=0.2, decide_within_s=90, precision=1.0)
    human = Arm("human", 1 + 0.0138 * 3000, 1 + 0.9862 * 3000)
    needed = b.impressions_needed(0.0138)
    assert b.p_better(3, 129, human) >= b.settle_prob  # what promoted it
    assert b.decide(3, 129, 95, human, 0.0138) == RETIRE
    assert b.decide(3 * needed / 129, needed, 95, human, 0.0138) == PROMOTE  # same rate, all in
