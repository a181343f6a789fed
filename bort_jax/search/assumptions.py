"""The assumptions behind the OSE search's bound, checked on the e-values actually obtained.

Context: de Wynter, arXiv 2010.08512 (OSE); our reconstruction (docs/fptas.md §2.2) bounds the
error of unevaluated candidates under assumptions on e, with slack δ:

  M: ξ ⪯ ξ'  ⇒  e(ξ) ≥ e(ξ')/(1 + δ).  A pair (a ⪯ b) needs δ ≥ e(b)/e(a) − 1.
  F: e(ξ) ≥ e_floor.                    A candidate needs e_floor ≤ e(ξ).
  L: |e(ξ) − e(ξ')| ≤ L·d(ξ, ξ').       A pair needs L ≥ |e(ξ) − e(ξ')| / d(ξ, ξ').
  C: some ẽ with ẽ ≤ e ≤ (1+δ)ẽ is non-increasing along ⪯ and convex in x along every chain.
     For a chain a ⪯ b ⪯ c with x_a < x_b < x_c this implies e(b)/(1+δ) ≤ chord(b),
         chord(b) = [e(a)·(x_c − x_b) + e(c)·(x_b − x_a)] / (x_c − x_a),
     (ẽ(b) ≤ the chord of ẽ ≤ the chord of e), which is exactly what makes the secant bounds of
     the search valid for that triple (both extensions rearrange to it). The triple needs
     δ ≥ e(b)/chord(b) − 1.

Every condition above is *implied* by its assumption, so a failure proves the assumption false
for the e-values at hand (no false alarms beyond the relative tolerance `TOLERANCE`). The search
checks them incrementally: each new evaluation is checked against every evaluated candidate
(M, F, L) and every evaluated chain it completes (C), so at the end every evaluated pair and
triple has been checked once. Every violating pair is kept; for C, whose violating chains can
number O(|E|³), the worst chain through each middle candidate is kept and the rest counted.
`monotonicity_violations`, `required_slack` and `convexity_violations` are the audit forms, for
a whole list of evaluations (e.g. an exhaustive run).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from bort_jax.search.space import componentwise_leq

Candidate = Hashable
Leq = Callable[[Candidate, Candidate], bool]

TOLERANCE = 1e-9  # relative: differences below this are rounding, not violations


class AssumptionWarning(UserWarning):
    """An assumption of the search's bound is violated by the e-values obtained."""


@dataclasses.dataclass(frozen=True)
class AssumptionViolation:
    """One instance where an assumption of the bound fails on the e-values.

    assumption: "M", "F", "L" or "C".
    candidates: M: (smaller, bigger) with smaller ⪯ bigger; F: (ξ,); L: (ξ, ξ');
      C: (ξ0, ξ1, ξ2), a chain with x increasing.
    errors: e of each candidate, same order.
    needed: the value of the assumption's parameter this instance needs: M, C: the slack δ
      (≥ needed); F: the floor (≤ needed); L: the constant (≥ needed).
    declared: the value the search was run with.
    """

    assumption: str
    candidates: tuple[Any, ...]
    errors: tuple[float, ...]
    needed: float
    declared: float

    def describe(self) -> str:
        """One line, e.g. "M: A (e=0.5) <= B (e=0.7) needs slack >= 0.4 (declared 0.04)"."""
        c, e = self.candidates, self.errors
        if self.assumption == "M":
            return (
                f"M: {c[0]} (e={e[0]:.6g}) <= {c[1]} (e={e[1]:.6g}) needs slack "
                f">= {self.needed:.4g} (declared {self.declared:g})"
            )
        if self.assumption == "F":
            return (
                f"F: {c[0]} has e={e[0]:.6g} below e_floor={self.declared:g} "
                f"(needs e_floor <= {self.needed:.6g})"
            )
        if self.assumption == "L":
            return (
                f"L: {c[0]} (e={e[0]:.6g}) and {c[1]} (e={e[1]:.6g}) need lipschitz "
                f">= {self.needed:.4g} (declared {self.declared:g})"
            )
        return (
            f"C: chain {c[0]} (e={e[0]:.6g}) <= {c[1]} (e={e[1]:.6g}) <= {c[2]} "
            f"(e={e[2]:.6g}) is not convex within slack: needs slack >= {self.needed:.4g} "
            f"(declared {self.declared:g})"
        )

    def to_dict(self, candidate_to_json: Callable[[Any], Any]) -> dict[str, Any]:
        """Plain-JSON form (candidates through ``candidate_to_json``)."""
        return {
            "assumption": self.assumption,
            "candidates": [candidate_to_json(c) for c in self.candidates],
            "errors": list(self.errors),
            "needed": self.needed,
            "declared": self.declared,
            "text": self.describe(),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], candidate_from_json: Callable[[Any], Any]
    ) -> "AssumptionViolation":
        return cls(
            data["assumption"],
            tuple(candidate_from_json(c) for c in data["candidates"]),
            tuple(data["errors"]),
            data["needed"],
            data["declared"],
        )


def chord_slack(e0: float, e1: float, e2: float, x0: float, x1: float, x2: float) -> float:
    """The δ that C needs on a chain with x0 < x1 < x2: e1/chord(x1) − 1 (may be < 0)."""
    chord = (e0 * (x2 - x1) + e2 * (x1 - x0)) / (x2 - x0)
    return e1 / chord - 1.0


class AssumptionChecker:
    """Checks M, F, L and C (those switched on) on each new evaluation against the evaluated set.

    ``check(k, err, evaluated)`` is called after candidate k was evaluated; ``err`` holds e of the
    evaluated candidates (``evaluated`` is their mask, k included). The first violation of each
    assumption is reported at once with `warnings.warn` (`AssumptionWarning`), so that a long
    search shows it early; `summary_warning` reports them all at the end.
    """

    def __init__(
        self,
        cands: Sequence[Candidate],
        up: Sequence[np.ndarray],
        down: Sequence[np.ndarray],
        slack: float,
        e_floor: float | None,
        lipschitz: float | None,
        dist_row: Callable[[int], np.ndarray] | None,
        x: Sequence[float] | None,
    ) -> None:
        self.cands, self.up, self.down = cands, up, down
        self.slack, self.e_floor = slack, e_floor
        self.lipschitz, self.dist_row = lipschitz, dist_row
        self.x = None if x is None else np.asarray(x, dtype=np.float64)
        self.counts = {"M": 0, "F": 0, "L": 0, "C": 0}
        self._pairs: list[AssumptionViolation] = []
        self._chains: dict[int, AssumptionViolation] = {}
        self._warned: set[str] = set()

    @property
    def violations(self) -> list[AssumptionViolation]:
        """Every violating pair (M, F, L) and, for C, the worst chain per middle candidate."""
        return self._pairs + list(self._chains.values())

    def check(self, k: int, err: np.ndarray, evaluated: np.ndarray) -> list[AssumptionViolation]:
        """New violations involving candidate k (also appended to ``violations``)."""
        found = self._monotone(k, err, evaluated)
        if self.e_floor is not None and err[k] < self.e_floor * (1.0 - TOLERANCE):
            found.append(
                AssumptionViolation(
                    "F", (self.cands[k],), (float(err[k]),), float(err[k]), self.e_floor
                )
            )
        if self.lipschitz is not None:
            found += self._lipschitz(k, err, evaluated)
        for v in found:
            self.counts[v.assumption] += 1
        self._pairs += found
        if self.x is not None:
            found += self._convex(k, err, evaluated)
        for v in found:
            if v.assumption not in self._warned:
                self._warned.add(v.assumption)
                warnings.warn(
                    AssumptionWarning(
                        f"assumption {v.describe()}; the search goes on, but its (1-eps) bound is "
                        "not certified"
                    ),
                    stacklevel=4,
                )
        return found

    def _monotone(
        self, k: int, err: np.ndarray, evaluated: np.ndarray
    ) -> list[AssumptionViolation]:
        out = []
        grow = (1.0 + self.slack) * (1.0 + TOLERANCE)
        below = self.down[k][evaluated[self.down[k]]]  # j ⪯ k: j is the smaller one
        for j in below[err[below] * grow < err[k]].tolist():
            out.append(self._m(j, k, err))
        above = self.up[k][evaluated[self.up[k]]]  # k ⪯ j: k is the smaller one
        for j in above[err[k] * grow < err[above]].tolist():
            out.append(self._m(k, j, err))
        return out

    def _m(self, small: int, big: int, err: np.ndarray) -> AssumptionViolation:
        e_s, e_b = float(err[small]), float(err[big])
        return AssumptionViolation(
            "M", (self.cands[small], self.cands[big]), (e_s, e_b), e_b / e_s - 1.0, self.slack
        )

    def _lipschitz(
        self, k: int, err: np.ndarray, evaluated: np.ndarray
    ) -> list[AssumptionViolation]:
        others = np.flatnonzero(evaluated)
        others = others[others != k]
        if others.size == 0:
            return []
        d = self.dist_row(k)[others]
        gap = np.abs(err[others] - err[k])
        bad = gap > self.lipschitz * d * (1.0 + TOLERANCE) + TOLERANCE * err[k]
        out = []
        for j, g, dj in zip(others[bad].tolist(), gap[bad].tolist(), d[bad].tolist()):
            needed = g / dj if dj > 0 else math.inf
            out.append(
                AssumptionViolation(
                    "L",
                    (self.cands[j], self.cands[k]),
                    (float(err[j]), float(err[k])),
                    needed,
                    self.lipschitz,
                )
            )
        return out

    def _convex(self, k: int, err: np.ndarray, evaluated: np.ndarray) -> list[AssumptionViolation]:
        """Every evaluated chain a ⪯ b ⪯ c (x strictly increasing) that k completes."""
        x = self.x
        out: list[AssumptionViolation] = []

        def ev(idx: np.ndarray) -> np.ndarray:
            return idx[evaluated[idx]]

        below = ev(self.down[k])
        below = below[x[below] < x[k]]
        above = ev(self.up[k])
        above = above[x[above] > x[k]]
        for b in below.tolist():  # k is the top c
            a = ev(self.down[b])
            a = a[x[a] < x[b]]
            self._triples(a, np.array([b]), np.array([k]), err, out)
        if below.size and above.size:  # k is the middle b
            self._triples(below, np.array([k]), above, err, out)
        for b in above.tolist():  # k is the bottom a
            c = ev(self.up[b])
            c = c[x[c] > x[b]]
            self._triples(np.array([k]), np.array([b]), c, err, out)
        return out

    def _triples(
        self,
        a: np.ndarray,
        b: np.ndarray,
        c: np.ndarray,
        err: np.ndarray,
        out: list[AssumptionViolation],
    ) -> None:
        """Count the chains (a_i, b, c_j) with e(b)/(1+δ) > chord(b) (one b); keep the worst.

        The worst chain through b (largest needed δ) replaces b's earlier one if it needs more,
        and is appended to ``out`` when it does.
        """
        if a.size == 0 or c.size == 0:
            return
        x = self.x
        xa, xb, xc = x[a][:, None], x[b][0], x[c][None, :]
        ea, eb, ec = err[a][:, None], err[b][0], err[c][None, :]
        chord = (ea * (xc - xb) + ec * (xb - xa)) / (xc - xa)
        bad = eb / (1.0 + self.slack) > chord * (1.0 + TOLERANCE)
        n_bad = int(bad.sum())
        if not n_bad:
            return
        self.counts["C"] += n_bad
        i, j = np.unravel_index(np.argmin(np.where(bad, chord, np.inf)), chord.shape)
        bi, ai, cj = int(b[0]), int(a[i]), int(c[j])
        worst = AssumptionViolation(
            "C",
            (self.cands[ai], self.cands[bi], self.cands[cj]),
            (float(err[ai]), float(eb), float(err[cj])),
            float(eb / chord[i, j] - 1.0),
            self.slack,
        )
        if bi not in self._chains or worst.needed > self._chains[bi].needed:
            self._chains[bi] = worst
            out.append(worst)

    def summary_warning(self) -> None:
        """One `AssumptionWarning` listing the worst violation of each assumption, if any."""
        if not self.violations:
            return
        warnings.warn(
            AssumptionWarning(violation_summary(self.violations, self.counts)), stacklevel=3
        )


def worst_per_assumption(violations: Sequence[AssumptionViolation]) -> list[AssumptionViolation]:
    """The violation needing the most (least, for F) of each assumption, in order M, F, L, C."""
    out = []
    for name in ("M", "F", "L", "C"):
        group = [v for v in violations if v.assumption == name]
        if group:
            pick = min if name == "F" else max
            out.append(pick(group, key=lambda v: v.needed))
    return out


def violation_summary(
    violations: Sequence[AssumptionViolation], counts: dict[str, int] | None = None
) -> str:
    """ "NOT CERTIFIED: ..." naming the worst violating pair (chain) of each assumption.

    ``counts`` are the total numbers found per assumption (default: counted in ``violations``).
    """
    if counts is None:
        counts = {n: sum(v.assumption == n for v in violations) for n in ("M", "F", "L", "C")}
    parts = [
        f"{v.describe()} [{counts[v.assumption]} violation(s) of {v.assumption}]"
        for v in worst_per_assumption(violations)
    ]
    return (
        "NOT CERTIFIED: the e-values violate the declared assumptions, so the (1-eps) "
        "bound does not hold: " + "; ".join(parts) + ". " + remedy(violations)
    )


def remedy(violations: Sequence[AssumptionViolation]) -> str:
    """What settings would make the observed e-values consistent with the assumptions."""
    out = []
    slack = [v.needed for v in violations if v.assumption in ("M", "C")]
    if slack:
        out.append(f"monotonicity_slack >= {max(slack):.4g}")
    floor = [v.needed for v in violations if v.assumption == "F"]
    if floor:
        out.append(f"e_floor <= {min(floor):.6g} (or None)")
    lip = [v.needed for v in violations if v.assumption == "L"]
    if lip:
        out.append(f"lipschitz >= {max(lip):.4g} (or None)")
    if any(v.assumption == "C" for v in violations):
        out.append("or convex_in=None")
    return "A rerun would need " + ", ".join(out) + "."


# ----------------------------------------------------------------------------- audit forms


def monotonicity_violations(
    evaluations: Sequence[Any], leq: Leq = componentwise_leq, slack: float = 0.0
) -> list[tuple[Any, Any, float]]:
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


def required_slack(evaluations: Sequence[Any], leq: Leq = componentwise_leq) -> float:
    """Smallest δ for which M holds on ``evaluations``."""
    return max((v[2] for v in monotonicity_violations(evaluations, leq)), default=0.0)


def convexity_violations(
    evaluations: Sequence[Any],
    x: Callable[[Candidate], float],
    leq: Leq = componentwise_leq,
    slack: float = 0.0,
) -> list[tuple[Any, Any, Any, float]]:
    """Chains ξ0 ⪯ ξ1 ⪯ ξ2 where e(ξ0) is below the secant bound of assumption C.

    Each entry is (ξ0, ξ1, ξ2, excess) with excess = bound/e(ξ0) − 1 > 0. O(|E|³) worst case.
    """
    evs = list(evaluations)
    xs = [float(x(ev.candidate)) for ev in evs]
    below = [
        [a for a in range(len(evs)) if a != b and leq(evs[a].candidate, evs[b].candidate)]
        for b in range(len(evs))
    ]
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
