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
  Not proved here: that M (or C) holds for real proxy-trained networks (audit with
  `monotonicity_violations`, `convexity_violations`), nor that proxy error ranks candidates as
  converged error does (the paper's strong-AB^nC argument: μ-strong convexity, L-smoothness,
  bounded stochastic gradients, SGD).

  Step budget T(ε, s) = ⌈κ / (ε s^{3/2})⌉: Eq. R's second term divided by the number of
  (candidate, hyperparameter) trainings |Θ||Ξ| and by the cost of one SGD step |B|·|W*_T|;
  κ absorbs the smoothness constants and must be calibrated (`kappa_for`). The two uses of s
  (interval threshold in step 4, divisor in T) are independent reconstructions.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from typing import Any, Callable, Hashable, Mapping, Sequence

from bort_jax.search.space import SearchSpace, componentwise_leq

Candidate = Hashable
CostFn = Callable[[Candidate], float]
Leq = Callable[[Candidate, Candidate], bool]
Distance = Callable[[Candidate, Candidate], float]


# ----------------------------------------------------------------------------- objective


@dataclasses.dataclass(frozen=True)
class WCoefficient:
    """Eq. W: W = (p_ref/p)^alpha (i_ref/i)^beta (e_ref/e)^gamma, maximised [reconstructed]."""

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    e_ref: float = 1.0

    def __post_init__(self) -> None:
        for name in ("alpha", "beta"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"WCoefficient.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "e_ref"):
            if not getattr(self, name) > 0:
                raise ValueError(f"WCoefficient.{name} must be > 0, got {getattr(self, name)}")

    def size_score(self, p: float, i: float, p_ref: float, i_ref: float) -> float:
        """S(ξ) = (p_ref/p)^alpha (i_ref/i)^beta: the part of W known without training."""
        return (p_ref / p) ** self.alpha * (i_ref / i) ** self.beta

    def value(self, p: float, i: float, e: float, p_ref: float, i_ref: float) -> float:
        """W(ξ); +inf when ``e`` is 0 (used for bounds with no information)."""
        if e <= 0:
            return math.inf
        return self.size_score(p, i, p_ref, i_ref) * (self.e_ref / e) ** self.gamma

    def dominance_factor(self, p: float, i: float, p_dom: float, i_dom: float,
                         slack: float) -> float:
        """Largest W(ξ)/W(ξ') possible under M when ξ ⪯ ξ' (Eq. T); references cancel."""
        return ((p_dom / p) ** self.alpha * (i_dom / i) ** self.beta
                * (1.0 + slack) ** self.gamma)


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

    ratio: a-priori bound W(chosen)/OPT ≥ ratio (1 − ε; 1.0 for exhaustive search).
    certified_ratio: a-posteriori bound W(chosen)/upper_bound_opt, ≥ ratio unless stopped by budget.
    upper_bound_opt: proven upper bound on max W over all non-failed candidates.
    assumptions: the assumptions under which both bounds are proved.
    statement: one-paragraph human-readable form.
    """

    ratio: float
    certified_ratio: float
    upper_bound_opt: float
    assumptions: tuple[str, ...]
    statement: str


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Outcome of `fptas` or `exhaustive`.

    n_evaluations counts distinct candidates whose error the algorithm needed (the cost measure to
    compare with exhaustive search); n_e_calls counts actual calls to ``e`` (cache hits excluded).
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


# ----------------------------------------------------------------------------- pure helpers


def validate_eps(eps: float) -> float:
    """ε must lie in the open interval (0, 1)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 < eps < 1.0:
        raise ValueError(f"eps must be in the open interval (0, 1), got {eps!r}")
    return float(eps)


def validate_interval(s: int) -> int:
    """The interval size s is a positive integer (bisection threshold of step 4)."""
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
        raise ValueError(f"s (interval size) must be a positive int, got {s!r}")
    return s


def step_budget(eps: float, s: float, kappa: float, *, min_steps: int = 1,
                max_steps: int | None = None) -> int:
    """Proxy-training steps per candidate, T(ε, s) = ⌈κ / (ε s^{3/2})⌉, clipped [reconstructed].

    It is the per-training share of Eq. R's second term (total work / (|Θ||Ξ| trainings ·
    |B||W*_T| per step)). κ is problem-specific; calibrate it with `kappa_for`.
    """
    eps = validate_eps(eps)
    if not s > 0:
        raise ValueError(f"s must be > 0, got {s!r}")
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0, got {kappa!r}")
    steps = max(min_steps, math.ceil(kappa / (eps * s ** 1.5)))
    return steps if max_steps is None else min(steps, max_steps)


def kappa_for(steps: int, eps: float, s: float) -> float:
    """Inverse of `step_budget`: the κ that gives ``steps`` at (ε, s)."""
    return float(steps) * validate_eps(eps) * s ** 1.5


def runtime_bound(n_candidates: int, n_hparams: int, batch_size: int, max_weights: int,
                  eps: float, s: float) -> float:
    """Eq. R without its constant: |Ξ| + |W*_T| (1 + |Θ||B||Ξ| / (ε s^{3/2})) [paper]."""
    eps = validate_eps(eps)
    return n_candidates + max_weights * (
        1.0 + n_hparams * batch_size * n_candidates / (eps * s ** 1.5))


def _dominates(a: Evaluation, b: Evaluation) -> bool:
    no_worse = a.p <= b.p and a.i <= b.i and a.e <= b.e
    return no_worse and (a.p < b.p or a.i < b.i or a.e < b.e)


def pareto_front(evaluations: Sequence[Evaluation]) -> tuple[Evaluation, ...]:
    """Evaluations not dominated in (p, i, e), all minimised; input order kept."""
    return tuple(x for x in evaluations if not any(_dominates(y, x) for y in evaluations))


def monotonicity_violations(evaluations: Sequence[Evaluation], leq: Leq = componentwise_leq,
                            slack: float = 0.0) -> list[tuple[Evaluation, Evaluation, float]]:
    """Pairs (small ⪯ big) breaking assumption M: e(small) < e(big)/(1+slack).

    Each entry is (small, big, needed) with needed = e(big)/e(small) − 1, the slack δ that pair
    would require. Use on an audit's exhaustive evaluations to measure how well M holds.
    """
    out = []
    for a in evaluations:
        for b in evaluations:
            if a is not b and a.candidate != b.candidate and leq(a.candidate, b.candidate):
                if a.e * (1.0 + slack) < b.e:
                    out.append((a, b, b.e / a.e - 1.0))
    return out


def required_slack(evaluations: Sequence[Evaluation], leq: Leq = componentwise_leq) -> float:
    """Smallest δ for which M holds on ``evaluations``."""
    return max((v[2] for v in monotonicity_violations(evaluations, leq)), default=0.0)


def convexity_violations(evaluations: Sequence[Evaluation], x: CostFn,
                         leq: Leq = componentwise_leq, slack: float = 0.0
                         ) -> list[tuple[Evaluation, Evaluation, Evaluation, float]]:
    """Chains ξ0 ⪯ ξ1 ⪯ ξ2 where e(ξ0) is below the secant bound of assumption C.

    Each entry is (ξ0, ξ1, ξ2, excess) with excess = bound/e(ξ0) − 1 > 0. O(|E|³) worst case.
    """
    evs = list(evaluations)
    xs = [float(x(ev.candidate)) for ev in evs]
    below = [[a for a in range(len(evs)) if a != b and leq(evs[a].candidate, evs[b].candidate)]
             for b in range(len(evs))]
    out = []
    for k2 in range(len(evs)):
        for k1 in below[k2]:
            if xs[k2] <= xs[k1]:
                continue
            t1 = evs[k1].e / (1.0 + slack)
            slope = max(0.0, t1 - evs[k2].e) / (xs[k2] - xs[k1])
            for k0 in below[k1]:
                bound = t1 + slope * (xs[k1] - xs[k0])
                if evs[k0].e < bound * (1.0 - 1e-12):
                    out.append((evs[k0], evs[k1], evs[k2], bound / evs[k0].e - 1.0))
    return out


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
        out = [f"- A (first): params={self.first.params:,.0f} flops={self.first.flops:,.0f}",
               f"- B (one middle): params={self.middle.params:,.0f} "
               f"flops={self.middle.flops:,.0f}",
               f"- C (last): params={self.last.params:,.0f} flops={self.last.flops:,.0f}"]
        out += [f"- {k}: {'yes' if v else 'NO'} (ratio {self.ratios[k]:.3g})"
                for k, v in self.cheaper.items()]
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


def check_abnc(costs_first: Any, costs_middle: Any, costs_last: Any,
               n_middle: int | None = None) -> AbncCheck:
    """Check AB^nC condition 1 (A and C cheaper than B in params and FLOPs) and state what holds.

    Each cost is a `BlockCost`, a mapping with 'params' and 'flops', or a (params, flops) pair:
    A = input block (embeddings), B = one repeated block (encoder layer), C = output block (head).
    Conditions 2-3 (L-smooth objective with bounded stochastic gradients, SGD) and strong convexity
    concern the training problem and cannot be read off costs; they are reported as assumptions.
    """
    a, b, c = (_as_block(x, n) for x, n in ((costs_first, "costs_first"),
                                            (costs_middle, "costs_middle"),
                                            (costs_last, "costs_last")))
    ratios = {"A<B params": _ratio(a.params, b.params), "A<B flops": _ratio(a.flops, b.flops),
              "C<B params": _ratio(c.params, b.params), "C<B flops": _ratio(c.flops, b.flops)}
    cheaper = {k: v < 1.0 for k, v in ratios.items()}
    if n_middle is not None:
        ratios["A<n·B params"] = _ratio(a.params, n_middle * b.params)
        cheaper["A<n·B params"] = ratios["A<n·B params"] < 1.0
    holds = all(cheaper[k] for k in ("A<B params", "A<B flops", "C<B params", "C<B flops"))
    if holds:
        text = ("Condition 1 holds. The paper's FPTAS theorem additionally needs conditions 2-3 "
                "(L-smooth objective, bounded stochastic gradients, SGD) and, for ratio |1-ε|, "
                "mu-strong convexity (strong AB^nC), which transformers do not satisfy exactly. "
                "This library's (1-ε) bound needs only assumption M on the e-values.")
    else:
        failed = ", ".join(k for k in ("A<B params", "A<B flops", "C<B params", "C<B flops")
                           if not cheaper[k])
        text = (f"Condition 1 FAILS ({failed}): the paper's FPTAS theorem does not apply as "
                "stated. This library's bound W(chosen) >= (1-ε)·OPT does not use condition 1 and "
                "still holds for the e-values returned, given assumption M. What is lost is the "
                "paper's argument that bounded-step proxy error ranks candidates like converged "
                "error; check that empirically (audit with longer proxy training).")
    return AbncCheck(a, b, c, n_middle, cheaper, ratios, holds, text)


# ----------------------------------------------------------------------------- caching


def candidate_key(candidate: Candidate) -> str:
    """Default cache key: the candidate's repr (stable for NamedTuples and dataclasses)."""
    return repr(candidate)


class JsonFileCache:
    """A get/put cache persisted as one JSON object {key: error}; each put rewrites atomically.

    Makes long searches resumable: rerun with the same file and finished candidates are not
    retrained.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._data: dict[str, float] = {}
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as fh:
                self._data = {str(k): float(v) for k, v in json.load(fh).items()}

    def get(self, key: str) -> float | None:
        return self._data.get(key)

    def put(self, key: str, value: float) -> None:
        self._data[key] = float(value)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self._data, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def __len__(self) -> int:
        return len(self._data)


class _Evaluator:
    """Calls e through an optional cache, counts calls, handles failures, drives a progress bar."""

    def __init__(self, e: CostFn, cache: Any, key: Callable[[Candidate], str], on_error: str,
                 progress: bool, total: int, desc: str) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.e, self.cache, self.key, self.on_error = e, cache, key, on_error
        self.calls = 0
        self.hits = 0
        self.bar = None
        if progress:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="cand")

    def __call__(self, candidate: Candidate) -> tuple[float | None, str | None]:
        value = self._lookup(candidate)
        if value is not None:
            self.hits += 1
            self._tick()
            return value, None
        try:
            self.calls += 1
            value = float(self.e(candidate))
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"e({candidate!r}) = {value}; errors must be finite and > 0")
        except Exception as exc:  # noqa: BLE001 - policy decided by on_error
            if self.on_error == "raise":
                self.close()
                raise
            self._tick()
            return None, f"{type(exc).__name__}: {exc}"
        if self.cache is not None:
            put = getattr(self.cache, "put", None)
            if put is not None:
                put(self.key(candidate), value)
            else:
                self.cache[self.key(candidate)] = value
        self._tick()
        return value, None

    def _lookup(self, candidate: Candidate) -> float | None:
        if self.cache is None:
            return None
        value = self.cache.get(self.key(candidate))
        return None if value is None else float(value)

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def postfix(self, **values: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ----------------------------------------------------------------------------- search


def _resolve(candidates: SearchSpace | Sequence[Candidate],
             leq: Leq | None) -> tuple[list[Candidate], Leq]:
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


def _strict_dominators(cands: Sequence[Candidate], leq: Leq) -> list[list[int]]:
    """up[k] = indices j ≠ k with cands[k] ⪯ cands[j]."""
    n = len(cands)
    up: list[list[int]] = [[] for _ in range(n)]
    for k in range(n):
        for j in range(n):
            if j != k and leq(cands[k], cands[j]):
                if leq(cands[j], cands[k]):
                    raise ValueError(f"leq is not antisymmetric on {cands[k]!r}, {cands[j]!r}")
                up[k].append(j)
    return up


def _trim(up: Sequence[Sequence[int]], factor: Callable[[int, int], float],
          limit: float) -> dict[int, tuple[int, float]]:
    """Eq. T, top-down along ⪯ (fewer dominators first): {trimmed: (kept dominator, factor)}."""
    order = sorted(range(len(up)), key=lambda k: (len(up[k]), k))
    trimmed: dict[int, tuple[int, float]] = {}
    for k in order:
        options = [(factor(k, j), j) for j in up[k] if j not in trimmed]
        if options:
            f, j = min(options)
            if f <= limit:
                trimmed[k] = (j, f)
    return trimmed


class _LowerBounds:
    """Lower bounds LB(ξ) on e(ξ) from the evaluated candidates (Eq. B), kept incrementally.

    M: LB(ξ) ≥ e(ξ')/(1+δ) for evaluated ξ' ⪰ ξ.  F: LB ≥ e_floor.  L: LB ≥ e(ξ') − L·d(ξ, ξ').
    C (if ``x`` is given), with t1 = e(ξ1)/(1+δ), for an evaluated ξ1 and evaluated partners:
      down: ξ ⪯ ξ1 ⪯ ξ2, x1 < x2:  LB(ξ) ≥ t1 + σ↓(ξ1)·(x1 − x),
            σ↓(ξ1) = max_ξ2 max(0, t1 − e(ξ2))/(x2 − x1);
      up:   ξ0 ⪯ ξ1 ⪯ ξ, x0 < x1:  LB(ξ) ≥ t1 + σ↑(ξ1)·(x − x1),
            σ↑(ξ1) = max_ξ0 (t1 − e(ξ0))/(x1 − x0)  (≤ 0);
    both are the secant bounds of a function convex in x along a chain, extended outside the
    secant's interval, with each end moved to its least favourable value.
    """

    def __init__(self, up: Sequence[Sequence[int]], down: Sequence[Sequence[int]], slack: float,
                 floor: float | None, lipschitz: float | None,
                 dist: Callable[[int, int], float], x: Sequence[float] | None) -> None:
        self.up, self.down, self.slack = up, down, slack
        self.lipschitz, self.dist, self.x = lipschitz, dist, x
        self.lower = [floor or 0.0] * len(up)
        self.source: list[int | None] = [None] * len(up)  # evaluated index behind lower[j]
        self.errors: dict[int, float] = {}
        self.slope_down: dict[int, float] = {}
        self.slope_up: dict[int, float] = {}

    def add(self, k: int, value: float) -> None:
        self.errors[k] = value
        t = value / (1.0 + self.slack)
        for j in self.down[k]:
            self._raise(j, t, k)
        if self.lipschitz is not None:
            for j in range(len(self.lower)):
                self._raise(j, value - self.lipschitz * self.dist(j, k), k)
        if self.x is not None:
            for low in [k] + [j for j in self.down[k] if j in self.errors]:
                self._extend_down(low)
            for high in [k] + [j for j in self.up[k] if j in self.errors]:
                self._extend_up(high)

    def _raise(self, j: int, bound: float, source: int) -> None:
        if bound > self.lower[j]:
            self.lower[j] = bound
            self.source[j] = source

    def _slope(self, k: int, other: int) -> float | None:
        """(t_k − e_other)/(x_other − x_k): the secant slope of a chain pair, pessimistically."""
        gap = self.x[other] - self.x[k]
        if gap == 0:
            return None
        return (self.errors[k] / (1.0 + self.slack) - self.errors[other]) / gap

    def _extend_down(self, low: int) -> None:
        slopes = [self._slope(low, h) for h in self.up[low]
                  if h in self.errors and self.x[h] > self.x[low]]
        best = max([0.0] + [v for v in slopes if v is not None])
        if best > self.slope_down.get(low, 0.0):
            self.slope_down[low] = best
            t_low = self.errors[low] / (1.0 + self.slack)
            for j in self.down[low]:
                self._raise(j, t_low + best * (self.x[low] - self.x[j]), low)

    def _extend_up(self, high: int) -> None:
        slopes = [-self._slope(high, lo) for lo in self.down[high]
                  if lo in self.errors and self.x[lo] < self.x[high]]
        if not slopes:
            return
        best = max(slopes)  # ≤ 0 when M holds; the least steep descent is the tightest
        if high not in self.slope_up or best > self.slope_up[high]:
            self.slope_up[high] = best
            t_high = self.errors[high] / (1.0 + self.slack)
            for j in self.up[high]:
                if self.x[j] > self.x[high]:
                    self._raise(j, t_high + best * (self.x[j] - self.x[high]), high)


def _bisect(star: int, pending: set[int], up: Sequence[Sequence[int]],
            down_sets: Sequence[set[int]], bounds: _LowerBounds, coord: Sequence[float],
            s: int) -> int:
    """Step 4: the candidate to evaluate next, given ξ* = the pending candidate of largest UB.

    The interval of ξ* is the set of pending ζ with ξ* ≺ ζ ≺ anchor, anchor = the evaluated
    candidate that currently bounds ξ* (or, if none, the whole pending up-set). With fewer than s
    candidates in it, ξ* itself is evaluated; otherwise the one nearest the midpoint of the
    interval in ``coord`` is, which bounds ξ* (and its whole down-set) from closer up.
    """
    anchor = bounds.source[star]
    if anchor is not None and star not in down_sets[anchor]:
        anchor = None
    if anchor is None:
        above = [j for j in up[star] if j in bounds.errors]
        anchor = min(above, key=lambda j: (coord[j], j)) if above else None
    interval = [z for z in up[star] if z in pending
                and (anchor is None or z in down_sets[anchor])]
    if len(interval) < s:
        return star
    top = coord[anchor] if anchor is not None else max(coord[z] for z in interval)
    target = 0.5 * (coord[star] + top)
    return min(interval, key=lambda z: (abs(coord[z] - target), z))


def _statement(ratio: float, certified: float, stopped_by: str, n_eval: int, n: int) -> str:
    return (f"W(chosen) >= {ratio:.4f} x OPT a priori and >= {certified:.4f} x OPT certified "
            f"from the final bounds, over all non-failed candidates, under the listed "
            f"assumptions; stopped by {stopped_by} after {n_eval}/{n} evaluations.")


def _assumptions(slack: float, e_floor: float | None, lipschitz: float | None,
                 convex: bool) -> tuple[str, ...]:
    out = [f"M: xi <= xi' (leq) implies e(xi) >= e(xi')/(1+{slack:g})",
           "p, i exact; e deterministic per candidate (cached values are reused)"]
    if e_floor is not None:
        out.append(f"F: e(xi) >= {e_floor:g} for every candidate")
    if lipschitz is not None:
        out.append(f"L: |e(xi) - e(xi')| <= {lipschitz:g} * d(xi, xi')")
    if convex:
        out.append(f"C: some e~ with e~ <= e <= (1+{slack:g}) e~ is non-increasing along leq and "
                   "convex in x = convex_in(xi) along every chain xi0 <= xi1 <= xi2")
    return tuple(out)


def _check_options(eps: float, s: int, trim_share: float, slack: float,
                   e_floor: float | None, lipschitz: float | None) -> tuple[float, int]:
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


def fptas(candidates: SearchSpace | Sequence[Candidate], p: CostFn, i: CostFn, e: CostFn,
          eps: float, s: int = 1, *, objective: WCoefficient = WCoefficient(),
          leq: Leq | None = None, e_floor: float | None = None,
          monotonicity_slack: float = 0.0, lipschitz: float | None = None,
          distance: Distance | None = None, convex_in: CostFn | None = None,
          trim_share: float = 0.5, cache: Any = None,
          key: Callable[[Candidate], str] = candidate_key, progress: bool = False,
          on_error: str = "raise", max_evaluations: int | None = None) -> SearchResult:
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
      e_floor: optional known lower bound on every error (assumption F).
      monotonicity_slack: δ in assumption M (and C).
      lipschitz, distance: optional assumption L (default distance |log p − log p'|).
      convex_in: optional coordinate x(ξ), increasing along ⪯, in which error is convex along
        chains (assumption C; e.g. log of non-embedding parameters, as in scaling laws).
      trim_share: share of ε spent on trimming (Eq. T); the rest on the stopping rule (Eq. S).
      cache: object with get(key)/put(key, value) (or a dict); hits are not re-evaluated.
      key: candidate → cache key.
      progress: show a tqdm bar with ETA.
      on_error: 'raise', or 'skip' to drop a candidate whose e fails (guarantee then over the rest).
      max_evaluations: hard budget; if it binds, only the certified ratio holds.
    """
    t0 = time.perf_counter()
    slack = monotonicity_slack
    eps, s = _check_options(eps, s, trim_share, slack, e_floor, lipschitz)
    cands, leq = _resolve(candidates, leq)
    n = len(cands)
    P, I = _cheap_costs(cands, p, "p"), _cheap_costs(cands, i, "i")
    p_ref, i_ref = max(P), max(I)
    up = _strict_dominators(cands, leq)
    down: list[list[int]] = [[] for _ in range(n)]
    for k in range(n):
        for j in up[k]:
            down[j].append(k)
    eps_t = trim_share * eps
    rho_stop = (1.0 - eps) * (1.0 + eps_t)
    trimmed = _trim(up, lambda k, j: objective.dominance_factor(P[k], I[k], P[j], I[j], slack),
                    1.0 + eps_t)
    if distance is None:
        log_p = [math.log(v) for v in P]

        def dist(k: int, j: int) -> float:
            return abs(log_p[k] - log_p[j])
    else:
        def dist(k: int, j: int) -> float:
            return float(distance(cands[k], cands[j]))

    x = None if convex_in is None else [float(convex_in(c)) for c in cands]
    coord = x or [math.log(a) + math.log(b) for a, b in zip(P, I)]
    down_sets = [set(d) for d in down]
    bounds = _LowerBounds(up, down, slack, e_floor, lipschitz, dist, x)
    errors = bounds.errors
    failed: dict[int, str] = {}
    order: list[int] = []
    evaluator = _Evaluator(e, cache, key, on_error, progress, n - len(trimmed), "FPTAS")

    def w(k: int, err: float) -> float:
        return objective.value(P[k], I[k], err, p_ref, i_ref)

    def evaluate(k: int) -> None:
        value, message = evaluator(cands[k])
        if value is None:
            failed[k] = message or "failed"
            for t, (j, _) in list(trimmed.items()):
                if j == k:  # its dominator is gone: the trimmed candidate must stand alone
                    del trimmed[t]
            return
        order.append(k)
        bounds.add(k, value)

    def pending() -> list[int]:
        return [k for k in range(n) if k not in trimmed and k not in errors and k not in failed]

    def best() -> float:
        return max((w(k, errors[k]) for k in errors), default=0.0)

    def budget_left() -> bool:
        return max_evaluations is None or len(errors) + len(failed) < max_evaluations

    if e_floor is None:  # step 3: the maximal elements bound every other candidate
        for k in range(n):
            if not up[k] and budget_left():
                evaluate(k)
    stopped_by = "exhausted"
    while True:
        todo = pending()
        if not todo:
            break
        ub = {k: w(k, bounds.lower[k]) for k in todo}
        top, current = max(ub.values()), best()
        evaluator.postfix(best=current, bound=top)
        if current > 0 and current >= rho_stop * top:
            stopped_by = "bound"
            break
        if not budget_left():
            stopped_by = "budget"
            break
        size = {k: objective.size_score(P[k], I[k], p_ref, i_ref) for k in todo}
        star = min(todo, key=lambda k: (-ub[k], -size[k], k))
        evaluate(_bisect(star, set(todo), up, down_sets, bounds, coord, s))
    evaluator.close()
    if not errors:
        raise RuntimeError("no candidate could be evaluated: " + "; ".join(failed.values()))
    current = best()
    upper = max([current] + [w(k, bounds.lower[k]) for k in pending()])
    for t, (j, f) in trimmed.items():
        upper = max(upper, f * w(j, errors.get(j, bounds.lower[j])))
    certified = current / upper if upper > 0 else 1.0
    ratio = (1.0 - eps) if stopped_by != "budget" else certified
    guarantee = Guarantee(ratio, certified, upper,
                          _assumptions(slack, e_floor, lipschitz, x is not None),
                          _statement(ratio, certified, stopped_by, len(order), n))
    settings = {"e_floor": e_floor, "monotonicity_slack": slack, "lipschitz": lipschitz,
                "convex": x is not None, "trim_share": trim_share, "eps_trim": eps_t,
                "rho_stop": rho_stop, "max_evaluations": max_evaluations}
    return _result("fptas", cands, order, errors, failed, trimmed, P, I, p_ref, i_ref, objective,
                   guarantee, eps, s, stopped_by, evaluator, t0, settings)


def exhaustive(candidates: SearchSpace | Sequence[Candidate], p: CostFn, i: CostFn, e: CostFn, *,
               objective: WCoefficient = WCoefficient(), cache: Any = None,
               key: Callable[[Candidate], str] = candidate_key, progress: bool = False,
               on_error: str = "raise") -> SearchResult:
    """Evaluate every candidate and return the exact W-maximiser (the audit baseline)."""
    t0 = time.perf_counter()
    cands, _ = _resolve(candidates, None)
    P, I = _cheap_costs(cands, p, "p"), _cheap_costs(cands, i, "i")
    p_ref, i_ref = max(P), max(I)
    evaluator = _Evaluator(e, cache, key, on_error, progress, len(cands), "exhaustive")
    errors: dict[int, float] = {}
    failed: dict[int, str] = {}
    for k, c in enumerate(cands):
        value, message = evaluator(c)
        if value is None:
            failed[k] = message or "failed"
        else:
            errors[k] = value
    evaluator.close()
    if not errors:
        raise RuntimeError("no candidate could be evaluated: " + "; ".join(failed.values()))
    best = max(objective.value(P[k], I[k], v, p_ref, i_ref) for k, v in errors.items())
    guarantee = Guarantee(1.0, 1.0, best, ("e deterministic per candidate",),
                          _statement(1.0, 1.0, "exhausted", len(errors), len(cands)))
    return _result("exhaustive", cands, list(errors), errors, failed, {}, P, I, p_ref, i_ref,
                   objective, guarantee, None, None, "exhausted", evaluator, t0, {})


def _result(method: str, cands: Sequence[Candidate], order: Sequence[int],
            errors: Mapping[int, float], failed: Mapping[int, str],
            trimmed: Mapping[int, tuple[int, float]], P: Sequence[float], I: Sequence[float],
            p_ref: float, i_ref: float, objective: WCoefficient, guarantee: Guarantee,
            eps: float | None, s: int | None, stopped_by: str, evaluator: _Evaluator,
            t0: float, settings: Mapping[str, Any]) -> SearchResult:
    evals = tuple(Evaluation(cands[k], P[k], I[k], errors[k],
                             objective.value(P[k], I[k], errors[k], p_ref, i_ref))
                  for k in order)
    chosen = max(evals, key=lambda ev: ev.objective)  # first maximiser in evaluation order
    return SearchResult(
        method=method, chosen=chosen.candidate, objective=chosen.objective,
        chosen_evaluation=chosen, evaluations=evals, pareto_front=pareto_front(evals),
        n_candidates=len(cands), n_evaluations=len(evals) + len(failed),
        n_e_calls=evaluator.calls, n_cache_hits=evaluator.hits,
        trimmed=tuple((cands[t], cands[j], f) for t, (j, f) in sorted(trimmed.items())),
        failed=tuple((cands[k], m) for k, m in sorted(failed.items())), guarantee=guarantee,
        objective_spec=objective, p_ref=p_ref, i_ref=i_ref, eps=eps, s=s,
        stopped_by=stopped_by, wall_time_s=time.perf_counter() - t0, settings=dict(settings))
