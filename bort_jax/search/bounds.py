"""Lower bounds LB(ξ) ≤ e(ξ) for unevaluated candidates of an OSE search (Eq. B), with numpy.

Context: de Wynter, arXiv 2010.08512 (OSE); our reconstruction (docs/fptas.md §2.2) bounds the
error of a candidate that was never trained from the candidates that were, under the declared
assumptions, with δ = ``slack``:

  M: LB(ξ) ≥ e(ξ')/(1+δ) for every evaluated ξ' ⪰ ξ.
  F: LB(ξ) ≥ e_floor.
  L: LB(ξ) ≥ e(ξ') − L·d(ξ, ξ') for every evaluated ξ'.
  C (if ``x`` is given), with t1 = e(ξ1)/(1+δ), for an evaluated ξ1 and evaluated partners:
    down: ξ ⪯ ξ1 ⪯ ξ2, x1 < x2:  LB(ξ) ≥ t1 + σ↓(ξ1)·(x1 − x),
          σ↓(ξ1) = max(0, max_ξ2 (t1 − e(ξ2))/(x2 − x1));
    up:   ξ0 ⪯ ξ1 ⪯ ξ, x0 < x1 < x:  LB(ξ) ≥ t1 + σ↑(ξ1)·(x − x1),
          σ↑(ξ1) = max_ξ0 (t1 − e(ξ0))/(x1 − x0)  (≤ 0 when M holds);
  both are the secant bounds of a function convex in x along a chain, extended outside the
  secant's interval, with each end moved to its least favourable value.

The bounds are kept incrementally as arrays (one evaluation raises a whole down-set at once);
every operation is an elementwise IEEE operation in the same order as the scalar formulas above,
so the bounds are bit-for-bit those of a scalar implementation. ``source[j]`` is the evaluated
candidate behind the current LB(ξ_j) (the first one to reach it), used by the interval rule.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class LowerBounds:
    """LB(ξ) for every candidate (Eq. B), raised incrementally as candidates are evaluated.

    Attributes:
      lower: float array, LB of every candidate (F's floor or 0 before any evaluation).
      source: int array, the evaluated index behind lower[j], −1 if none.
      evaluated: bool array; errors: {index: e} in evaluation order.
      dirty: indices whose LB changed since the last `take_dirty`.
    """

    def __init__(
        self,
        up: Sequence[np.ndarray],
        down: Sequence[np.ndarray],
        slack: float,
        floor: float | None,
        lipschitz: float | None,
        dist_row: Callable[[int], np.ndarray] | None,
        x: Sequence[float] | None,
    ) -> None:
        n = len(up)
        self.up, self.down, self.slack = up, down, slack
        self.lipschitz, self.dist_row = lipschitz, dist_row
        self.x = None if x is None else np.asarray(x, dtype=np.float64)
        self.lower = np.full(n, floor or 0.0, dtype=np.float64)
        self.source = np.full(n, -1, dtype=np.int64)
        self.evaluated = np.zeros(n, dtype=bool)
        self.err = np.full(n, np.nan, dtype=np.float64)
        self.errors: dict[int, float] = {}
        self.slope_down: dict[int, float] = {}
        self.slope_up: dict[int, float] = {}
        self._dirty = np.zeros(n, dtype=bool)

    def add(self, k: int, value: float) -> None:
        """Record e(ξ_k) = value and raise every bound it implies (M, L, then C)."""
        self.errors[k] = value
        self.err[k] = value
        self.evaluated[k] = True
        t = value / (1.0 + self.slack)
        self._raise(self.down[k], t, k)
        if self.lipschitz is not None:
            self._raise(None, value - self.lipschitz * self.dist_row(k), k)
        if self.x is not None:
            down_k = self.down[k]
            for low in [k] + down_k[self.evaluated[down_k]].tolist():
                self._extend_down(low)
            up_k = self.up[k]
            for high in [k] + up_k[self.evaluated[up_k]].tolist():
                self._extend_up(high)

    def take_dirty(self) -> np.ndarray:
        """Indices whose LB changed since the last call (and reset)."""
        out = np.flatnonzero(self._dirty)
        self._dirty[out] = False
        return out

    def _raise(self, js: np.ndarray | None, bound: float | np.ndarray, source: int) -> None:
        """lower[j] = bound where bound > lower[j] (strictly), for j in ``js`` (None: all)."""
        if js is None:
            better = bound > self.lower
            self.lower[better] = bound[better] if isinstance(bound, np.ndarray) else bound
            self.source[better] = source
            self._dirty |= better
            return
        if js.size == 0:
            return
        better = bound > self.lower[js]
        if not better.any():
            return
        hit = js[better]
        self.lower[hit] = bound[better] if isinstance(bound, np.ndarray) else bound
        self.source[hit] = source
        self._dirty[hit] = True

    def _extend_down(self, low: int) -> None:
        """C, down: raise the down-set of ``low`` with the steepest secant to a point above."""
        x = self.x
        hs = self.up[low]
        hs = hs[self.evaluated[hs]]
        hs = hs[x[hs] > x[low]]
        t_low = self.errors[low] / (1.0 + self.slack)
        best = 0.0
        if hs.size:
            slopes = (t_low - self.err[hs]) / (x[hs] - x[low])
            best = max(0.0, float(slopes.max()))
        if best > self.slope_down.get(low, 0.0):
            self.slope_down[low] = best
            js = self.down[low]
            self._raise(js, t_low + best * (x[low] - x[js]), low)

    def _extend_up(self, high: int) -> None:
        """C, up: raise the up-set of ``high`` with the least steep secant from a point below."""
        x = self.x
        los = self.down[high]
        los = los[self.evaluated[los]]
        los = los[x[los] < x[high]]
        if los.size == 0:
            return
        t_high = self.errors[high] / (1.0 + self.slack)
        best = float((-((t_high - self.err[los]) / (x[los] - x[high]))).max())
        if high not in self.slope_up or best > self.slope_up[high]:
            self.slope_up[high] = best
            js = self.up[high]
            js = js[x[js] > x[high]]
            self._raise(js, t_high + best * (x[js] - x[high]), high)
