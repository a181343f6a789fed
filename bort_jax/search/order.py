"""The partial order ⪯ of an OSE search as a dominance matrix, and ε-trimming along it.

Context: de Wynter, arXiv 2010.08512 (OSE); the reconstruction in docs/fptas.md orders candidates
by ξ ⪯ ξ' ("ξ is a sub-architecture of ξ'"). For a grid (`space.SearchSpace`) that is

    ξ ⪯ ξ'  ⇔  v_a(ξ) ≤ v_a(ξ') on every monotone axis a, and v_a(ξ) = v_a(ξ') on the others,

and for the default `space.componentwise_leq` it is v(ξ) ≤ v(ξ') on every component. Both are
computed here with numpy: the candidates become an integer (or float) matrix V (|Ξ| × axes) and

    D[k, j] = ∧_a  cmp_a(V[k, a], V[j, a])                                           (Eq. O)

is built by broadcasting, a block of rows at a time (memory: one |Ξ|-byte row per candidate, plus
a block of ``block × |Ξ|`` temporaries). Any other ``leq`` (a custom function) takes the generic
path, which calls it on all |Ξ|² ordered pairs. Both paths give the same boolean matrix, so the
search that follows is the same.

ε-trimming (Eq. T of docs/fptas.md): top-down along ⪯ (fewer strict dominators first, then
index), drop ξ when a kept ξ' ⪰ ξ has dominance factor f(ξ, ξ') = W-bound ratio ≤ 1 + ε_t; the
dominator recorded is the kept one with the smallest f (then the smallest index). The factors of a
row are computed with numpy, then every factor within 1e-9 (relative) of the row minimum is
recomputed with the scalar formula, so the decision and the recorded factor are bit-for-bit those
of the scalar formula whatever numpy's ``power`` rounds to.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from bort_jax.search.space import SearchSpace, as_vector, componentwise_leq

Candidate = Hashable
Leq = Callable[[Candidate, Candidate], bool]

ROW_BLOCK = 1024  # rows of D computed per broadcasting step
_PREFILTER = 1e-9  # relative margin between numpy and scalar factors (true gap ≲ 1e-15)


def _space_of(leq: Leq) -> SearchSpace | None:
    """The `SearchSpace` whose own ``leq`` method ``leq`` is, else None."""
    owner = getattr(leq, "__self__", None)
    func = getattr(leq, "__func__", None)
    if isinstance(owner, SearchSpace) and func is SearchSpace.leq:
        return owner
    return None


def _numeric_matrix(rows: Sequence[Sequence[Any]]) -> np.ndarray | None:
    """Rows of equal length holding only real numbers (no bools) as an array, else None."""
    if not rows:
        return None
    width = len(rows[0])
    for row in rows:
        if len(row) != width:
            return None
        for v in row:
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                return None
    if all(isinstance(v, numbers.Integral) for row in rows for v in row):
        try:
            return np.array(rows, dtype=np.int64).reshape(len(rows), width)
        except OverflowError:
            return None
    return np.array(rows, dtype=np.float64).reshape(len(rows), width)


def order_values(cands: Sequence[Candidate], leq: Leq) -> tuple[np.ndarray, np.ndarray] | None:
    """(V, monotone) for a vectorisable ``leq``, else None (the generic path is needed).

    Vectorisable: a `SearchSpace`'s own ``leq`` (V = axis values, monotone = each axis's flag) and
    `componentwise_leq` on tuples/dataclasses of plain numbers of one length (all monotone).
    """
    space = _space_of(leq)
    if space is not None:
        try:
            rows = [space.values_of(c) for c in cands]
        except TypeError:
            return None
        values = _numeric_matrix(rows)
        if values is None or values.shape[1] != len(space.axes):
            return None
        return values, np.array([a.monotone for a in space.axes], dtype=bool)
    if leq is componentwise_leq:
        try:
            rows = [tuple(as_vector(c)) for c in cands]
        except TypeError:
            return None
        values = _numeric_matrix(rows)
        if values is None:
            return None
        return values, np.ones(values.shape[1], dtype=bool)
    return None


def _vectorised_matrix(
    values: np.ndarray, monotone: np.ndarray, block: int = ROW_BLOCK
) -> np.ndarray:
    """Eq. O by broadcasting: D[k, j] = all_a (V[k,a] ≤ V[j,a] if monotone[a] else ==)."""
    n = values.shape[0]
    out = np.empty((n, n), dtype=bool)
    cols = [np.ascontiguousarray(values[:, a]) for a in range(values.shape[1])]
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = out[start:stop]
        rows[...] = True
        for a, col in enumerate(cols):
            mine = col[start:stop, None]
            rows &= (mine <= col[None, :]) if monotone[a] else (mine == col[None, :])
    return out


def _generic_matrix(cands: Sequence[Candidate], leq: Leq) -> np.ndarray:
    """Eq. O by calling ``leq`` on every ordered pair (k ≠ j): |Ξ|(|Ξ| − 1) calls."""
    n = len(cands)
    out = np.zeros((n, n), dtype=bool)
    for k in range(n):
        a = cands[k]
        row = out[k]
        for j in range(n):
            if j != k and leq(a, cands[j]):
                row[j] = True
    return out


def dominance_matrix(cands: Sequence[Candidate], leq: Leq, *, vectorise: bool = True) -> np.ndarray:
    """Strict order as a boolean matrix: D[k, j] ⇔ k ≠ j and cands[k] ⪯ cands[j] (Eq. O).

    Vectorised for a `SearchSpace`'s ``leq`` and for `componentwise_leq` on numeric candidates;
    any other ``leq`` (or ``vectorise=False``) uses the generic pairwise loop. Raises ValueError
    if ⪯ is not antisymmetric (two distinct candidates each ⪯ the other).
    """
    spec = order_values(cands, leq) if vectorise else None
    if spec is None:
        out = _generic_matrix(cands, leq)
    else:
        out = _vectorised_matrix(*spec)
        np.fill_diagonal(out, False)
    both = out & out.T
    if both.any():
        k, j = (int(v) for v in np.argwhere(both)[0])
        raise ValueError(f"leq is not antisymmetric on {cands[k]!r}, {cands[j]!r}")
    return out


def up_down_lists(matrix: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """up[k] = sorted j with k ≺ j (strict dominators), down[j] = sorted k with k ≺ j."""
    up = [np.flatnonzero(row) for row in matrix]
    down = [np.flatnonzero(row) for row in np.ascontiguousarray(matrix.T)]
    return up, down


def trim(
    up: Sequence[np.ndarray],
    factors: Callable[[int, np.ndarray], np.ndarray],
    factor: Callable[[int, int], float],
    limit: float,
) -> dict[int, tuple[int, float]]:
    """Eq. T, top-down along ⪯ (fewer dominators first): {trimmed: (kept dominator, factor)}.

    ``factors(k, js)`` gives approximate factors f(k, j) for an index array (numpy), ``factor(k,
    j)`` the exact scalar one; the decision uses the exact factor of every dominator within
    `_PREFILTER` of the row minimum, so it equals the all-scalar rule min_j (f(k, j), j) ≤ limit.
    """
    n = len(up)
    counts = np.array([len(u) for u in up], dtype=np.int64)
    order = np.lexsort((np.arange(n), counts))
    is_trimmed = np.zeros(n, dtype=bool)
    trimmed: dict[int, tuple[int, float]] = {}
    for k in order.tolist():
        js = up[k]
        if js.size == 0:
            continue
        js = js[~is_trimmed[js]]
        if js.size == 0:
            continue
        approx = factors(k, js)
        low = float(approx.min())
        if not low <= limit * (1.0 + _PREFILTER):
            continue
        near = js[approx <= low * (1.0 + _PREFILTER)]
        f, j = min((factor(k, int(j)), int(j)) for j in near)
        if f <= limit:
            trimmed[k] = (j, f)
            is_trimmed[k] = True
    return trimmed
