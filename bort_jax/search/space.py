"""Search spaces Ξ for optimal subarchitecture extraction (OSE).

de Wynter, "An Approximation Algorithm for Optimal Subarchitecture Extraction", arXiv 2010.08512,
defines a network as a composition of layers f(x) = l_n(… l_1(x; W_1, ξ_1) …; W_n, ξ_n) whose
*architectural parameters* ξ = (ξ_1, …, ξ_n) are non-trainable integers (depth, widths, head
counts). A candidate architecture is one assignment ξ ∈ Ξ. Here Ξ is a finite grid over named
integer axes, filtered by a validity predicate (for BERT: hidden % heads == 0), enumerated in a
fixed, deterministic order (itertools.product over the axes in declaration order).

The grid also carries the *partial order* ⪯ used by the FPTAS bounds (reconstruction, see
docs/fptas.md): ξ ⪯ ξ' iff ξ_k ≤ ξ'_k on every axis flagged ``monotone`` and ξ_k = ξ'_k on every
other axis. "ξ ⪯ ξ'" reads "ξ is a sub-architecture of ξ'"; the FPTAS assumes proxy error does not
increase along ⪯ (assumption M).

The BERT grid of de Wynter & Perry, arXiv 2010.10499 (Bort), is D ∈ {2,4,6,8,10,12},
A ∈ {4,8,12,16}, H ∈ {512,768,1024}, I ∈ {256,512,768,1024,3072}, minus the 60 shapes with
H mod A ≠ 0: 300 candidates (`bert_grid`).

Candidates are any hashable objects; the default of `grid` is a NamedTuple built per space, the
default of `bert_grid` is the library's architecture type ``bort_jax.arch.Arch`` (a frozen,
ordered dataclass with fields depth, heads, hidden, intermediate). A ``factory`` may be supplied
instead.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any, Callable, Hashable, Mapping, Sequence

from bort_jax.arch import Arch

Candidate = Hashable
Validity = Callable[[Mapping[str, int]], bool]
Factory = Callable[..., Candidate]


@dataclasses.dataclass(frozen=True)
class Axis:
    """One architectural parameter: its name, allowed integer values and order semantics.

    ``monotone=True`` means a larger value is a "bigger" architecture along this axis (it takes part
    in the ⪯ order); ``monotone=False`` axes must be equal for two candidates to be comparable.
    """

    name: str
    values: tuple[int, ...]
    monotone: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"axis name {self.name!r} must be a Python identifier")
        values = tuple(self.values)
        if not values:
            raise ValueError(f"axis {self.name!r}: values must be non-empty")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"axis {self.name!r}: value {v!r} is not an int")
        if len(set(values)) != len(values):
            raise ValueError(f"axis {self.name!r}: duplicate values in {values}")
        object.__setattr__(self, "values", values)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A finite grid Ξ over named integer axes with a validity predicate.

    Attributes:
      axes: the axes, in enumeration order.
      valid: predicate on a ``{name: value}`` mapping; invalid combinations are dropped.
      factory: builds a candidate from keyword arguments; default is a NamedTuple type named
        ``type_name`` with one field per axis.
      type_name: name of the default NamedTuple type.
    """

    axes: tuple[Axis, ...]
    valid: Validity | None = None
    factory: Factory | None = None
    type_name: str = "Candidate"

    def __post_init__(self) -> None:
        axes = tuple(self.axes)
        if not axes:
            raise ValueError("axes: a search space needs at least one axis")
        for ax in axes:
            if not isinstance(ax, Axis):
                raise ValueError(f"axes: {ax!r} is not an Axis")
        seen: set[str] = set()
        for ax in axes:
            if ax.name in seen:
                raise ValueError(f"axis {ax.name!r} is declared twice")
            seen.add(ax.name)
        object.__setattr__(self, "axes", axes)
        if self.factory is None:
            tuple_type = collections.namedtuple(self.type_name, [a.name for a in axes])
            object.__setattr__(self, "factory", tuple_type)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    def candidates(self) -> list[Candidate]:
        """All valid candidates, in deterministic (product) order."""
        out = []
        for combo in itertools.product(*(a.values for a in self.axes)):
            fields = dict(zip(self.names, combo))
            if self.valid is None or self.valid(fields):
                out.append(self.factory(**fields))
        if not out:
            raise ValueError("valid: the predicate rejects every combination of the grid")
        return out

    def __len__(self) -> int:
        return len(self.candidates())

    def values_of(self, candidate: Candidate) -> tuple[int, ...]:
        """The axis values of ``candidate`` (read by attribute name, else by position)."""
        return field_values(candidate, self.names)

    def leq(self, a: Candidate, b: Candidate) -> bool:
        """Partial order ⪯: ``a`` is a sub-architecture of ``b``."""
        va, vb = self.values_of(a), self.values_of(b)
        for ax, x, y in zip(self.axes, va, vb):
            if (x > y) if ax.monotone else (x != y):
                return False
        return True


def field_values(candidate: Any, names: Sequence[str]) -> tuple[int, ...]:
    """Read ``names`` from a NamedTuple/dataclass/object by attribute, or a plain tuple by index."""
    if all(hasattr(candidate, n) for n in names):
        return tuple(getattr(candidate, n) for n in names)
    if isinstance(candidate, tuple) and len(candidate) == len(names):
        return tuple(candidate)
    raise TypeError(f"cannot read fields {tuple(names)} from candidate {candidate!r}")


def as_vector(candidate: Any) -> tuple:
    """Numeric vector of a candidate: dataclass fields in order, or the tuple itself."""
    if dataclasses.is_dataclass(candidate) and not isinstance(candidate, type):
        return tuple(getattr(candidate, f.name) for f in dataclasses.fields(candidate))
    if isinstance(candidate, tuple):
        return candidate
    raise TypeError(
        f"candidate {candidate!r} is neither a tuple nor a dataclass; pass an explicit `leq`"
    )


def componentwise_leq(a: Any, b: Any) -> bool:
    """Default partial order: every component of ``a`` ≤ the same component of ``b``."""
    va, vb = as_vector(a), as_vector(b)
    if len(va) != len(vb):
        raise ValueError(f"candidates {a!r} and {b!r} have different lengths")
    return all(x <= y for x, y in zip(va, vb))


def grid(
    valid: Validity | None = None,
    factory: Factory | None = None,
    monotone: Mapping[str, bool] | None = None,
    type_name: str = "Candidate",
    **axes: Sequence[int],
) -> SearchSpace:
    """Convenience constructor: ``grid(depth=[2, 4], width=[8, 16], valid=...)``."""
    monotone = dict(monotone or {})
    unknown = set(monotone) - set(axes)
    if unknown:
        raise ValueError(f"monotone: unknown axis {sorted(unknown)[0]!r}")
    return SearchSpace(
        axes=tuple(Axis(n, tuple(v), monotone.get(n, True)) for n, v in axes.items()),
        valid=valid,
        factory=factory,
        type_name=type_name,
    )


BERT_AXES = {
    "depth": (2, 4, 6, 8, 10, 12),
    "heads": (4, 8, 12, 16),
    "hidden": (512, 768, 1024),
    "intermediate": (256, 512, 768, 1024, 3072),
}


def heads_divide_hidden(fields: Mapping[str, int]) -> bool:
    """BERT validity: the hidden size splits evenly across attention heads."""
    return fields["hidden"] % fields["heads"] == 0


def bert_grid(factory: Factory | None = None, monotone_heads: bool = False) -> SearchSpace:
    """The Bort paper's BERT grid (300 valid candidates), as ``bort_jax.arch.Arch`` by default.

    ``monotone_heads=False`` (default) leaves the head count out of the ⪯ order: with parameter
    count and FLOPs independent of A at fixed H, assuming "more heads ⇒ lower error" would make
    every A < 16 candidate dominated, yet Bort itself has A = 8. Set it to True to assume it.
    """
    axes = tuple(
        Axis(name, values, monotone=(name != "heads" or monotone_heads))
        for name, values in BERT_AXES.items()
    )
    return SearchSpace(
        axes=axes, valid=heads_divide_hidden, factory=factory or Arch, type_name="Arch"
    )


def _positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(v) for v in values)
    if not out or min(out) <= 0:
        raise ValueError(
            f"config.grid.{name} must be a non-empty list of positive ints, got {list(values)}"
        )
    return out


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """The grid Ξ of an extraction (config section `grid`): ⟨D, A, H, I⟩ axes and the order ⪯.

    head_dim: > 0 keeps only shapes with H = A·head_dim (sliceable from a source of that head
      width) and makes heads monotone; 0 = any A dividing H.
    monotone_*: whether an axis takes part in ⪯ of assumption M ("bigger is not worse"); an
      axis the audit shows M fails on is taken out (then only equal values compare).
    strict: every (H, A) pair of the axes must divide (else ValueError), not just skip.
    """

    depth: tuple[int, ...] = (1, 2, 4, 6)
    heads: tuple[int, ...] = (4, 8, 12)
    hidden: tuple[int, ...] = (128, 256, 384)
    intermediate: tuple[int, ...] = (384, 1536)
    head_dim: int = 0
    monotone_heads: bool = False
    monotone_depth: bool = True
    monotone_hidden: bool = True
    monotone_intermediate: bool = True
    strict: bool = False

    def __post_init__(self) -> None:
        for name in ("depth", "heads", "hidden", "intermediate"):
            object.__setattr__(self, name, _positive_ints(name, getattr(self, name)))


def build_space(grid: GridConfig) -> SearchSpace:
    """The search space Ξ of ⟨D, A, H, I⟩ `Arch`s from `grid` (ValueError naming a bad field)."""
    head_dim = grid.head_dim

    def valid(f: Mapping[str, int]) -> bool:
        if f["hidden"] % f["heads"]:
            return False
        return not head_dim or f["hidden"] == f["heads"] * head_dim

    monotone = {
        "heads": bool(grid.monotone_heads or head_dim),
        "depth": grid.monotone_depth,
        "hidden": grid.monotone_hidden,
        "intermediate": grid.monotone_intermediate,
    }
    axes = {n: getattr(grid, n) for n in ("depth", "heads", "hidden", "intermediate")}
    sp = SearchSpace(
        axes=tuple(Axis(n, v, monotone[n]) for n, v in axes.items()),
        valid=valid,
        factory=Arch,
        type_name="Arch",
    )
    sp.candidates()  # raises if nothing is valid
    bad = [(h, a) for h in grid.hidden for a in grid.heads if h % a]
    if bad and grid.strict:
        raise ValueError(f"config.grid: hidden not divisible by heads for {bad}")
    return sp
