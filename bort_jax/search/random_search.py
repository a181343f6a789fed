"""Random search at a fixed budget, and its exact expected performance on a known table.

The baseline any search method must beat: draw n candidates uniformly without replacement
(seeded), proxy-train them, return the best. On an instance whose e-values are all known (an
exhaustive run's table) its performance follows exactly from the order statistics of sampling
without replacement, so no simulation is needed. With the values w_(1) ≤ … ≤ w_(N) of the
objective over the N candidates and a budget of n draws:

    P(best = w_(k)) = C(k − 1, n − 1) / C(N, n)                (k = n … N)
    E[best]         = Σ_k w_(k) · C(k − 1, n − 1) / C(N, n)     (`expected_best`)
    P(best ≥ t)     = 1 − C(N − K, n) / C(N, n),  K = #{w ≥ t}  (`prob_reach`)
    E[draws until the first w ≥ t] = (N + 1) / (K + 1)          (`expected_draws_to_reach`)

(ties need no care: tied values are equal, so the expectation is the same whichever copy is
"the" k-th). `budget_to_match(values, t)` is the smallest n with E[best] ≥ t: the budget at
which random search is expected to do as well as a method that found t.

`random_search` draws ``rng.permutation(N)[:n]`` with ``numpy.random.default_rng(seed)``;
`simulate_best` uses the same draws without calling e, so a simulation over seeds is exactly
what `random_search` would return for those seeds.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from bort_jax.search.evaluator import Evaluator, candidate_key
from bort_jax.search.fptas import Evaluation, Guarantee, SearchResult, WCoefficient, pareto_front
from bort_jax.search.interval import max_point, published_w
from bort_jax.search.space import SearchSpace

Candidate = Hashable
CostFn = Callable[[Candidate], float]

__all__ = [
    "RandomOptions",
    "budget_to_match",
    "draws",
    "expected_best",
    "expected_draws_to_reach",
    "expected_ratio",
    "prob_reach",
    "random_search",
    "simulate_best",
]

REL_TOL = 1e-12  # "w ≥ t" tolerates this relative rounding (t often is one of the values)


def _values(values: Sequence[float]) -> np.ndarray:
    w = np.sort(np.asarray(values, dtype=np.float64))
    if w.size == 0 or not np.all(np.isfinite(w)):
        raise ValueError("values: give a non-empty table of finite objective values")
    return w


def _check_n(n: int, size: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= size:
        raise ValueError(f"budget n must be an int in [1, {size}], got {n!r}")
    return int(n)


def _reached(w: np.ndarray, target: float) -> int:
    """K = #{w ≥ target} (up to REL_TOL)."""
    return int(np.count_nonzero(w >= target - REL_TOL * abs(target)))


def expected_best(values: Sequence[float], n: int) -> float:
    """E[max of n values drawn uniformly without replacement from ``values``] (exact)."""
    w = _values(values)
    size = w.size
    n = _check_n(n, size)
    total = math.comb(size, n)
    # P(best = w_(k)) = C(k-1, n-1)/C(N, n); exact integer ratios, then float
    return float(sum(w[k - 1] * (math.comb(k - 1, n - 1) / total) for k in range(n, size + 1)))


def expected_ratio(values: Sequence[float], n: int) -> float:
    """E[best of n] / max(values): random search's expected W/OPT at budget n (exact).

    Raises ValueError when max(values) ≤ 0 (no positive optimum to divide by).
    """
    best = float(np.max(_values(values)))
    if not best > 0:
        raise ValueError("expected_ratio: the largest value must be > 0")
    return expected_best(values, n) / best


def prob_reach(values: Sequence[float], n: int, target: float) -> float:
    """P(the best of n draws without replacement is ≥ ``target``) = 1 − C(N−K, n)/C(N, n)."""
    w = _values(values)
    n = _check_n(n, w.size)
    k = _reached(w, target)
    return 1.0 - math.comb(w.size - k, n) / math.comb(w.size, n)


def expected_draws_to_reach(values: Sequence[float], target: float) -> float:
    """Expected number of draws (without replacement) until one is ≥ ``target``:
    (N + 1)/(K + 1), K = #{w ≥ target}; inf when no value reaches it."""
    w = _values(values)
    k = _reached(w, target)
    return math.inf if k == 0 else (w.size + 1) / (k + 1)


def budget_to_match(values: Sequence[float], target: float) -> int | None:
    """Smallest n with E[best of n] ≥ ``target`` (None: even n = N, every candidate, cannot)."""
    w = _values(values)
    if w[-1] < target - REL_TOL * abs(target):
        return None
    for n in range(1, w.size + 1):  # E[best] grows with n
        if expected_best(w, n) >= target - REL_TOL * abs(target):
            return n
    return w.size


def draws(size: int, n: int, seed: int) -> list[int]:
    """The candidate indices `random_search` evaluates, in order."""
    n = _check_n(n, size)
    return np.random.default_rng(seed).permutation(size)[:n].tolist()


def simulate_best(values: Sequence[float], n: int, seeds: Sequence[int]) -> list[float]:
    """Best value among `draws(N, n, seed)` for every seed (``values`` in candidate order)."""
    v = np.asarray(values, dtype=np.float64)
    return [float(v[draws(v.size, n, s)].max()) for s in seeds]


@dataclasses.dataclass(frozen=True)
class RandomOptions:
    """Options of `random_search`.

    n: budget (proxy evaluations), 1 ≤ n ≤ |Ξ|; seed: numpy seed of the draw.
    objective: the project's W-coefficient (recorded, and the ranking unless ``published``).
    published: rank by the published W (`interval.published_w`, T = (max p, max i)) instead.
    cache, key, on_error, progress: as in `fptas`.
    """

    n: int
    seed: int = 0
    objective: WCoefficient = WCoefficient()
    published: bool = False
    cache: Any = None
    key: Callable[[Candidate], str] = candidate_key
    on_error: str = "raise"
    progress: bool = False


def random_search(
    candidates: SearchSpace | Sequence[Candidate],
    p: CostFn,
    i: CostFn,
    e: CostFn,
    options: RandomOptions,
) -> SearchResult:
    """Evaluate ``options.n`` candidates drawn uniformly without replacement; return the best.

    The result's ``objective`` (and every evaluation's) is the project's W; with
    ``published=True`` the choice is the argmax of the published W (in ``settings``).
    Ties: the first drawn. No ratio is claimed.
    """
    t0 = time.perf_counter()
    o = options
    cands = candidates.candidates() if isinstance(candidates, SearchSpace) else list(candidates)
    if not cands or len(set(cands)) != len(cands):
        raise ValueError("candidates: give a non-empty sequence of distinct candidates")
    P, I = [float(p(c)) for c in cands], [float(i(c)) for c in cands]
    if not all(math.isfinite(x) and x > 0 for x in P + I):
        raise ValueError("p and i must be finite and > 0 for every candidate")
    p_ref, i_ref = max(P), max(I)
    p_t, i_t = max_point(P, I)
    order = draws(len(cands), o.n, o.seed)
    evaluator = Evaluator(e, o.cache, o.key, o.on_error, o.progress, o.n, "random")
    evals, failed, pub = [], [], {}
    for k in order:
        value, message = evaluator(cands[k])
        if value is None:
            failed.append((cands[k], message or "failed"))
            continue
        ev = Evaluation(
            cands[k], P[k], I[k], value, o.objective.value(P[k], I[k], value, p_ref, i_ref)
        )
        evals.append(ev)
        pub[cands[k]] = published_w(P[k], I[k], value, p_t, i_t)
    evaluator.close()
    if not evals:
        raise RuntimeError("no candidate could be evaluated: " + "; ".join(m for _, m in failed))
    score = (lambda ev: pub[ev.candidate]) if o.published else (lambda ev: ev.objective)
    chosen = max(evals, key=score)  # max keeps the first maximiser: the first drawn
    guarantee = Guarantee(
        None,
        None,
        None,
        (),
        f"No approximation ratio: random search, {o.n} of {len(cands)} candidates drawn "
        f"without replacement (seed {o.seed}).",
    )
    return SearchResult(
        method="random",
        chosen=chosen.candidate,
        objective=chosen.objective,
        chosen_evaluation=chosen,
        evaluations=tuple(evals),
        pareto_front=pareto_front(evals),
        n_candidates=len(cands),
        n_evaluations=o.n,
        n_e_calls=evaluator.calls,
        n_cache_hits=evaluator.hits,
        trimmed=(),
        failed=tuple(failed),
        guarantee=guarantee,
        objective_spec=o.objective,
        p_ref=p_ref,
        i_ref=i_ref,
        eps=None,
        s=None,
        stopped_by="budget",
        wall_time_s=time.perf_counter() - t0,
        settings={
            "n": o.n,
            "seed": o.seed,
            "ranked_by": "published" if o.published else "project",
            "published_w": pub[chosen.candidate],
            "reference": [p_t, i_t],
        },
        n_cache_rejected=evaluator.rejected,
        n_rounds=evaluator.calls,
    )
