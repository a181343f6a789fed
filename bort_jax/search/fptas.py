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

  Modules: the order ⪯ as a dominance matrix and ε-trimming (`order`, numpy), the lower bounds
  (`bounds`, numpy), the assumption checks (`assumptions`), calling e with cache and validation
  (`evaluator`); this module holds the objective, the records and the search loop.

  Step budget T(ε, s) = ⌈κ / (ε s^{3/2})⌉: Eq. R's second term divided by the number of
  (candidate, hyperparameter) trainings |Θ||Ξ| and by the cost of one SGD step |B|·|W*_T|;
  κ absorbs the smoothness constants and must be calibrated (`kappa_for`). The two uses of s
  (interval threshold in step 4, divisor in T) are independent reconstructions.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np

from bort_jax.search import order as ordering
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
from bort_jax.search.objective import WCoefficient, factor_fns, w_many
from bort_jax.search.options import validate_eps, validate_interval
from bort_jax.search.space import SearchSpace, componentwise_leq

Candidate = Hashable
CostFn = Callable[[Candidate], float]
Leq = Callable[[Candidate, Candidate], bool]
Distance = Callable[[Candidate, Candidate], float]
UNIT_W = WCoefficient()  # α = β = γ = 1, e_ref = 1

__all__ = [
    "AbncCheck",
    "AssumptionViolation",
    "AssumptionWarning",
    "BlockCost",
    "Evaluation",
    "Guarantee",
    "SearchResult",
    "WCoefficient",
    "candidate_key",
    "check_abnc",
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


# ----------------------------------------------------------------------------- records


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


# ----------------------------------------------------------------------------- pure helpers


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


# ----------------------------------------------------------------------------- AB^nC check


@dataclasses.dataclass(frozen=True)
class BlockCost:
    """Parameter count and FLOPs of one block of an AB^nC network."""

    params: float
    flops: float


@dataclasses.dataclass(frozen=True)
class AbncCheck:
    """Condition 1 of the AB^nC property: A and C cheaper than one B, in parameters and FLOPs."""

    first: BlockCost
    middle: BlockCost
    last: BlockCost
    n_middle: int | None
    cheaper: Mapping[str, bool]
    ratios: Mapping[str, float]
    holds: bool
    guarantee: str

    def lines(self) -> list[str]:
        """Human-readable lines (used by the Markdown report)."""
        out = [
            f"- A (first): params={self.first.params:,.0f} flops={self.first.flops:,.0f}",
            f"- B (one middle): params={self.middle.params:,.0f} flops={self.middle.flops:,.0f}",
            f"- C (last): params={self.last.params:,.0f} flops={self.last.flops:,.0f}",
        ]
        out += [
            f"- {k}: {'yes' if v else 'NO'} (ratio {self.ratios[k]:.3g})"
            for k, v in self.cheaper.items()
        ]
        out.append(f"- condition 1 holds: {'yes' if self.holds else 'NO'}")
        out.append(f"- guarantee: {self.guarantee}")
        return out


def _as_block(cost: Any, name: str) -> BlockCost:
    if isinstance(cost, BlockCost):
        return cost
    if isinstance(cost, Mapping):
        if "params" not in cost or "flops" not in cost:
            raise ValueError(f"{name}: mapping needs 'params' and 'flops' keys, got {sorted(cost)}")
        return BlockCost(float(cost["params"]), float(cost["flops"]))
    if isinstance(cost, (tuple, list)) and len(cost) == 2:
        return BlockCost(float(cost[0]), float(cost[1]))
    raise ValueError(f"{name}: expected BlockCost, {{'params','flops'}} or (params, flops)")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def check_abnc(
    costs_first: Any, costs_middle: Any, costs_last: Any, n_middle: int | None = None
) -> AbncCheck:
    """Check AB^nC condition 1 (A and C cheaper than B in params and FLOPs) and state what holds.

    Each cost is a `BlockCost`, a mapping with 'params' and 'flops', or a (params, flops) pair:
    A = input block (embeddings), B = one repeated block (encoder layer), C = output block (head).
    Conditions 2-3 (L-smooth objective with bounded stochastic gradients, SGD) and strong convexity
    concern the training problem and cannot be read off costs; they are reported as assumptions.
    """
    a, b, c = (
        _as_block(x, n)
        for x, n in (
            (costs_first, "costs_first"),
            (costs_middle, "costs_middle"),
            (costs_last, "costs_last"),
        )
    )
    ratios = {
        "A<B params": _ratio(a.params, b.params),
        "A<B flops": _ratio(a.flops, b.flops),
        "C<B params": _ratio(c.params, b.params),
        "C<B flops": _ratio(c.flops, b.flops),
    }
    cheaper = {k: v < 1.0 for k, v in ratios.items()}
    if n_middle is not None:
        ratios["A<n·B params"] = _ratio(a.params, n_middle * b.params)
        cheaper["A<n·B params"] = ratios["A<n·B params"] < 1.0
    holds = all(cheaper[k] for k in ("A<B params", "A<B flops", "C<B params", "C<B flops"))
    if holds:
        text = (
            "Condition 1 holds. The paper's FPTAS theorem additionally needs conditions 2-3 "
            "(L-smooth objective, bounded stochastic gradients, SGD) and, for ratio |1-ε|, "
            "mu-strong convexity (strong AB^nC), which transformers do not satisfy exactly. "
            "This library's (1-ε) bound needs only assumption M on the e-values."
        )
    else:
        failed = ", ".join(
            k for k in ("A<B params", "A<B flops", "C<B params", "C<B flops") if not cheaper[k]
        )
        text = (
            f"Condition 1 FAILS ({failed}): the paper's FPTAS theorem does not apply as "
            "stated. This library's bound W(chosen) >= (1-ε)·OPT does not use condition 1 and "
            "still holds for the e-values returned, given assumption M. What is lost is the "
            "paper's argument that bounded-step proxy error ranks candidates like converged "
            "error; check that empirically (audit with longer proxy training)."
        )
    return AbncCheck(a, b, c, n_middle, cheaper, ratios, holds, text)


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


def _statement(ratio: float, certified: float, stopped_by: str, n_eval: int, n: int) -> str:
    return (
        f"W(chosen) >= {ratio:.4f} x OPT a priori and >= {certified:.4f} x OPT certified "
        f"from the final bounds, over all non-failed candidates, under the listed "
        f"assumptions; stopped by {stopped_by} after {n_eval}/{n} evaluations."
    )


def _assumptions(
    slack: float, e_floor: float | None, lipschitz: float | None, convex: bool
) -> tuple[str, ...]:
    out = [
        f"M: xi <= xi' (leq) implies e(xi) >= e(xi')/(1+{slack:g})",
        "p, i exact; e deterministic per candidate (cached values are reused)",
    ]
    if e_floor is not None:
        out.append(f"F: e(xi) >= {e_floor:g} for every candidate")
    if lipschitz is not None:
        out.append(f"L: |e(xi) - e(xi')| <= {lipschitz:g} * d(xi, xi')")
    if convex:
        out.append(
            f"C: some e~ with e~ <= e <= (1+{slack:g}) e~ is non-increasing along leq and "
            "convex in x = convex_in(xi) along every chain xi0 <= xi1 <= xi2"
        )
    return tuple(out)


def _check_options(
    eps: float,
    s: int,
    trim_share: float,
    slack: float,
    e_floor: float | None,
    lipschitz: float | None,
) -> tuple[float, int]:
    eps, s = validate_eps(eps), validate_interval(s)
    if not 0.0 < trim_share < 1.0:
        raise ValueError(f"trim_share must be in (0, 1), got {trim_share!r}")
    if not slack >= 0:
        raise ValueError(f"monotonicity_slack must be >= 0, got {slack!r}")
    if e_floor is not None and not e_floor > 0:
        raise ValueError(f"e_floor must be > 0, got {e_floor!r}")
    if lipschitz is not None and not lipschitz >= 0:
        raise ValueError(f"lipschitz must be >= 0, got {lipschitz!r}")
    return eps, s


class _Lookahead:
    """E-values for the search loop, fetched in concurrent rounds of up to ``parallel``.

    ``get(k, speculate)`` returns candidate k's outcome; when it is not at hand, one round
    evaluates k together with ``speculate(k)`` (candidates the loop may ask for next) through
    `Evaluator.many`. Outcomes not asked for stay at hand; at the end they are the speculative
    evaluations the search did not need.
    """

    def __init__(self, evaluator: Evaluator, cands: Sequence[Candidate]) -> None:
        self.evaluator, self.cands = evaluator, cands
        self.at_hand: dict[int, Any] = {}
        self.rounds = 0

    def get(self, k: int, speculate: Callable[[int], list[int]]) -> tuple[float | None, str | None]:
        if k not in self.at_hand:
            batch = [k]
            if self.evaluator.parallel > 1:
                extra = [j for j in speculate(k) if j != k and j not in self.at_hand]
                batch += list(dict.fromkeys(extra))[: self.evaluator.parallel - 1]
            outcomes = self.evaluator.many([self.cands[j] for j in batch])
            self.at_hand.update(zip(batch, outcomes))
            self.rounds += 1
        return self.evaluator.settle(self.cands[k], self.at_hand.pop(k))

    @property
    def unused(self) -> int:
        """Speculative e-calls whose values the search never asked for."""
        return len(self.at_hand)


def _speculate(
    first: int,
    pending: np.ndarray,
    ub: np.ndarray,
    size: np.ndarray,
    down: Sequence[np.ndarray],
    count: int,
    pick: Callable[[int, np.ndarray], int],
) -> list[int]:
    """Up to ``count`` candidates the loop may ask for after ``first`` (candidate-parallel).

    Repeatedly: ξ* = the largest-UB candidate among the pending ones outside the down-sets of
    the candidates already chosen (the bounds a round's results leave unchanged), then its
    step-4 choice ``pick(ξ*, pending)``. A guess only: correctness never depends on it.
    """
    avail = pending.copy()
    avail[first] = False
    avail[down[first]] = False
    picks: list[int] = []
    while len(picks) < count:
        todo = np.flatnonzero(avail)
        if todo.size == 0:
            break
        top = ub[todo].max()
        tied = todo[ub[todo] == top]
        star = int(tied[size[tied] == size[tied].max()][0])
        j = pick(star, pending)
        avail[star] = False
        if j != first and j not in picks and pending[j]:
            picks.append(j)
            avail[j] = False
            avail[down[j]] = False
    return picks


def fptas(
    candidates: SearchSpace | Sequence[Candidate],
    p: CostFn,
    i: CostFn,
    e: CostFn,
    eps: float,
    s: int = 1,
    *,
    objective: WCoefficient = UNIT_W,
    leq: Leq | None = None,
    e_floor: float | None = None,
    monotonicity_slack: float = 0.0,
    lipschitz: float | None = None,
    distance: Distance | None = None,
    convex_in: CostFn | None = None,
    trim_share: float = 0.5,
    cache: Any = None,
    key: Callable[[Candidate], str] = candidate_key,
    progress: bool = False,
    on_error: str = "raise",
    max_evaluations: int | None = None,
    parallel: int = 1,
) -> SearchResult:
    """Pick ξ maximising the W-coefficient to within (1 − ε), calling ``e`` as little as possible.

    Args:
      candidates: a `SearchSpace` or a sequence of distinct hashable candidates.
      p, i: cheap exact parameter count and inference cost (positive).
      e: expensive proxy error (positive); may raise (see ``on_error``).
      eps: approximation parameter in (0, 1).
      s: interval size: the interval above the most promising candidate is bisected while it
        holds at least s pending candidates (s = 1: always; large s: plain best-first).
      objective: the W-coefficient (Eq. W).
      leq: partial order ξ ⪯ ξ' (sub-architecture); default the space's order or componentwise ≤.
        Those two are evaluated with numpy (`order.dominance_matrix`); any other function is
        called on all |Ξ|² pairs.
      e_floor: optional known lower bound on every error (assumption F).
      monotonicity_slack: δ in assumption M (and C): lower bounds e(ξ') / (1+δ) (Eq. B) and the
        factor (1+δ)^γ of ε-trimming (Eq. T).
      lipschitz, distance: optional assumption L (default distance |log p − log p'|).
      convex_in: optional coordinate x(ξ), increasing along ⪯, in which error is convex along
        chains (assumption C; e.g. log of non-embedding parameters, as in scaling laws).
      trim_share: share of ε spent on trimming (Eq. T); the rest on the stopping rule (Eq. S).
      cache: object with get(key)/put(key, value) (or a dict); valid hits are not re-evaluated,
        invalid cached values (NaN, inf, ≤ 0) are recomputed.
      key: candidate → cache key.
      progress: show a tqdm bar with ETA.
      on_error: 'raise', or 'skip' to drop a candidate whose e fails (guarantee then over the rest).
      max_evaluations: hard budget; if it binds, only the certified ratio holds.
      parallel: evaluate up to this many candidates concurrently (threads calling ``e``; give
        each call its own devices). Same e-values → same evaluations, choice and guarantee as
        ``parallel=1``; see "Candidate-parallel search" in the module docstring.

    Every evaluated pair (chain, for C) is checked against the assumptions switched on; a
    violation beyond the declared slack is recorded in ``assumption_violations``, raised as an
    `AssumptionWarning`, and the guarantee is then not certified (see `assumptions`).
    """
    t0 = time.perf_counter()
    slack = monotonicity_slack
    eps, s = _check_options(eps, s, trim_share, slack, e_floor, lipschitz)
    cands, leq = _resolve(candidates, leq)
    n = len(cands)
    P, I = _cheap_costs(cands, p, "p"), _cheap_costs(cands, i, "i")
    p_ref, i_ref = max(P), max(I)
    matrix = ordering.dominance_matrix(cands, leq)
    up, down = ordering.up_down_lists(matrix)
    eps_t = trim_share * eps
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
    evaluator = Evaluator(e, cache, key, on_error, progress, n - len(trimmed), "FPTAS", parallel)
    lookahead = _Lookahead(evaluator, cands)
    maximal = [k for k in range(n) if up[k].size == 0] if e_floor is None else []

    def pick(star: int, mask: np.ndarray) -> int:
        return _bisect(star, mask, up, matrix, bounds, coord, s)

    def speculate(first: int) -> list[int]:
        later = maximal[maximal.index(first) + 1 :] if first in maximal else []
        if len(later) >= parallel - 1:  # step 3: the maximal elements after it, in order
            return later
        mask = pending()
        mask[later] = False
        return later + _speculate(first, mask, ub, size, down, parallel - 1 - len(later), pick)

    def evaluate(k: int) -> None:
        nonlocal best
        value, message = lookahead.get(k, speculate)
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
    assumptions = _assumptions(slack, e_floor, lipschitz, x is not None)
    statement = _statement(ratio, certified, stopped_by, len(order), n)
    violations = tuple(checker.violations)
    if violations:
        summary = violation_summary(violations, checker.counts)
        guarantee = Guarantee(
            None,
            None,
            None,
            assumptions,
            f"{summary} Had they held, the final bounds would give: {statement}",
            certified=False,
        )
        checker.summary_warning()
    else:
        guarantee = Guarantee(ratio, certified, upper, assumptions, statement)
    settings = {
        "e_floor": e_floor,
        "monotonicity_slack": slack,
        "lipschitz": lipschitz,
        "convex": x is not None,
        "trim_share": trim_share,
        "eps_trim": eps_t,
        "rho_stop": rho_stop,
        "max_evaluations": max_evaluations,
    }
    return _result(
        "fptas",
        cands,
        order,
        errors,
        failed,
        trimmed,
        P,
        I,
        p_ref,
        i_ref,
        objective,
        guarantee,
        eps,
        s,
        stopped_by,
        evaluator,
        t0,
        settings,
        violations,
        rounds=lookahead.rounds,
        speculative=lookahead.unused,
    )


def exhaustive(
    candidates: SearchSpace | Sequence[Candidate],
    p: CostFn,
    i: CostFn,
    e: CostFn,
    *,
    objective: WCoefficient = UNIT_W,
    cache: Any = None,
    key: Callable[[Candidate], str] = candidate_key,
    progress: bool = False,
    on_error: str = "raise",
    parallel: int = 1,
) -> SearchResult:
    """Evaluate every candidate and return the exact W-maximiser (the audit baseline).

    Its guarantee (ratio 1) assumes nothing about e, so no assumption is checked here; audit M
    and C on its evaluations with `monotonicity_violations` / `convexity_violations`.
    ``parallel``: candidates evaluated concurrently, in rounds of that many (same result).
    """
    t0 = time.perf_counter()
    cands, _ = _resolve(candidates, None)
    P, I = _cheap_costs(cands, p, "p"), _cheap_costs(cands, i, "i")
    p_ref, i_ref = max(P), max(I)
    evaluator = Evaluator(e, cache, key, on_error, progress, len(cands), "exhaustive", parallel)
    errors: dict[int, float] = {}
    failed: dict[int, str] = {}
    rounds = 0
    for start in range(0, len(cands), parallel):
        batch = cands[start : start + parallel]
        rounds += 1
        for k, c, outcome in zip(range(start, len(cands)), batch, evaluator.many(batch)):
            value, message = evaluator.settle(c, outcome)
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
        _statement(1.0, 1.0, "exhausted", len(errors), len(cands)),
    )
    return _result(
        "exhaustive",
        cands,
        list(errors),
        errors,
        failed,
        {},
        P,
        I,
        p_ref,
        i_ref,
        objective,
        guarantee,
        None,
        None,
        "exhausted",
        evaluator,
        t0,
        {},
        (),
        rounds=rounds,
    )


def _result(
    method: str,
    cands: Sequence[Candidate],
    order: Sequence[int],
    errors: Mapping[int, float],
    failed: Mapping[int, str],
    trimmed: Mapping[int, tuple[int, float]],
    P: Sequence[float],
    I: Sequence[float],
    p_ref: float,
    i_ref: float,
    objective: WCoefficient,
    guarantee: Guarantee,
    eps: float | None,
    s: int | None,
    stopped_by: str,
    evaluator: Evaluator,
    t0: float,
    settings: Mapping[str, Any],
    violations: tuple[AssumptionViolation, ...],
    *,
    rounds: int,
    speculative: int = 0,
) -> SearchResult:
    evals = tuple(
        Evaluation(
            cands[k], P[k], I[k], errors[k], objective.value(P[k], I[k], errors[k], p_ref, i_ref)
        )
        for k in order
    )
    chosen = max(evals, key=lambda ev: ev.objective)  # first maximiser in evaluation order
    return SearchResult(
        method=method,
        chosen=chosen.candidate,
        objective=chosen.objective,
        chosen_evaluation=chosen,
        evaluations=evals,
        pareto_front=pareto_front(evals),
        n_candidates=len(cands),
        n_evaluations=len(evals) + len(failed),
        n_e_calls=evaluator.calls,
        n_cache_hits=evaluator.hits,
        trimmed=tuple((cands[t], cands[j], f) for t, (j, f) in sorted(trimmed.items())),
        failed=tuple((cands[k], m) for k, m in sorted(failed.items())),
        guarantee=guarantee,
        objective_spec=objective,
        p_ref=p_ref,
        i_ref=i_ref,
        eps=eps,
        s=s,
        stopped_by=stopped_by,
        wall_time_s=time.perf_counter() - t0,
        settings=dict(settings),
        assumption_violations=violations,
        n_cache_rejected=evaluator.rejected,
        parallel=evaluator.parallel,
        n_rounds=rounds,
        n_speculative=speculative,
    )
