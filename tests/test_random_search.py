"""Random search and its exact order statistics, on the hand-computed 6-candidate table."""

from __future__ import annotations

import itertools

import pytest
from _table6 import CANDS, TABLE, W_HAND, C, i, p

from bort_jax.search.fptas import WCoefficient
from bort_jax.search.random_search import (
    RandomOptions,
    budget_to_match,
    draws,
    expected_best,
    expected_draws_to_reach,
    expected_ratio,
    prob_reach,
    random_search,
    simulate_best,
)

# Published W sorted: 0 (F), 5/36 (E), 2/3 (C), 5/6 (D), 10/9 (A), 25/18 (B).
VALUES = [W_HAND[c.name] for c in CANDS]


def test_expected_best_by_hand():
    # n = 2: E = Σ_k w_(k) (k-1)/C(6,2) = (5/36 + 2·2/3 + 3·5/6 + 4·10/9 + 5·25/18)/15 = 553/540
    assert expected_best(VALUES, 2) == pytest.approx(553 / 540, rel=1e-12)
    # n = 3: (1·2/3 + 3·5/6 + 6·10/9 + 10·25/18)/20 = 427/360
    assert expected_best(VALUES, 3) == pytest.approx(427 / 360, rel=1e-12)
    assert expected_best(VALUES, 1) == pytest.approx(149 / 216, rel=1e-12)  # the mean
    assert expected_best(VALUES, 6) == pytest.approx(25 / 18)
    assert expected_ratio(VALUES, 2) == pytest.approx((553 / 540) / (25 / 18))  # = 0.7373…
    with pytest.raises(ValueError):
        expected_ratio([0.0, 0.0], 1)
    # the same by enumerating all 15 pairs
    pairs = list(itertools.combinations(VALUES, 2))
    assert expected_best(VALUES, 2) == pytest.approx(sum(map(max, pairs)) / len(pairs))


def test_reach_and_budget_by_hand():
    target = 10 / 9  # the interval search's pick at ε = 2 (A); K = 2 values reach it
    assert prob_reach(VALUES, 2, target) == pytest.approx(1 - 6 / 15)
    assert expected_draws_to_reach(VALUES, target) == pytest.approx(7 / 3)
    assert budget_to_match(VALUES, target) == 3  # 553/540 < 10/9 <= 427/360
    assert budget_to_match(VALUES, 25 / 18) == 6
    assert budget_to_match(VALUES, 2.0) is None
    assert expected_draws_to_reach(VALUES, 2.0) == float("inf")
    with pytest.raises(ValueError):
        expected_best(VALUES, 0)
    with pytest.raises(ValueError):
        expected_best(VALUES, 7)
    with pytest.raises(ValueError):
        expected_best([], 1)


def test_ties_and_large_tables():
    assert expected_best([1.0, 1.0, 1.0], 2) == pytest.approx(1.0)
    big = list(range(300))
    # E[max of n from 0..N-1] = n(N+1)/(n+1) - 1
    assert expected_best(big, 150) == pytest.approx(150 * 301 / 151 - 1, rel=1e-12)


def _e(c):
    return TABLE[c.name][2]


def test_random_search_evaluates_its_draws_and_keeps_the_best():
    for seed in range(5):
        seen = []

        def e(c, seen=seen):
            seen.append(c)
            return _e(c)

        res = random_search(CANDS, p, i, e, RandomOptions(n=2, seed=seed, published=True))
        assert seen == [CANDS[k] for k in draws(6, 2, seed)]
        assert len(set(seen)) == 2 and res.n_evaluations == 2
        best = max(W_HAND[c.name] for c in seen)
        assert res.settings["published_w"] == pytest.approx(best)
        assert simulate_best(VALUES, 2, [seed]) == [pytest.approx(best)]
        # project W ranking: (60/p)(60/i)/e, the default WCoefficient
        proj = random_search(CANDS, p, i, _e, RandomOptions(n=2, seed=seed))
        w = {c: (60 / p(c)) * (60 / i(c)) / _e(c) for c in seen}
        assert proj.chosen == max(w, key=w.get)
        assert proj.objective == pytest.approx(max(w.values()))


def test_simulation_approaches_the_exact_expectation():
    sims = simulate_best(VALUES, 2, range(3000))
    assert sum(sims) / len(sims) == pytest.approx(553 / 540, abs=0.03)


def test_options_and_cache():
    cache = {repr(c): _e(c) for c in CANDS}
    res = random_search(
        CANDS, p, i, lambda c: 1 / 0, RandomOptions(n=6, cache=cache, objective=WCoefficient())
    )
    assert res.n_cache_hits == 6 and res.n_e_calls == 0
    assert res.chosen == C("B")  # project W: B (60/20)(60/10)/0.4 = 45 is the largest
    with pytest.raises(ValueError):
        random_search(CANDS, p, i, _e, RandomOptions(n=0))
