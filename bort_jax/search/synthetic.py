"""Synthetic OSE instances with a known optimum, for testing and auditing the FPTAS.

Context: de Wynter, arXiv 2010.08512 (OSE, W-coefficient, AB^nC) and de Wynter & Perry,
arXiv 2010.10499 (the BERT grid). The instances satisfy the FPTAS's assumption M by construction
(see bort_jax/search/fptas.py): the error is a decreasing function of a capacity that grows along
the partial order ⪯,

    e(ξ) = (a + b · cap(ξ)^(−power)) · u(ξ),   u(ξ) ∈ [1, 1 + δ] seeded per candidate,   (Eq. E)

so ξ ⪯ ξ' ⇒ e(ξ) ≥ e_true(ξ) ≥ e_true(ξ') ≥ e(ξ')/(1 + δ): M holds with slack δ. With no noise
(δ = 0) the optimum is known in closed form from Eq. E, computed here without calling ``e``.

Chain instance (1-D, analytic optimum): ξ = d ∈ {1..n}, p = p₁·d, i = i₁·d, e = a + b/d. With
W = (p_ref/p)^α (i_ref/i)^β (e_ref/e)^γ and m = α + β < γ, d ln W/dd = 0 gives

    d* = (γ − m) · b / (m · a),                                                        (Eq. D)

and, W being unimodal in d, the discrete optimum is ⌊d*⌋ or ⌈d*⌉.

Toy dense stack (a small hand-checkable example): arch = (n, h, d_in, h', d_out) is n copies
of a two-layer unit d_in→h and h'→d_out (composable when h = h'), counted as
n·Σ(fan_in·fan_out + fan_out): (2,4,3,4,4) → 2(4·3 + 4 + 4·4 + 4) = 72 and
(2,3,3,3,2) → 2(3·3 + 3 + 3·2 + 2) = 40.

Random monotone grids: e(ξ) = 0.05 + Σ_{ξ' ⪰ ξ} r(ξ') with i.i.d. r ≥ 0 satisfies M exactly; they
stress-test the guarantee on error landscapes with no capacity structure.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Callable, Hashable, NamedTuple, Sequence

import numpy as np

from bort_jax.search.objective import WCoefficient
from bort_jax.search.space import SearchSpace, bert_grid, componentwise_leq, grid

Candidate = Hashable


class CountingError:
    """Wraps an error function and counts its calls (to measure e-evaluations in tests/audits)."""

    def __init__(self, fn: Callable[[Candidate], float]) -> None:
        self.fn = fn
        self.calls = 0
        self.seen: list[Candidate] = []

    def __call__(self, candidate: Candidate) -> float:
        self.calls += 1
        self.seen.append(candidate)
        return self.fn(candidate)


def bounded_noise(candidate: Candidate, delta: float, seed: int) -> float:
    """Deterministic multiplicative factor u(ξ) ∈ [1, 1 + δ], seeded by (seed, repr(ξ))."""
    if delta == 0:
        return 1.0
    rng = np.random.default_rng([seed, zlib.crc32(repr(candidate).encode())])
    return 1.0 + delta * float(rng.random())


@dataclasses.dataclass
class SyntheticInstance:
    """Candidates plus cheap costs p, i, a counted error e and its noise-free form."""

    name: str
    candidates: list
    p: Callable[[Candidate], float]
    i: Callable[[Candidate], float]
    e: CountingError
    true_error: Callable[[Candidate], float]
    leq: Callable[[Candidate, Candidate], bool]
    capacity: Callable[[Candidate], float]
    noise: float = 0.0

    def log_capacity(self, candidate: Candidate) -> float:
        """Coordinate in which the error is convex along chains (assumption C of the FPTAS)."""
        return math.log(self.capacity(candidate))

    def objective_values(self, objective: WCoefficient, noisy: bool = True) -> dict:
        """W of every candidate from the closed form (does not touch the call counter)."""
        err = self.e.fn if noisy else self.true_error
        p_ref = max(self.p(c) for c in self.candidates)
        i_ref = max(self.i(c) for c in self.candidates)
        return {
            c: objective.value(self.p(c), self.i(c), err(c), p_ref, i_ref) for c in self.candidates
        }

    def optimum(self, objective: WCoefficient, noisy: bool = True) -> tuple[Candidate, float]:
        """Exact argmax and max of W over the candidates, without calling ``e``."""
        values = self.objective_values(objective, noisy)
        best = max(values, key=values.get)
        return best, values[best]


def capacity_error(cap: float, a: float, b: float, power: float) -> float:
    """Eq. E without noise: a + b·cap^(−power)."""
    return a + b * cap ** (-power)


def capacity_instance(
    name: str,
    candidates: Sequence[Candidate],
    p: Callable[[Candidate], float],
    i: Callable[[Candidate], float],
    *,
    a: float,
    b: float,
    power: float,
    capacity: Callable[[Candidate], float] | None = None,
    leq: Callable[[Candidate, Candidate], bool] = componentwise_leq,
    noise: float = 0.0,
    seed: int = 0,
) -> SyntheticInstance:
    """Instance with error Eq. E; ``capacity`` (default p) must be monotone along ``leq``."""
    cap = capacity or p

    def true_error(c: Candidate) -> float:
        return capacity_error(cap(c), a, b, power)

    def noisy_error(c: Candidate) -> float:
        return true_error(c) * bounded_noise(c, noise, seed)

    return SyntheticInstance(
        name, list(candidates), p, i, CountingError(noisy_error), true_error, leq, cap, noise
    )


# ----------------------------------------------------------------------------- chain (analytic)


class Depth(NamedTuple):
    depth: int


def chain_optimum(a: float, b: float, objective: WCoefficient) -> float:
    """Eq. D: continuous maximiser d* of W(d) for p ∝ d, i ∝ d, e = a + b/d."""
    m = objective.alpha + objective.beta
    if not objective.gamma > m:
        raise ValueError("chain_optimum needs gamma > alpha + beta (else W decreases in d)")
    return (objective.gamma - m) * b / (m * a)


def chain_instance(
    n: int = 40,
    a: float = 0.1,
    b: float = 2.0,
    p_unit: float = 1000.0,
    i_unit: float = 2000.0,
    noise: float = 0.0,
    seed: int = 0,
) -> SyntheticInstance:
    """1-D depth chain d = 1..n with p = p_unit·d, i = i_unit·d, e = a + b/d (Eq. D optimum)."""
    cands = [Depth(d) for d in range(1, n + 1)]
    return capacity_instance(
        "chain",
        cands,
        lambda c: p_unit * c.depth,
        lambda c: i_unit * c.depth,
        a=a,
        b=b,
        power=1.0,
        capacity=lambda c: float(c.depth),
        noise=noise,
        seed=seed,
    )


# ----------------------------------------------------------------------------- toy dense stack


class ToyMLP(NamedTuple):
    """The seed's toy architecture (n, h, d_in, h', d_out): n copies of d_in→h, h'→d_out."""

    n: int
    hidden: int
    d_in: int
    hidden_out: int
    d_out: int


def dense_stack_params(
    layers: Sequence[tuple[int, int]], copies: int = 1, bias: bool = True
) -> int:
    """copies · Σ (fan_in·fan_out + fan_out·bias) over dense layers given as (fan_in, fan_out)."""
    from bort_jax.arch import dense_params

    if bias:
        return copies * dense_params(layers)
    return copies * sum(fi * fo for fi, fo in layers)


def dense_stack_flops(layers: Sequence[tuple[int, int]], copies: int = 1) -> int:
    """Multiply-adds counted as 2 ops per weight plus one add per bias, per example."""
    return copies * sum(2 * fi * fo + fo for fi, fo in layers)


def toy_layers(arch: Sequence[int]) -> list[tuple[int, int]]:
    """(n, h, d_in, h', d_out) → dense layers [(d_in, h), (h', d_out)]."""
    _, h, d_in, h_out, d_out = arch
    return [(d_in, h), (h_out, d_out)]


def toy_mlp_params(arch: Sequence[int]) -> int:
    """Parameter count of the toy stack: (2,4,3,4,4) → 72, (2,3,3,3,2) → 40."""
    return dense_stack_params(toy_layers(arch), copies=arch[0])


def toy_mlp_flops(arch: Sequence[int]) -> int:
    return dense_stack_flops(toy_layers(arch), copies=arch[0])


def toy_mlp_space(
    n_values: Sequence[int] = (1, 2, 3, 4),
    hidden_values: Sequence[int] = tuple(range(2, 9)),
    d_in: int = 3,
    d_out: int = 2,
) -> SearchSpace:
    """Grid of composable toy stacks (h = h'); 4 × 7 = 28 candidates by default."""
    return grid(
        valid=lambda f: f["hidden"] == f["hidden_out"],
        factory=ToyMLP,
        n=n_values,
        hidden=hidden_values,
        d_in=(d_in,),
        hidden_out=hidden_values,
        d_out=(d_out,),
    )


def toy_mlp_instance(
    a: float = 0.05,
    b: float = 3.0,
    power: float = 0.5,
    noise: float = 0.0,
    seed: int = 0,
    space: SearchSpace | None = None,
) -> SyntheticInstance:
    """Toy stack grid with Eq. E error over capacity = parameter count."""
    space = space or toy_mlp_space()
    return capacity_instance(
        "toy_mlp",
        space.candidates(),
        toy_mlp_params,
        toy_mlp_flops,
        a=a,
        b=b,
        power=power,
        leq=space.leq,
        noise=noise,
        seed=seed,
    )


# ----------------------------------------------------------------------------- BERT-like


def _as_arch(c):
    from bort_jax import arch as A

    return A.Arch(c.depth, c.heads, c.hidden, c.intermediate)


def bert_like_params(c, vocab: int = 30522, positions: int = 512) -> int:
    """Post-LN BERT without pooler (`arch.param_count`): (V+P+2)H + 2H + D(4H² + 2HI + 9H + I)."""
    from bort_jax import arch as A

    spec = A.Spec(vocab_size=vocab, max_positions=positions, pooler=False)
    return A.param_count(_as_arch(c), spec)["total"]


def bert_like_flops(c, seq_len: int = 128) -> int:
    """Matmul FLOPs for one sequence (`arch.flops`): 2·L·D(4H² + 2HI) + 4·L²·H·D."""
    from bort_jax import arch as A

    return A.flops(_as_arch(c), seq_len, spec=A.Spec(pooler=False))


def bert_like_instance(
    a: float = 1.5,
    b: float = 60.0,
    power: float = 0.25,
    noise: float = 0.0,
    seed: int = 0,
    vocab: int = 30522,
    seq_len: int = 128,
    space: SearchSpace | None = None,
) -> SyntheticInstance:
    """The 300-candidate BERT grid with Eq. E error over non-embedding capacity (+ heads)."""
    space = space or bert_grid()

    def capacity(c) -> float:  # encoder parameters, with a small monotone bonus for heads
        h, inter = c.hidden, c.intermediate
        return c.depth * (4 * h * h + 2 * h * inter + 9 * h + inter) + 1000.0 * c.heads

    return capacity_instance(
        "bert_like",
        space.candidates(),
        lambda c: bert_like_params(c, vocab),
        lambda c: bert_like_flops(c, seq_len),
        a=a,
        b=b,
        power=power,
        capacity=capacity,
        leq=space.leq,
        noise=noise,
        seed=seed,
    )


def random_monotone_instance(
    seed: int, n_axes: int = 3, max_values: int = 4, noise: float = 0.0
) -> SyntheticInstance:
    """A random grid whose error satisfies assumption M exactly (before noise):

        e(ξ) = 0.05 + Σ_{ξ' ⪰ ξ} r(ξ'),   r(ξ') ~ Exponential(0.05) i.i.d.,

    non-increasing along ⪯ because up-sets shrink; p and i are random positive linear forms.
    Used to stress-test the guarantee, which must hold for every such instance.
    """
    rng = np.random.default_rng(seed)
    axes = {
        f"a{k}": tuple(
            sorted(
                rng.choice(
                    np.arange(1, 9), size=int(rng.integers(2, max_values + 1)), replace=False
                ).tolist()
            )
        )
        for k in range(n_axes)
    }
    space = grid(**axes)
    cands = space.candidates()
    wp, wi = rng.uniform(0.5, 2.0, n_axes), rng.uniform(0.5, 2.0, n_axes)
    r = {c: float(rng.exponential(0.05)) for c in cands}
    base = {c: 0.05 + sum(r[d] for d in cands if space.leq(c, d)) for c in cands}

    def p(c) -> float:
        return 1.0 + float(np.dot(wp, c))

    def i(c) -> float:
        return 1.0 + float(np.dot(wi, np.square(c)))

    def noisy(c) -> float:
        return base[c] * bounded_noise(c, noise, seed)

    return SyntheticInstance(
        f"random_monotone_{seed}",
        cands,
        p,
        i,
        CountingError(noisy),
        base.__getitem__,
        space.leq,
        p,
        noise,
    )
