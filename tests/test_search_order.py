"""The vectorised order ⪯ and bounds give exactly the search of the generic (custom leq) path."""

import dataclasses
import random
import warnings

import numpy as np
import pytest

from bort_jax.arch import Arch
from bort_jax.search import fptas as F
from bort_jax.search import order as O
from bort_jax.search import space as SP
from bort_jax.search import synthetic as S
from bort_jax.search.assumptions import AssumptionWarning


def generic(leq):
    """The same order as an opaque function: forces the pairwise (generic) path."""
    return lambda a, b: leq(a, b)


@pytest.mark.parametrize(
    "make",
    [
        lambda: (SP.bert_grid().candidates(), SP.bert_grid().leq),  # heads not monotone
        lambda: (
            SP.bert_grid(monotone_heads=True).candidates(),
            SP.bert_grid(monotone_heads=True).leq,
        ),
        lambda: (S.toy_mlp_space().candidates(), S.toy_mlp_space().leq),
        lambda: (SP.bert_grid().candidates(), SP.componentwise_leq),  # Arch dataclasses
        lambda: ([(a, b) for a in range(5) for b in (0.5, 1.5, 2.5)], SP.componentwise_leq),
        lambda: (S.random_monotone_instance(4).candidates, S.random_monotone_instance(4).leq),
    ],
)
def test_dominance_matrix_matches_generic(make):
    cands, leq = make()
    assert O.order_values(cands, leq) is not None  # the vectorised path is really taken
    fast = O.dominance_matrix(cands, leq)
    slow = O.dominance_matrix(cands, generic(leq))
    assert fast.dtype == bool and fast.shape == (len(cands), len(cands))
    assert np.array_equal(fast, slow) and fast.any() and not fast.diagonal().any()
    k, j = map(int, np.argwhere(fast)[0])
    assert leq(cands[k], cands[j])


def test_block_size_does_not_matter():
    cands = SP.bert_grid().candidates()
    values, monotone = O.order_values(cands, SP.bert_grid().leq)
    assert np.array_equal(
        O._vectorised_matrix(values, monotone, block=7), O._vectorised_matrix(values, monotone)
    )


def test_fallbacks_and_antisymmetry():
    mixed = [(1, 2), (1, 2, 3)]
    assert O.order_values(mixed, SP.componentwise_leq) is None
    with pytest.raises(ValueError, match="different lengths"):
        O.dominance_matrix(mixed, SP.componentwise_leq)
    assert O.order_values([("a",), ("b",)], SP.componentwise_leq) is None

    @dataclasses.dataclass(frozen=True)
    class Named:
        name: str

    assert O.order_values([Named("x")], SP.componentwise_leq) is None
    with pytest.raises(ValueError, match="antisymmetric"):
        O.dominance_matrix([1, 2], lambda a, b: True)


def scalar_trim(up, factor, limit):
    """The all-scalar rule (the pre-numpy implementation): min_j (f(k, j), j) ≤ limit."""
    order = sorted(range(len(up)), key=lambda k: (len(up[k]), k))
    trimmed = {}
    for k in order:
        options = [(factor(k, j), j) for j in up[k] if j not in trimmed]
        if options:
            f, j = min(options)
            if f <= limit:
                trimmed[k] = (j, f)
    return trimmed


@pytest.mark.parametrize("seed", range(5))
def test_trim_is_exact_despite_rounded_vector_factors(seed):
    """Numpy factors off by ~1e-13 (and many exact ties) still give the scalar decisions."""
    rng = random.Random(seed)
    inst = S.random_monotone_instance(seed)
    up, _ = O.up_down_lists(O.dominance_matrix(inst.candidates, inst.leq))
    sizes = [round(rng.uniform(1.0, 1.3), 2) for _ in inst.candidates]  # ties are common

    def factor(k, j):
        return sizes[j] / sizes[k]

    def factors(k, js):
        noise = np.array([1 + rng.uniform(-1e-13, 1e-13) for _ in js])
        return np.array([factor(k, int(j)) for j in js]) * noise

    for limit in (1.0, 1.05, 1.1):
        assert O.trim(up, factors, factor, limit) == scalar_trim(up, factor, limit)


def summary(res):
    return (
        res.chosen,
        res.evaluations,
        res.trimmed,
        res.failed,
        res.stopped_by,
        res.guarantee,
        res.pareto_front,
        res.assumption_violations,
    )


@pytest.mark.parametrize("seed", range(8))
def test_vectorised_and_generic_searches_are_identical(seed):
    objective = (
        F.WCoefficient(1, 1, 1),
        F.WCoefficient(1, 1, 4),
        F.WCoefficient(0.5, 0.5, 4),
        F.WCoefficient(0.5, 0.5, 2),
    )[seed % 4]
    inst = S.random_monotone_instance(200 + seed, noise=0.1 * (seed % 2))
    options = [  # (s, assumptions besides M)
        (1, {}),
        (3, {}),
        (1, dict(lipschitz=2.0)),
        (1, dict(convex_in=inst.log_capacity)),
        (2, dict(e_floor=0.05)),
    ]
    for eps in (0.05, 0.25):
        for s, extra in options:
            runs = []
            for leq in (inst.leq, generic(inst.leq)):
                inst.e.seen.clear()
                with warnings.catch_warnings():  # L and C need not hold on these instances
                    warnings.simplefilter("ignore", AssumptionWarning)
                    res = F.fptas(
                        inst.candidates,
                        inst.p,
                        inst.i,
                        inst.e,
                        eps,
                        s,
                        objective=objective,
                        assumptions=F.Assumptions(inst.noise, **extra),
                        options=F.SearchOptions(leq=leq),
                    )
                runs.append((summary(res), list(inst.e.seen)))
            assert runs[0] == runs[1], (seed, eps, extra)
            assert runs[0][1] == [ev.candidate for ev in runs[0][0][1]]  # same e-call sequence


def test_vectorised_path_on_arch_candidates():
    inst = S.bert_like_instance(noise=0.02)
    assert type(inst.candidates[0]) is Arch
    a = F.fptas(
        inst.candidates,
        inst.p,
        inst.i,
        inst.e,
        0.1,
        objective=F.WCoefficient(0.5, 0.5, 4),
        assumptions=F.Assumptions(monotonicity_slack=0.02),
        options=F.SearchOptions(leq=inst.leq),
    )
    b = F.fptas(
        inst.candidates,
        inst.p,
        inst.i,
        inst.e,
        0.1,
        objective=F.WCoefficient(0.5, 0.5, 4),
        assumptions=F.Assumptions(monotonicity_slack=0.02),
        options=F.SearchOptions(leq=generic(inst.leq)),
    )
    assert summary(a) == summary(b) and a.guarantee.certified
