"""The published OSE algorithm: sort by parameter size, one candidate every ε, argmax of W.

Sources (no full paper text was available; see docs/search_methods.md §1):

* [N] A. de Wynter, "Bort: Algorithms and Applications" (20 Nov 2020; GitHub
  ``adewynter/adewynter.github.io``, ``notes/bort_algorithms_and_applications.html``): the
  AB^nC ordering means that "partitioning the space every ε architectures, and picking the best
  of these partitioned architectures, returns an ε-optimal solution"; proxy training, not full
  training; the algorithm is "disappointingly short".
* [Q] QOSE, a third-party reimplementation citing Definition 8 and Algorithm 1 of arXiv
  2010.08512 (GitHub ``kmz4/QHACK2021``, ``qose/train_utils.py``, ``demos/QHACK__QOSE.pdf``):
  the W-coefficient W = ((p(T) − p)/p(T)) · ((i(T) − i)/i(T)) · (1/e), maximised, with T the
  "maximum point" (largest parameter count and largest inference cost over the space); each
  candidate is trained under every θ of a small hyperparameter set Θ for s steps and keeps its
  best W.

The algorithm (`interval_search`):

1. compute p(ξ), i(ξ) for every ξ ∈ Ξ (cheap) and sort Ξ by p (ties: i, then input order);
2. cut the sorted list into consecutive blocks of ε candidates (ε an integer, 1 ≤ ε ≤ |Ξ|; the
   last block may be shorter) and pick one candidate per block: the ``offset``-th (default
   the first, i.e. the smallest p; a short last block gives its last member);
3. proxy-train every pick under every θ ∈ Θ (``e(ξ, θ)``; s, the step budget, belongs to the
   evaluator: a θ entry or the trainer's own setting) — |picks|·|Θ| proxy evaluations;
4. return the pick and θ of largest published W (`published_w`).

[reconstructed] The sources do not say which member of a block is picked; we take the first
(``offset``) so that ε = 1 is exhaustive and ε = |Ξ| trains only the smallest candidate. A
candidate with p ≥ p(T) or i ≥ i(T) has a published W of 0 (at equality) whatever its error,
so it is not trained: T itself and every candidate sharing T's p or i get W = 0 and are never
returned unless no pick could be trained (then ValueError). With a user-given reference T, a
candidate beyond T in both p and i would get a positive literal product of two negative
factors; it is treated like the others beyond T (W = 0, not trained). QOSE takes the absolute
value of each factor, which would rank such a larger-than-T model above smaller ones; we do not.

The result is the project's `SearchResult` (so `report.write_report` works): its evaluations
carry the project's W-coefficient (``options.objective``) as ``objective``, so the reported W
is comparable with `fptas` and `exhaustive`; the published W of every trained pick, the chosen
θ and every (ξ, θ) error are in ``settings``. ``n_evaluations`` counts (ξ, θ) proxy evaluations
(failed ones included): with one θ it is the number of candidates trained. No approximation
ratio is claimed (``guarantee.ratio`` is None): the published ε-optimality rests on the AB^nC
ordering, which nothing here checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any, Callable, Hashable, Mapping, Sequence

from bort_jax.search.evaluator import Evaluator, candidate_key
from bort_jax.search.fptas import (
    Evaluation,
    Guarantee,
    SearchResult,
    WCoefficient,
    pareto_front,
)
from bort_jax.search.space import SearchSpace

Candidate = Hashable
CostFn = Callable[[Candidate], float]

__all__ = [
    "IntervalOptions",
    "interval_picks",
    "interval_search",
    "max_point",
    "published_w",
    "sort_by_size",
]


def published_w(p: float, i: float, e: float, p_ref: float, i_ref: float) -> float:
    """The published W-coefficient, maximised:

        W = ((p(T) − p) / p(T)) · ((i(T) − i) / i(T)) · (1 / e),

    with p(T) = ``p_ref``, i(T) = ``i_ref`` the parameter size and inference cost of the maximal
    point T (the candidate maximising p and i, i.e. (max p, max i) over the space, or a given
    reference architecture). Source: QOSE (GitHub kmz4/QHACK2021, qose/train_utils.py) citing
    Definition 8 of arXiv 2010.08512; the first author's notes describe the same ingredients.

    The literal formula: 0 when p = p(T) or i = i(T) (T itself included), whatever e; negative
    when exactly one of p, i exceeds T's; positive (spuriously) when both do. `interval_search`
    trains only candidates strictly below T in p and i, where every factor is positive.

    Raises:
      ValueError: ``e`` ≤ 0 or not finite, or a reference that is not > 0.
    """
    if not (math.isfinite(e) and e > 0):
        raise ValueError(f"published_w: the error must be finite and > 0, got {e!r}")
    if not (p_ref > 0 and i_ref > 0):
        raise ValueError(f"published_w: p(T), i(T) must be > 0, got {p_ref!r}, {i_ref!r}")
    return ((p_ref - p) / p_ref) * ((i_ref - i) / i_ref) / e


@dataclasses.dataclass(frozen=True)
class IntervalOptions:
    """Options of `interval_search`.

    eps: interval size ε, an integer with 1 ≤ ε ≤ |Ξ| (one candidate trained per ε).
    thetas: Θ, a sequence of hyperparameter overrides; ``e`` is then called as e(ξ, θ). None:
      a single implicit θ and ``e`` is called as e(ξ) (the extraction's e, its cache keys).
    reference: T's (p, i); None: (max p, max i) over the candidates (the maximal point).
    offset: which member of each block is picked (0: the smallest p; clipped to a short last
      block).
    objective: the project's W-coefficient, recorded for every trained pick (``objective`` of
      the evaluations and of the result) so reports compare with `fptas`; it does not choose.
    cache: get/put cache of e-values (as `fptas`); keys are ``key(ξ)``, with θ's JSON appended
      when ``thetas`` is given.
    key, on_error, progress: as in `fptas` ('raise' or 'skip' a failing e).
    """

    eps: int = 1
    thetas: tuple[Mapping[str, Any], ...] | None = None
    reference: tuple[float, float] | None = None
    offset: int = 0
    objective: WCoefficient = WCoefficient()
    cache: Any = None
    key: Callable[[Candidate], str] = candidate_key
    on_error: str = "raise"
    progress: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.eps, bool) or not isinstance(self.eps, int) or self.eps < 1:
            raise ValueError(f"eps (interval size) must be an int >= 1, got {self.eps!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise ValueError(f"offset must be an int >= 0, got {self.offset!r}")
        if self.offset >= self.eps:
            raise ValueError(f"offset must be < eps, got offset={self.offset}, eps={self.eps}")
        if self.thetas is not None:
            object.__setattr__(self, "thetas", tuple(dict(t) for t in self.thetas))
            if not self.thetas:
                raise ValueError("thetas: give at least one hyperparameter set (or None)")
        if self.reference is not None:
            p_t, i_t = (float(x) for x in self.reference)
            if not (p_t > 0 and i_t > 0):
                raise ValueError(f"reference (p(T), i(T)) must be > 0, got {self.reference!r}")
            object.__setattr__(self, "reference", (p_t, i_t))


def _costs(cands: Sequence[Candidate], fn: CostFn, name: str) -> list[float]:
    out = []
    for c in cands:
        v = float(fn(c))
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name}({c!r}) = {v}; must be finite and > 0")
        out.append(v)
    return out


def _candidates(candidates: SearchSpace | Sequence[Candidate]) -> list[Candidate]:
    cands = candidates.candidates() if isinstance(candidates, SearchSpace) else list(candidates)
    if not cands:
        raise ValueError("candidates: empty search space")
    if len(set(cands)) != len(cands):
        raise ValueError("candidates: duplicates are not allowed")
    return cands


def sort_by_size(P: Sequence[float], I: Sequence[float]) -> list[int]:
    """Candidate indices sorted by parameter size p (ties: i, then index)."""
    return sorted(range(len(P)), key=lambda k: (P[k], I[k], k))


def interval_picks(P: Sequence[float], I: Sequence[float], eps: int, offset: int = 0) -> list[int]:
    """Indices picked by the published rule: sort by p, one per block of ε (the offset-th)."""
    if isinstance(eps, bool) or not isinstance(eps, int) or not 1 <= eps <= len(P):
        raise ValueError(f"eps must be an int in [1, |Ξ|={len(P)}], got {eps!r}")
    order = sort_by_size(P, I)
    blocks = [order[k : k + eps] for k in range(0, len(order), eps)]
    return [b[min(offset, len(b) - 1)] for b in blocks]


def max_point(P: Sequence[float], I: Sequence[float]) -> tuple[float, float]:
    """T = (max p, max i) over the candidates: the maximal point of the published W."""
    return max(P), max(I)


def _theta_key(key: Callable[[Candidate], str], theta: Mapping[str, Any] | None):
    if theta is None:
        return key
    suffix = "|theta=" + json.dumps(theta, sort_keys=True, default=str)
    return lambda c: key(c) + suffix


def interval_search(
    candidates: SearchSpace | Sequence[Candidate],
    p: CostFn,
    i: CostFn,
    e: Callable[..., float],
    options: IntervalOptions = IntervalOptions(),
) -> SearchResult:
    """The published algorithm (module docstring): one pick per ε candidates by size, every
    θ ∈ Θ, argmax of `published_w`. ``e(ξ)`` (``options.thetas`` None) or ``e(ξ, θ)``.

    Returns a `SearchResult` with method 'interval' (see the module docstring for its fields).
    Raises ValueError for ε outside [1, |Ξ|] or when no pick lies below T; with
    ``on_error='raise'`` an error of e propagates, with 'skip' a failing (ξ, θ) is recorded in
    ``failed`` and RuntimeError is raised only when nothing could be evaluated.
    """
    t0 = time.perf_counter()
    o = options
    cands = _candidates(candidates)
    P, I = _costs(cands, p, "p"), _costs(cands, i, "i")
    p_ref, i_ref = max(P), max(I)  # the project W's references (reports)
    p_t, i_t = o.reference if o.reference is not None else max_point(P, I)
    picks = interval_picks(P, I, o.eps, o.offset)
    trainable = [k for k in picks if P[k] < p_t and I[k] < i_t]
    zero_w = [k for k in picks if k not in trainable]
    if not trainable:
        raise ValueError(
            f"interval_search: none of the {len(picks)} picks lies below T = ({p_t:g}, {i_t:g}) "
            "in both p and i, so every published W is 0; use a smaller eps or another reference"
        )
    thetas: list[Mapping[str, Any] | None] = list(o.thetas) if o.thetas is not None else [None]
    errors: dict[int, list[float | None]] = {k: [] for k in trainable}
    failed: list[tuple[Candidate, str]] = []
    calls = hits = rejected = 0
    for j, theta in enumerate(thetas):
        fn = (lambda c: e(c)) if theta is None else (lambda c, t=theta: e(c, t))
        evaluator = Evaluator(
            fn,
            o.cache,
            _theta_key(o.key, theta),
            o.on_error,
            o.progress,
            len(trainable),
            "interval" if theta is None else f"interval θ{j}",
        )
        for k in trainable:
            value, message = evaluator(cands[k])
            errors[k].append(value)
            if value is None:
                where = "" if theta is None else f"theta={json.dumps(theta, default=str)}: "
                failed.append((cands[k], where + (message or "failed")))
        evaluator.close()
        calls, hits, rejected = (
            calls + evaluator.calls,
            hits + evaluator.hits,
            rejected + evaluator.rejected,
        )
    best_theta: dict[int, int] = {}
    pub: dict[int, float] = {}
    for k in trainable:  # per pick, the θ of largest W (smallest e: the size factor is > 0)
        ok = [(published_w(P[k], I[k], v, p_t, i_t), j) for j, v in enumerate(errors[k]) if v]
        if ok:
            w, j = max(ok, key=lambda x: (x[0], -x[1]))
            pub[k], best_theta[k] = w, j
    if not pub:
        raise RuntimeError("no pick could be evaluated: " + "; ".join(m for _, m in failed))
    evals = tuple(
        Evaluation(
            cands[k],
            P[k],
            I[k],
            errors[k][best_theta[k]],
            o.objective.value(P[k], I[k], errors[k][best_theta[k]], p_ref, i_ref),
        )
        for k in trainable
        if k in pub
    )
    chosen_k = max(pub, key=lambda k: (pub[k], -trainable.index(k)))  # ties: smaller p first
    chosen = next(ev for ev in evals if ev.candidate == cands[chosen_k])
    n = len(cands)
    statement = (
        f"No approximation ratio is claimed: the published interval algorithm (eps = {o.eps}) "
        f"trained {len(pub)} of {n} candidates under {len(thetas)} hyperparameter set(s) "
        f"({len(trainable) * len(thetas)} proxy evaluations) and returned the argmax of the "
        "published W; its eps-optimality rests on the AB^nC ordering, which is not checked."
    )
    guarantee = Guarantee(
        None, None, None, ("AB^nC ordering of e along p (published; not checked)",), statement
    )
    chosen_theta = thetas[best_theta[chosen_k]]
    settings = {
        "interval_eps": o.eps,
        "offset": o.offset,
        "reference": [p_t, i_t],
        "n_thetas": len(thetas),
        "thetas": [t for t in thetas if t is not None],
        "chosen_theta": chosen_theta,
        "published_w": pub[chosen_k],
        "published_w_values": {repr(cands[k]): pub[k] for k in trainable if k in pub},
        "theta_errors": {repr(cands[k]): errors[k] for k in trainable},
        "picks": [repr(cands[k]) for k in picks],
        "zero_w": [repr(cands[k]) for k in zero_w],
        "n_candidates_trained": len(pub),
    }
    return SearchResult(
        method="interval",
        chosen=chosen.candidate,
        objective=chosen.objective,
        chosen_evaluation=chosen,
        evaluations=evals,
        pareto_front=pareto_front(evals),
        n_candidates=n,
        n_evaluations=len(trainable) * len(thetas),
        n_e_calls=calls,
        n_cache_hits=hits,
        trimmed=(),
        failed=tuple(failed),
        guarantee=guarantee,
        objective_spec=o.objective,
        p_ref=p_ref,
        i_ref=i_ref,
        eps=None,
        s=o.eps,
        stopped_by="exhausted",
        wall_time_s=time.perf_counter() - t0,
        settings=settings,
        n_cache_rejected=rejected,
        n_rounds=calls,
    )
