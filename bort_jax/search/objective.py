"""The W-coefficient, the scalarisation the search maximises (Eq. W of `fptas`) [reconstructed].

    W(ξ) = (p_ref / p(ξ))^α · (i_ref / i(ξ))^β · (e_ref / e(ξ))^γ,

p_ref = max p, i_ref = max i over the candidates, e_ref > 0 a constant. Ratios W(ξ)/W(ξ') and
the argmax do not depend on the references; a multiplicative bound on e becomes one on W.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np


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

    def dominance_factor(
        self, p: float, i: float, p_dom: float, i_dom: float, slack: float
    ) -> float:
        """Largest W(ξ)/W(ξ') possible under M when ξ ⪯ ξ' (Eq. T); references cancel."""
        return (p_dom / p) ** self.alpha * (i_dom / i) ** self.beta * (1.0 + slack) ** self.gamma

    def dominance_factors(
        self, p: float, i: float, p_dom: np.ndarray, i_dom: np.ndarray, slack: float
    ) -> np.ndarray:
        """`dominance_factor` for arrays of dominators (numpy; may differ from it by ~1 ulp)."""
        return (p_dom / p) ** self.alpha * (i_dom / i) ** self.beta * (1.0 + slack) ** self.gamma


def factor_fns(
    objective: WCoefficient, P: list[float], I: list[float], slack: float
) -> tuple[Callable[[int, np.ndarray], np.ndarray], Callable[[int, int], float]]:
    """(vectorised, exact scalar) dominance factors f(k, j) of Eq. T for `order.trim`."""

    def exact(k: int, j: int) -> float:
        return objective.dominance_factor(P[k], I[k], P[j], I[j], slack)

    cls = type(objective)
    if (
        cls.dominance_factors is not WCoefficient.dominance_factors
        or cls.dominance_factor is WCoefficient.dominance_factor
    ):
        p_arr, i_arr = np.asarray(P), np.asarray(I)

        def approx(k: int, js: np.ndarray) -> np.ndarray:
            return np.asarray(
                objective.dominance_factors(P[k], I[k], p_arr[js], i_arr[js], slack),
                dtype=np.float64,
            )
    else:  # a subclass redefined only the scalar factor: use it for every pair

        def approx(k: int, js: np.ndarray) -> np.ndarray:
            return np.array([exact(k, int(j)) for j in js], dtype=np.float64)

    return approx, exact


def w_many(
    objective: WCoefficient, P: list[float], I: list[float], p_ref: float, i_ref: float
) -> Callable[[np.ndarray, np.ndarray], list[float]]:
    """W(p_j, i_j, e_j) (Eq. W) for index and error arrays, with the scalar `value` arithmetic."""
    cls = type(objective)
    if cls.value is WCoefficient.value and cls.size_score is WCoefficient.size_score:
        size = [objective.size_score(a, b, p_ref, i_ref) for a, b in zip(P, I)]
        e_ref, gamma = objective.e_ref, objective.gamma

        def many(js: np.ndarray, errs: np.ndarray) -> list[float]:
            return [
                size[j] * (e_ref / e) ** gamma if e > 0 else math.inf
                for j, e in zip(js.tolist(), errs.tolist())
            ]
    else:

        def many(js: np.ndarray, errs: np.ndarray) -> list[float]:
            return [
                objective.value(P[j], I[j], e, p_ref, i_ref)
                for j, e in zip(js.tolist(), errs.tolist())
            ]

    return many
