"""OPE estimators: pinned on a hand-computed log, checked against a naive per-row reference, and
their intervals' coverage measured over 200 synthetic logs with a known true value."""

from __future__ import annotations

import numpy as np
import pytest

from services.analysis import LoggedData, SupportThresholds, evaluate
from services.analysis.policies import TargetPolicy, fixed, from_distribution, uniform

NO_REFUSAL = SupportThresholds(min_ess=0, max_unsupported_mass=1.0)


def _coded(context, action, reward, propensity, n_contexts, n_actions) -> LoggedData:
    n = len(reward)
    return LoggedData(
        context=np.asarray(context, dtype=np.int32),
        contexts=tuple(f"x={i}" for i in range(n_contexts)),
        action=np.asarray(action, dtype=np.int32),
        actions=tuple(f"c{i}" for i in range(n_actions)),
        reward=np.asarray(reward, dtype=np.float64),
        propensity=np.asarray(propensity, dtype=np.float64),
        timestamp_ms=np.zeros(n, dtype=np.int64),
        arm=np.zeros(n, dtype=np.int8),
        arms=("optimized",),
    )


# Context x=0: c0 (p 0.5) reward 1, c1 (p 0.5) reward 0; x=1: c0 (p 0.25) 0, c1 (p 0.75) 1.
HAND = _coded([0, 0, 1, 1], [0, 1, 0, 1], [1, 0, 0, 1], [0.5, 0.5, 0.25, 0.75], 2, 2)


def test_estimators_match_hand_computation_for_a_fixed_creative() -> None:
    res = evaluate(HAND, fixed(HAND, "c1"), smoothing=0.0, thresholds=NO_REFUSAL)
    # w = [0, 2, 0, 4/3]; sum(w r) = 4/3.
    assert res.estimates["IPS"].value == pytest.approx(1 / 3)  # (4/3) / 4
    assert res.estimates["SNIPS"].value == pytest.approx(0.4)  # (4/3) / (10/3)
    assert res.estimates["DM"].value == pytest.approx(0.5)  # q(0, c1) = 0, q(1, c1) = 1
    assert res.support.ess == pytest.approx(100 / 52)  # (10/3)² / (4 + 16/9)
    assert res.support.max_weight == pytest.approx(2.0)
    assert res.support.unsupported_mass == 0.0


def test_estimators_match_hand_computation_for_uniform() -> None:
    res = evaluate(HAND, uniform(HAND), smoothing=0.0, thresholds=NO_REFUSAL)
    # w = [1, 1, 2, 2/3]; sum(w r) = 5/3; sum(w) = 14/3.
    assert res.estimates["IPS"].value == pytest.approx(5 / 12)
    assert res.estimates["SNIPS"].value == pytest.approx(5 / 14)
    assert res.estimates["DM"].value == pytest.approx(0.5)
    assert res.support.mean_weight == pytest.approx(14 / 12)


def _naive_reference(data: LoggedData, pi: np.ndarray, folds: np.ndarray, k: int, m: float):
    """Per-row loops over the same formulas: IPS, SNIPS, DR with the same folds."""
    rows = range(data.n)
    w = [pi[data.context[i], data.action[i]] / data.propensity[i] for i in rows]
    ips = sum(w[i] * data.reward[i] for i in rows) / data.n
    snips = sum(w[i] * data.reward[i] for i in rows) / sum(w)

    def model(train):
        glob = sum(data.reward[i] for i in train) / len(train)
        q = np.zeros(pi.shape)
        for a in range(pi.shape[1]):
            ra = [data.reward[i] for i in train if data.action[i] == a]
            prior = (sum(ra) + m * glob) / (len(ra) + m)
            for x in range(pi.shape[0]):
                rxa = [
                    data.reward[i] for i in train if data.action[i] == a and data.context[i] == x
                ]
                q[x, a] = (sum(rxa) + m * prior) / (len(rxa) + m)
        return q

    qs = [model([i for i in rows if folds[i] != j]) for j in range(k)]
    dr = 0.0
    for i in rows:
        q = qs[folds[i]]
        x, a = data.context[i], data.action[i]
        dr += sum(pi[x, b] * q[x, b] for b in range(pi.shape[1])) + w[i] * (
            data.reward[i] - q[x, a]
        )
    return ips, snips, dr / data.n


def test_vectorized_estimators_equal_a_per_row_reference() -> None:
    rng = np.random.default_rng(4)
    n, n_x, n_a, k, seed = 300, 3, 4, 3, 9
    x = rng.integers(0, n_x, n)
    a = rng.integers(0, n_a, n)
    data = _coded(x, a, rng.random(n) < 0.3, np.full(n, 1 / n_a), n_x, n_a)
    pi = rng.dirichlet(np.ones(n_a), size=n_x)
    res = evaluate(
        data, TargetPolicy("t", pi, np.zeros(n_x)), folds=k, seed=seed, thresholds=NO_REFUSAL
    )
    folds = np.random.default_rng(seed).integers(0, k, size=n)
    ips, snips, dr = _naive_reference(data, pi, folds, k, 1.0)
    assert res.estimates["IPS"].value == pytest.approx(ips)
    assert res.estimates["SNIPS"].value == pytest.approx(snips)
    assert res.estimates["DR"].value == pytest.approx(dr)


def _world(rng: np.random.Generator):
    n_x, n_a = 8, 5
    p_x = rng.dirichlet(np.full(n_x, 5.0))
    q = rng.uniform(0.02, 0.3, size=(n_x, n_a))
    mu = np.exp(rng.normal(0, 0.7, size=(n_x, n_a)))
    mu /= mu.sum(axis=1, keepdims=True)
    pi = np.full((n_x, n_a), 0.1 / n_a)  # mostly greedy on the true best creative
    pi[np.arange(n_x), q.argmax(axis=1)] += 0.9
    return p_x, q, mu, pi, float((p_x[:, None] * pi * q).sum())


@pytest.mark.slow
def test_intervals_cover_the_true_value_and_dr_snips_beat_ips() -> None:
    rng = np.random.default_rng(2026)
    p_x, q, mu, pi, truth = _world(rng)
    n_x, n_a = q.shape
    reps, n = 200, 3000
    hits = {k: 0 for k in ("DM", "IPS", "SNIPS", "DR")}
    sq_err = {k: 0.0 for k in hits}
    target = TargetPolicy("mostly-greedy", pi, np.zeros(n_x))
    for rep in range(reps):
        x = rng.choice(n_x, n, p=p_x)
        a = (mu[x].cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
        r = (rng.random(n) < q[x, a]).astype(np.float64)
        res = evaluate(_coded(x, a, r, mu[x, a], n_x, n_a), target, seed=rep)
        assert not res.refused
        for name, e in res.estimates.items():
            hits[name] += e.low <= truth <= e.high
            sq_err[name] += (e.value - truth) ** 2
    coverage = {k: v / reps for k, v in hits.items()}
    assert all(c >= 0.9 for c in coverage.values()), coverage
    assert sq_err["DR"] < sq_err["IPS"], sq_err
    assert sq_err["SNIPS"] < sq_err["IPS"], sq_err


def test_refuses_a_creative_that_was_never_logged() -> None:
    res = evaluate(HAND, fixed(HAND, "never-shown"))
    assert res.refused and not res.estimates
    assert res.support.unsupported_mass == 1.0
    assert any("never logged" in r for r in res.reasons)


def test_refuses_mass_on_actions_unlogged_in_a_context_and_low_ess() -> None:
    # c1 never shown in context x=1.
    data = _coded([0, 0, 1, 1] * 50, [0, 1, 0, 0] * 50, [1, 0, 0, 1] * 50, [0.5] * 200, 2, 2)
    res = evaluate(data, fixed(data, "c1"))
    assert res.refused
    assert res.support.unsupported_mass == pytest.approx(0.5)
    assert any("effective sample size" in r for r in res.reasons)  # ESS = 50 < 100
    forced = evaluate(data, fixed(data, "c1"), force=True)
    assert not forced.refused and set(forced.estimates) == {"DM", "IPS", "SNIPS", "DR"}
    assert forced.reasons == res.reasons  # still reported, as warnings


def test_policy_file_needs_every_logged_context_or_a_default() -> None:
    from services.analysis.policies import PolicyError

    with pytest.raises(PolicyError, match="no distribution"):
        from_distribution(HAND, {"x=0": {"c0": 1.0}})
    with pytest.raises(PolicyError, match="sums to"):
        from_distribution(HAND, {"*": {"c0": 0.7}})
    pol = from_distribution(HAND, {"x=0": {"c0": 1.0}, "*": {"c1": 0.5, "new": 0.5}})
    assert pol.probs.tolist() == [[1.0, 0.0], [0.0, 0.5]]
    assert pol.unlogged.tolist() == [0.0, 0.5]


def test_empty_log_is_refused_not_crashed() -> None:
    data = _coded([], [], [], [], 1, 1)
    res = evaluate(data, uniform(data))
    assert res.refused and res.reasons == ("no logged rows to evaluate",)
