"""FPTAS-style search for optimal subarchitecture extraction (OSE), with a provable (1-ε) bound.

Sources. de Wynter, "An Approximation Algorithm for Optimal Subarchitecture Extraction",
arXiv 2010.08512, and de Wynter & Perry, "Optimal Subarchitecture Extraction for BERT",
arXiv 2010.10499. The full texts were not accessible to us (see docs/fptas.md); what is taken from
the abstract and public summaries is marked [paper], everything else [reconstructed].

[paper] OSE: choose ξ ∈ Ξ minimising three functions at once: p(ξ) parameter count, i(ξ) inference
cost (Σ over layers of additions + multiplications + other operations), e(ξ) error rate; the
decision version is weakly NP-hard. p and i are cheap surrogates computed analytically; e is
estimated by proxy-training each candidate for a bounded number of SGD steps (expensive). The
candidates are ranked by a scalarisation called the W-coefficient. Inputs ε and s; the runtime is
    O(|Ξ| + |W*_T| (1 + |Θ||B||Ξ| / (ε s^{3/2})))                                  (Eq. R)
and, under the strong AB^nC property, the algorithm is an FPTAS with ratio ρ ≤ |1 − ε|.

[reconstructed] Everything below (the paper's W formula, interval rule, step rule and selection
rule were not found):

  W-coefficient (Eq. W), maximised:
      W(ξ) = (p_ref / p(ξ))^α · (i_ref / i(ξ))^β · (e_ref / e(ξ))^γ,
  with p_ref = max p, i_ref = max i over the candidates (the "maximum point") and e_ref a fixed
  positive constant. W is scale-free: ratios W(ξ)/W(ξ') and the argmax do not depend on the
  reference values, so "W(chosen) ≥ (1-ε)·OPT" means the same thing for any normalisation.
  The product form is what makes the guarantee provable: a multiplicative bound on e becomes a
  multiplicative bound on W.

  Assumption M (AB^nC read as "a sub-architecture does not train to a lower error", with slack
  δ ≥ 0 for proxy-training noise): ξ ⪯ ξ'  ⇒  e(ξ) ≥ e(ξ') / (1 + δ).
  Optional F: e(ξ) ≥ e_floor for all ξ.  Optional L: |e(ξ) − e(ξ')| ≤ L·d(ξ, ξ') (default
  d = |log p(ξ) − log p(ξ')|).  Optional C (diminishing returns, the shape of scaling laws
  e = a + b·N^(−α)): some ẽ with ẽ ≤ e ≤ (1+δ)ẽ is non-increasing along ⪯ and convex in a
  coordinate x(ξ) (e.g. log non-embedding parameters) along every chain ξ0 ⪯ ξ1 ⪯ ξ2. The secant
  of two evaluated points of a chain, extended beyond them, then bounds a third from below:
  e(ξ0) ≥ t1 + (t1 − e(ξ2))·(x1 − x0)/(x2 − x1) (below) and
  e(ξ2) ≥ t1 + (t1 − e(ξ0))·(x2 − x1)/(x1 − x0) (above), t1 = e(ξ1)/(1+δ). C implies M.
  These give, for an unevaluated ξ, a lower bound LB(ξ) on e(ξ) from the evaluated candidates,
  hence an upper bound UB(ξ) = W(p(ξ), i(ξ), LB(ξ)) ≥ W(ξ).                          (Eq. B)

  Algorithm (ε, s):
   1. O(|Ξ|): p, i for every candidate; the order ⪯ between all pairs (O(|Ξ|²) comparisons).
   2. ε-trimming with factor (1 + ε_t), ε_t = trim_share·ε (the trimmed-list device of the
      subset-sum FPTAS, i.e. geometric rounding of ratio 1 + ε_t): visiting candidates top-down
      along ⪯, drop ξ when a kept ξ' ⪰ ξ has dominance factor [S(ξ)/S(ξ')]·(1+δ)^γ ≤ 1 + ε_t,
      S = the size part of W. Under M, W(ξ) ≤ (1 + ε_t)·W(ξ'), so ξ needs no proxy training.
                                                                                    (Eq. T)
   3. Evaluate the maximal elements of ⪯ (the "maximum point(s)"); every candidate is below one
      of them, so every UB is finite. Skipped when e_floor is given.
   4. Let ξ* be the pending (kept, unevaluated) candidate with the largest UB. Its interval is the
      set of pending candidates strictly between ξ* and the evaluated candidate that bounds it.
      If the interval holds at least s candidates, evaluate the one nearest its midpoint (in x,
      or log p + log i): it bounds ξ* and its whole down-set from closer up (bisection);
      otherwise evaluate ξ* itself. s = 1 bisects whenever possible; s = ∞ is best-first.
   5. Stop as soon as best ≥ (1 − ε_s)·max UB over the pending candidates, with
      (1 − ε_s) = (1 − ε)(1 + ε_t).                                                 (Eq. S)
   6. Return the evaluated candidate with the largest W.

  Guarantee (proved, given M and whichever of F, L, C are switched on, for the e-values e
  returns): W(chosen) ≥ (1 − ε)·W(ξ) for every candidate ξ whose e did not fail. Proof: pending
  candidates satisfy W ≤ UB ≤ best/(1−ε_s) (Eq. B, S); trimmed ones W ≤ (1+ε_t)·W(kept) (Eq. T);
  and (1+ε_t)/(1−ε_s) = 1/(1−ε). The result also carries the a-posteriori certified ratio
  best / (proven upper bound on OPT), usually better than 1 − ε. At most |Ξ| calls to e; the
  selection rule (step 4) affects only how many, never the guarantee.
  Checked in every run (`assumptions`): M (and F, L, C when switched on) on every evaluated pair
  (triple, for C). A violation beyond the declared slack is recorded in
  `SearchResult.assumption_violations` with the pair and the slack it needs, warned about, and
  the guarantee then reads "not certified" (no ratio is claimed).
  Not proved here: that M (or C) holds for unevaluated candidates of real proxy-trained networks
  (audit with `monotonicity_violations`, `convexity_violations` on an exhaustive run), nor that
  proxy error ranks candidates as converged error does (the paper's strong-AB^nC argument:
  μ-strong convexity, L-smoothness, bounded stochastic gradients, SGD).

  Candidate-parallel search [ours] (``parallel = k``): the loop above is kept exactly, and
  each time it asks for an e-value it does not have, a round of up to k candidates is evaluated
  concurrently: the one it asked for plus k − 1 it is likely to ask for next (during step 3 the
  remaining maximal elements first; then, repeatedly, the step-4 choice for the largest-UB pending
  candidate outside the down-sets of those already in the round — their bounds are the ones the
  round's results leave unchanged). The loop consumes e-values only when it asks for them, so
  for the same e-values the sequence of evaluations, the bounds, the stop, the chosen candidate
  and the guarantee are those of the sequential search; the speculative values it never asks
  for are computed but unused (`SearchResult.n_speculative`) and cached. Wall time ≈ rounds ×
  one evaluation instead of evaluations × one evaluation.

  Modules: the W-coefficient (`objective`), the order ⪯ as a dominance matrix and ε-trimming
  (`order`, numpy), the lower bounds (`bounds`, numpy), the assumption checks (`assumptions`),
  calling e with cache and validation (`evaluator`), the options (`options`), the records
  (`result`), the candidate-parallel look-ahead (`lookahead`), the step budget (`budget`) and
  the AB^nC check (`abnc`); this module holds the search loops.

  Step budget T(ε, s) = ⌈κ / (ε s^{3/2})⌉: Eq. R's second term divided by the number of
  (candidate, hyperparameter) trainings |Θ||Ξ| and by the cost of one SGD step |B|·|W*_T|;
  κ absorbs the smoothness constants and must be calibrated (`budget.kappa_for`). The two uses of s
  (interval threshold in step 4, divisor in T) are independent reconstructions.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

from bort_jax.search import order as ordering
from bort_jax.search.abnc import AbncCheck, BlockCost, check_abnc
from bort_jax.search.assumptions import (
    AssumptionChecker,
    AssumptionViolation,
    AssumptionWarning,
    convexity_violations,
    monotonicity_violations,
    required_slack,
    violation_summary,
)
from bort_jax.search.bounds import LowerBounds
from bort_jax.search.budget import kappa_for, step_budget
from bort_jax.search.evaluator import Evaluator, candidate_key
from bort_jax.search.lookahead import Lookahead, speculate
from bort_jax.search.objective import WCoefficient, factor_fns, w_many
from bort_jax.search.options import (
    Assumptions,
    Candidate,
    CostFn,
    Leq,
    SearchOptions,
    validate_eps,
    validate_interval,
)
from bort_jax.search.result import (
    Costs,
    Evaluation,
    Guarantee,
    Outcome,
    SearchResult,
    make_result,
    pareto_front,
    statement,
)
from bort_jax.search.space import SearchSpace, componentwise_leq

UNIT_W = WCoefficient()  # α = β = γ = 1, e_ref = 1
M_ONLY = Assumptions()  # assumption M with δ = 0, nothing else
DEFAULTS = SearchOptions()

# The search's public names, wherever they are defined (one import for callers).
__all__ = [
    "AbncCheck",
    "AssumptionViolation",
    "AssumptionWarning",
    "Assumptions",
    "BlockCost",
    "Evaluation",
    "Guarantee",
    "SearchOptions",
    "SearchResult",
    "WCoefficient",
    "candidate_key",
    "check_abnc",
    "componentwise_leq",
    "convexity_violations",
    "exhaustive",
    "fptas",
    "kappa_for",
    "monotonicity_violations",
    "pareto_front",
    "required_slack",
    "step_budget",
    "validate_eps",
]


# ----------------------------------------------------------------------------- search


def _resolve(
    candidates: SearchSpace | Sequence[Candidate], leq: Leq | None
) -> tuple[list[Candidate], Leq]:
    if isinstance(candidates, SearchSpace):
        return candidates.candidates(), leq or candidates.leq
    cands = list(candidates)
    if not cands:
        raise ValueError("candidates: empty search space")
    if len(set(cands)) != len(cands):
        raise ValueError("candidates: duplicates are not allowed")
    return cands, leq or componentwise_leq


def _cheap_costs(cands: Sequence[Candidate], fn: CostFn, name: str) -> list[float]:
    out = []
    for c in cands:
        v = float(fn(c))
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}({c!r}) = {v}; must be finite and > 0")
        out.append(v)
    return out


def _bisect(
    star: int,
    pending: np.ndarray,
    up: Sequence[np.ndarray],
    matrix: np.ndarray,
    bounds: LowerBounds,
    coord: np.ndarray,
    s: int,
) -> int:
    """Step 4: the candidate to evaluate next, given ξ* = the pending candidate of largest UB.

    The interval of ξ* is the set of pending ζ with ξ* ≺ ζ ≺ anchor, anchor = the evaluated
    candidate that currently bounds ξ* (or, if none, the evaluated dominator of smallest coord;
    if none either, the whole pending up-set). With fewer than s candidates in it, ξ* itself is
    evaluated; otherwise the one nearest the midpoint of the interval in ``coord`` (ties: the
    smallest index) is, which bounds ξ* (and its whole down-set) from closer up.
    """
    anchor = int(bounds.source[star])
    if anchor >= 0 and not matrix[star, anchor]:
        anchor = -1
    ups = up[star]
    if anchor < 0:
        above = ups[bounds.evaluated[ups]]
        if above.size:
            anchor = int(above[np.lexsort((above, coord[above]))[0]])
    interval = ups[pending[ups]]
    if anchor >= 0:
        interval = interval[matrix[interval, anchor]]
    if interval.size < s:
        return star
    top = float(coord[anchor]) if anchor >= 0 else float(coord[interval].max())
    target = 0.5 * (float(coord[star]) + top)
    gap = np.abs(coord[interval] - target)
    return int(interval[gap == gap.min()][0])


def fptas(
    candidates: SearchSpace | Sequence[Candidate],
    p: CostFn,
    i: CostFn,
    e: CostFn,
    eps: float,
    s: int = 1,
    *,
    objective: WCoefficient = UNIT_W,
    assumptions: Assumptions = M_ONLY,
    options: SearchOptions = DEFAULTS,
) -> SearchResult:
    """Pick ξ maximising the W-coefficient to within (1 − ε), calling ``e`` as little as possible.

    Args:
      candidates: a `SearchSpace` or a sequence of distinct hashable candidates.
      p, i: cheap exact parameter count and inference cost (positive).
      e: expensive proxy error (positive); may raise (see ``options.on_error``).
      eps: approximation parameter in (0, 1).
      s: interval size: the interval above the most promising candidate is bisected while it
        holds at least s pending candidates (s = 1: always; large s: plain best-first).
      objective: the W-coefficient (Eq. W).
      assumptions: M's slack δ (lower bounds e(ξ')/(1+δ), Eq. B; trimming factor (1+δ)^γ,
        Eq. T) and the optional F, L, C (`options.Assumptions`).
      options: the order ⪯ (default the space's, or componentwise ≤; those two are evaluated
        with numpy, any other function on all |Ξ|² pairs), the share of ε spent on trimming,
        an evaluation budget, the cache, progress, error policy and candidate-parallelism
        (`options.SearchOptions`). Same e-values → same evaluations, choice and guarantee for
        any ``parallel``; see "Candidate-parallel search" in the module docstring.

    Every evaluated pair (chain, for C) is checked against the assumptions switched on; a
    violation beyond the declared slack is recorded in ``assumption_violations``, raised as an
    `AssumptionWarning`, and the guarantee is then not certified (see `assumptions`).
    """
    t0 = time.perf_counter()
    eps, s = validate_eps(eps), validate_interval(s)
    slack, e_floor, lipschitz = (
        assumptions.monotonicity_slack,
        assumptions.e_floor,
        assumptions.lipschitz,
    )
    distance, convex_in = assumptions.distance, assumptions.convex_in
    parallel, max_evaluations = options.parallel, options.max_evaluations
    cands, leq = _resolve(candidates, options.leq)
    n = len(cands)
    P, I = _cheap_costs(cands, p, "p"), _cheap_costs(cands, i, "i")
    p_ref, i_ref = max(P), max(I)
    matrix = ordering.dominance_matrix(cands, leq)
    up, down = ordering.up_down_lists(matrix)
    eps_t = options.trim_share * eps
    rho_stop = (1.0 - eps) * (1.0 + eps_t)
    approx_factors, exact_factor = factor_fns(objective, P, I, slack)
    trimmed = ordering.trim(up, approx_factors, exact_factor, 1.0 + eps_t)
    is_trimmed = np.zeros(n, dtype=bool)
    is_trimmed[list(trimmed)] = True
    dist_row: Callable[[int], np.ndarray] | None = None
    if lipschitz is not None and distance is None:
        log_p = np.array([math.log(v) for v in P])

        def dist_row(k: int) -> np.ndarray:  # d(ξ_j, ξ_k) for every j
            return np.abs(log_p - log_p[k])
    elif lipschitz is not None:

        def dist_row(k: int) -> np.ndarray:
            return np.array([float(distance(c, cands[k])) for c in cands], dtype=np.float64)

    x = None if convex_in is None else [float(convex_in(c)) for c in cands]
    coord = np.array(x or [math.log(a) + math.log(b) for a, b in zip(P, I)], dtype=np.float64)
    size = np.array([objective.size_score(a, b, p_ref, i_ref) for a, b in zip(P, I)])
    w_of = w_many(objective, P, I, p_ref, i_ref)
    bounds = LowerBounds(up, down, slack, e_floor, lipschitz, dist_row, x)
    checker = AssumptionChecker(cands, up, down, slack, e_floor, lipschitz, dist_row, x)
    errors = bounds.errors
    ub = np.array(w_of(np.arange(n), bounds.lower), dtype=np.float64)  # UB(ξ), Eq. B
    bounds.take_dirty()
    failed: dict[int, str] = {}
    is_failed = np.zeros(n, dtype=bool)
    order: list[int] = []
    best = 0.0  # max W over the evaluated candidates
    evaluator = _evaluator(e, options, n - len(trimmed), "FPTAS")
    lookahead = Lookahead(evaluator, cands)
    maximal = [k for k in range(n) if up[k].size == 0] if e_floor is None else []

    def pick(star: int, mask: np.ndarray) -> int:
        return _bisect(star, mask, up, matrix, bounds, coord, s)

    def guesses(first: int) -> list[int]:
        later = maximal[maximal.index(first) + 1 :] if first in maximal else []
        if len(later) >= parallel - 1:  # step 3: the maximal elements after it, in order
            return later
        mask = pending()
        mask[later] = False
        return later + speculate(first, mask, ub, size, down, parallel - 1 - len(later), pick)

    def evaluate(k: int) -> None:
        nonlocal best
        value, message = lookahead.get(k, guesses)
        if value is None:
            failed[k] = message or "failed"
            is_failed[k] = True
            for t, (j, _) in list(trimmed.items()):
                if j == k:  # its dominator is gone: the trimmed candidate must stand alone
                    del trimmed[t]
                    is_trimmed[t] = False
            return
        order.append(k)
        bounds.add(k, value)
        checker.check(k, bounds.err, bounds.evaluated)
        best = max(best, w_of(np.array([k]), np.array([value]))[0])
        dirty = bounds.take_dirty()
        if dirty.size:
            ub[dirty] = w_of(dirty, bounds.lower[dirty])

    def pending() -> np.ndarray:
        return ~(is_trimmed | bounds.evaluated | is_failed)

    def budget_left() -> bool:
        return max_evaluations is None or len(errors) + len(failed) < max_evaluations

    for k in maximal:  # step 3: the maximal elements bound every other candidate
        if budget_left():
            evaluate(k)
    stopped_by = "exhausted"
    while True:
        mask = pending()
        todo = np.flatnonzero(mask)
        if todo.size == 0:
            break
        ub_todo = ub[todo]
        top = float(ub_todo.max())
        status = {"best": best, "bound": top}
        n_violations = sum(checker.counts.values())
        if n_violations:
            status["violations"] = n_violations
        evaluator.postfix(**status)
        if best > 0 and best >= rho_stop * top:
            stopped_by = "bound"
            break
        if not budget_left():
            stopped_by = "budget"
            break
        tied = todo[ub_todo == top]  # ξ*: largest UB, then largest size score, then index
        star = int(tied[size[tied] == size[tied].max()][0])
        evaluate(pick(star, mask))
    evaluator.close()
    if not errors:
        raise RuntimeError("no candidate could be evaluated: " + "; ".join(failed.values()))
    todo = np.flatnonzero(pending())
    upper = max([best] + ub[todo].tolist())
    for j, f in trimmed.values():
        err_j = errors.get(j, float(bounds.lower[j]))
        upper = max(upper, f * w_of(np.array([j]), np.array([err_j]))[0])
    certified = best / upper if upper > 0 else 1.0
    ratio = (1.0 - eps) if stopped_by != "budget" else certified
    stated = assumptions.statements()
    words = statement(ratio, certified, stopped_by, len(order), n)
    violations = tuple(checker.violations)
    if violations:
        summary = violation_summary(violations, checker.counts)
        guarantee = Guarantee(
            None,
            None,
            None,
            stated,
            f"{summary} Had they held, the final bounds would give: {words}",
            certified=False,
        )
        checker.summary_warning()
    else:
        guarantee = Guarantee(ratio, certified, upper, stated, words)
    settings = {
        "eps": eps,
        "s": s,
        "e_floor": e_floor,
        "monotonicity_slack": slack,
        "lipschitz": lipschitz,
        "convex": x is not None,
        "trim_share": options.trim_share,
        "eps_trim": eps_t,
        "rho_stop": rho_stop,
        "max_evaluations": max_evaluations,
    }
    outcome = Outcome(
        "fptas",
        order,
        errors,
        failed,
        guarantee,
        stopped_by,
        trimmed,
        violations,
        rounds=lookahead.rounds,
        speculative=lookahead.unused,
    )
    return make_result(Costs(cands, P, I), outcome, objective, evaluator, t0, settings)


def exhaustive(
    candidates: SearchSpace | Sequence[Candidate],
    p: CostFn,
    i: CostFn,
    e: CostFn,
    *,
    objective: WCoefficient = UNIT_W,
    options: SearchOptions = DEFAULTS,
) -> SearchResult:
    """Evaluate every candidate and return the exact W-maximiser (the audit baseline).

    Its guarantee (ratio 1) assumes nothing about e, so no assumption is checked here; audit M
    and C on its evaluations with `monotonicity_violations` / `convexity_violations`.
    Of ``options`` it uses the cache, key, progress, error policy and ``parallel``: candidates
    evaluated concurrently, in rounds of that many (same result).
    """
    t0 = time.perf_counter()
    cands, _ = _resolve(candidates, None)
    P, I = _cheap_costs(cands, p, "p"), _cheap_costs(cands, i, "i")
    p_ref, i_ref = max(P), max(I)
    evaluator = _evaluator(e, options, len(cands), "exhaustive")
    parallel = options.parallel
    errors: dict[int, float] = {}
    failed: dict[int, str] = {}
    rounds = 0
    for start in range(0, len(cands), parallel):
        batch = cands[start : start + parallel]
        rounds += 1
        for k, c, got in zip(range(start, len(cands)), batch, evaluator.many(batch)):
            value, message = evaluator.settle(c, got)
            if value is None:
                failed[k] = message or "failed"
            else:
                errors[k] = value
    evaluator.close()
    if not errors:
        raise RuntimeError("no candidate could be evaluated: " + "; ".join(failed.values()))
    best = max(objective.value(P[k], I[k], v, p_ref, i_ref) for k, v in errors.items())
    guarantee = Guarantee(
        1.0,
        1.0,
        best,
        ("e deterministic per candidate",),
        statement(1.0, 1.0, "exhausted", len(errors), len(cands)),
    )
    outcome = Outcome(
        "exhaustive", list(errors), errors, failed, guarantee, "exhausted", rounds=rounds
    )
    return make_result(Costs(cands, P, I), outcome, objective, evaluator, t0)


def _evaluator(e: CostFn, options: SearchOptions, total: int, desc: str) -> Evaluator:
    """The `Evaluator` of a search: e with the cache, key, progress and error policy."""
    o = options
    return Evaluator(e, o.cache, o.key, o.on_error, o.progress, total, desc, o.parallel)
