"""Options of the search: the precision ε and interval size s, what may be assumed about e
(`Assumptions`), and how the search runs (`SearchOptions`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Hashable

from bort_jax.search.evaluator import candidate_key

Candidate = Hashable
CostFn = Callable[[Candidate], float]
Leq = Callable[[Candidate, Candidate], bool]
Distance = Callable[[Candidate, Candidate], float]


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


@dataclasses.dataclass(frozen=True)
class Assumptions:
    """What the search may assume about e (module docstring of `fptas`; Eq. B and Eq. T).

    monotonicity_slack: δ of assumption M (and C): ξ ⪯ ξ' ⇒ e(ξ) ≥ e(ξ')/(1+δ).
    e_floor: assumption F, e(ξ) ≥ e_floor for every candidate (None: off).
    lipschitz, distance: assumption L, |e(ξ) − e(ξ')| ≤ L·d(ξ, ξ'); default d = |log p − log p'|.
    convex_in: assumption C, a coordinate x(ξ) increasing along ⪯ in which e is convex along
      chains (e.g. log non-embedding parameters, as in scaling laws); None: off.
    """

    monotonicity_slack: float = 0.0
    e_floor: float | None = None
    lipschitz: float | None = None
    distance: Distance | None = None
    convex_in: CostFn | None = None

    def __post_init__(self) -> None:
        if not self.monotonicity_slack >= 0:
            raise ValueError(f"monotonicity_slack must be >= 0, got {self.monotonicity_slack!r}")
        if self.e_floor is not None and not self.e_floor > 0:
            raise ValueError(f"e_floor must be > 0, got {self.e_floor!r}")
        if self.lipschitz is not None and not self.lipschitz >= 0:
            raise ValueError(f"lipschitz must be >= 0, got {self.lipschitz!r}")

    def statements(self) -> tuple[str, ...]:
        """The assumptions in words (`Guarantee.assumptions`)."""
        slack = self.monotonicity_slack
        out = [
            f"M: xi <= xi' (leq) implies e(xi) >= e(xi')/(1+{slack:g})",
            "p, i exact; e deterministic per candidate (cached values are reused)",
        ]
        if self.e_floor is not None:
            out.append(f"F: e(xi) >= {self.e_floor:g} for every candidate")
        if self.lipschitz is not None:
            out.append(f"L: |e(xi) - e(xi')| <= {self.lipschitz:g} * d(xi, xi')")
        if self.convex_in is not None:
            out.append(
                f"C: some e~ with e~ <= e <= (1+{slack:g}) e~ is non-increasing along leq and "
                "convex in x = convex_in(xi) along every chain xi0 <= xi1 <= xi2"
            )
        return tuple(out)


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """How a search runs, none of which changes its guarantee.

    leq: partial order ξ ⪯ ξ' (default: the space's order, or componentwise ≤).
    trim_share: share of ε spent on ε-trimming (Eq. T); the rest on the stopping rule (Eq. S).
    max_evaluations: hard budget on e-evaluations (None: none); if it binds, only the certified
      ratio holds.
    cache: get(key)/put(key, value) object or dict; key: candidate → cache key.
    progress: a tqdm bar; on_error: 'raise' | 'skip' (drop a candidate whose e fails).
    parallel: up to this many concurrent e-calls (`lookahead`); same result as 1.
    """

    leq: Leq | None = None
    trim_share: float = 0.5
    max_evaluations: int | None = None
    cache: Any = None
    key: Callable[[Candidate], str] = candidate_key
    progress: bool = False
    on_error: str = "raise"
    parallel: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.trim_share < 1.0:
            raise ValueError(f"trim_share must be in (0, 1), got {self.trim_share!r}")
