"""The records of a search: evaluations, the guarantee, the result (`fptas`, `exhaustive`).

W(ξ) of every record is Eq. W of `objective`; `with_e_ref` re-expresses a result under another
reference error e_ref (W ∝ e_ref^γ: every ratio, the choice and the guarantee are unchanged).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from bort_jax.search.assumptions import AssumptionViolation
from bort_jax.search.evaluator import Evaluator
from bort_jax.search.objective import WCoefficient

Candidate = Hashable


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One candidate whose error was obtained, with its objective value."""

    candidate: Candidate
    p: float
    i: float
    e: float
    objective: float


@dataclasses.dataclass(frozen=True)
class Guarantee:
    """What holds for the chosen candidate.

    ratio: a-priori bound W(chosen)/OPT ≥ ratio (1 − ε; 1.0 for exhaustive search); None when
      not certified.
    certified_ratio: a-posteriori bound W(chosen)/upper_bound_opt, ≥ ratio unless stopped by
      budget; None when not certified.
    upper_bound_opt: proven upper bound on max W over all non-failed candidates; None when not
      certified.
    assumptions: the assumptions under which the bounds are proved.
    statement: one-paragraph human-readable form ("NOT CERTIFIED: ..." naming the violating
      pair and the slack it needs, when the e-values violate an assumption).
    certified: False when the e-values obtained violate an assumption beyond its declared slack
      (`SearchResult.assumption_violations`): then no ratio is claimed.
    """

    ratio: float | None
    certified_ratio: float | None
    upper_bound_opt: float | None
    assumptions: tuple[str, ...]
    statement: str
    certified: bool = True


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Outcome of `fptas` or `exhaustive`.

    n_evaluations counts distinct candidates whose error the algorithm needed (the cost measure to
    compare with exhaustive search); n_e_calls counts actual calls to ``e`` (cache hits excluded);
    n_cache_rejected counts cached values found invalid (NaN, inf, ≤ 0) and recomputed.
    assumption_violations lists every evaluated pair (M, F, L) or chain (C) that breaks a declared
    assumption beyond its slack; if any, ``guarantee.certified`` is False.
    parallel is the number of concurrent evaluations allowed; n_rounds the number of rounds of
    concurrent evaluation (= n_e_calls when parallel is 1); n_speculative the e-values computed
    ahead that the search never needed (they are cached, not used).
    """

    method: str
    chosen: Candidate
    objective: float
    chosen_evaluation: Evaluation
    evaluations: tuple[Evaluation, ...]
    pareto_front: tuple[Evaluation, ...]
    n_candidates: int
    n_evaluations: int
    n_e_calls: int
    n_cache_hits: int
    trimmed: tuple[tuple[Candidate, Candidate, float], ...]
    failed: tuple[tuple[Candidate, str], ...]
    guarantee: Guarantee
    objective_spec: WCoefficient
    p_ref: float
    i_ref: float
    eps: float | None
    s: int | None
    stopped_by: str
    wall_time_s: float
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    assumption_violations: tuple[AssumptionViolation, ...] = ()
    n_cache_rejected: int = 0
    parallel: int = 1
    n_rounds: int = 0
    n_speculative: int = 0


@dataclasses.dataclass(frozen=True)
class Costs:
    """The candidates with their cheap exact costs p, i and the references of Eq. W."""

    cands: Sequence[Candidate]
    p: Sequence[float]
    i: Sequence[float]

    @property
    def p_ref(self) -> float:
        return max(self.p)

    @property
    def i_ref(self) -> float:
        return max(self.i)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one search run found, by candidate index (the input of `make_result`).

    order: evaluated candidates in evaluation order; errors: their e; failed: index → message;
    trimmed: index → (dominator index, dominance factor); rounds / speculative: concurrent
    rounds and e-values computed ahead but never needed.
    """

    method: str
    order: Sequence[int]
    errors: Mapping[int, float]
    failed: Mapping[int, str]
    guarantee: Guarantee
    stopped_by: str
    trimmed: Mapping[int, tuple[int, float]] = dataclasses.field(default_factory=dict)
    violations: tuple[AssumptionViolation, ...] = ()
    rounds: int = 0
    speculative: int = 0


def make_result(
    costs: Costs,
    outcome: Outcome,
    objective: WCoefficient,
    evaluator: Evaluator,
    t0: float,
    settings: Mapping[str, Any] | None = None,
) -> SearchResult:
    """The `SearchResult` of `outcome`: W (Eq. W) of every evaluation, the chosen candidate =
    the first maximiser of W in evaluation order, the Pareto front and the call counts.

    `settings` holds the search's options; its 'eps' and 's' (absent for exhaustive search)
    become `SearchResult.eps` / `.s`, the rest `SearchResult.settings`.
    """
    settings = dict(settings or {})
    eps, s = settings.pop("eps", None), settings.pop("s", None)
    P, I, p_ref, i_ref = costs.p, costs.i, costs.p_ref, costs.i_ref
    cands, errors, failed = costs.cands, outcome.errors, outcome.failed
    evals = tuple(
        Evaluation(
            cands[k], P[k], I[k], errors[k], objective.value(P[k], I[k], errors[k], p_ref, i_ref)
        )
        for k in outcome.order
    )
    chosen = max(evals, key=lambda ev: ev.objective)  # first maximiser in evaluation order
    return SearchResult(
        method=outcome.method,
        chosen=chosen.candidate,
        objective=chosen.objective,
        chosen_evaluation=chosen,
        evaluations=evals,
        pareto_front=pareto_front(evals),
        n_candidates=len(cands),
        n_evaluations=len(evals) + len(failed),
        n_e_calls=evaluator.calls,
        n_cache_hits=evaluator.hits,
        trimmed=tuple((cands[t], cands[j], f) for t, (j, f) in sorted(outcome.trimmed.items())),
        failed=tuple((cands[k], m) for k, m in sorted(failed.items())),
        guarantee=outcome.guarantee,
        objective_spec=objective,
        p_ref=p_ref,
        i_ref=i_ref,
        eps=eps,
        s=s,
        stopped_by=outcome.stopped_by,
        wall_time_s=time.perf_counter() - t0,
        settings=settings,
        assumption_violations=outcome.violations,
        n_cache_rejected=evaluator.rejected,
        parallel=evaluator.parallel,
        n_rounds=outcome.rounds,
        n_speculative=outcome.speculative,
    )


def with_e_ref(result: SearchResult, e_ref: float) -> SearchResult:
    """`result` with W re-expressed under the reference error `e_ref` > 0.

    W' = W · (e_ref / e_ref_old)^γ for every record (Eq. W), so the chosen candidate, every
    ratio W/W' and the guarantee's ratios are those of `result`; the proven upper bound on OPT
    scales by the same factor. With e_ref = the chosen candidate's e, W(chosen) is its size
    score (p_ref/p)^α (i_ref/i)^β, of order one.
    """
    if not e_ref > 0:
        raise ValueError(f"e_ref must be > 0, got {e_ref!r}")
    old = result.objective_spec
    factor = (e_ref / old.e_ref) ** old.gamma
    spec = dataclasses.replace(old, e_ref=e_ref)

    def scaled(ev: Evaluation) -> Evaluation:
        return dataclasses.replace(ev, objective=ev.objective * factor)

    evals = tuple(scaled(ev) for ev in result.evaluations)
    by_candidate = {ev.candidate: ev for ev in evals}
    g = result.guarantee
    upper = None if g.upper_bound_opt is None else g.upper_bound_opt * factor
    return dataclasses.replace(
        result,
        objective=result.objective * factor,
        chosen_evaluation=by_candidate[result.chosen],
        evaluations=evals,
        pareto_front=tuple(by_candidate[ev.candidate] for ev in result.pareto_front),
        guarantee=dataclasses.replace(g, upper_bound_opt=upper),
        objective_spec=spec,
    )


def pareto_front(evaluations: Sequence[Evaluation]) -> tuple[Evaluation, ...]:
    """Evaluations not dominated in (p, i, e), all minimised; input order kept.

    y dominates x iff y ≤ x in p, i and e and y < x in at least one of them.
    """
    evs = list(evaluations)
    if not evs:
        return ()
    pie = np.array([(ev.p, ev.i, ev.e) for ev in evs], dtype=np.float64)
    keep = []
    for k, ev in enumerate(evs):
        dominated = (pie <= pie[k]).all(axis=1) & (pie < pie[k]).any(axis=1)
        if not dominated.any():
            keep.append(ev)
    return tuple(keep)


def statement(ratio: float, certified: float, stopped_by: str, n_eval: int, n: int) -> str:
    """The guarantee in words (`Guarantee.statement`)."""
    return (
        f"W(chosen) >= {ratio:.4f} x OPT a priori and >= {certified:.4f} x OPT certified "
        f"from the final bounds, over all non-failed candidates, under the listed "
        f"assumptions; stopped by {stopped_by} after {n_eval}/{n} evaluations."
    )
