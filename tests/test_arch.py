"""Exact parameter arithmetic of bort_jax.arch, checked against known models and real trees."""

import jax
import numpy as np
import pytest

from bort_jax import arch as A
from bort_jax.models.bert import Bert, init_params
from bort_jax.search.synthetic import toy_mlp_params


def test_bert_large_and_base_counts():
    large = A.param_count(A.BERT_LARGE, A.BERT_SPEC)
    assert large["total"] == 335_141_888
    assert large["embedding"] == 31_782_912
    assert A.param_count(A.BERT_BASE, A.BERT_SPEC)["total"] == 109_482_240


def test_layer_formula_by_hand():
    # D1/A2/H4/I6: 4·16 + 2·4·6 + 9·4 + 6 = 64 + 48 + 36 + 6 = 154
    assert A.layer_params(A.Arch(1, 2, 4, 6)) == 154


def test_toy_dense_stack():
    assert toy_mlp_params((2, 4, 3, 4, 4)) == 72 == 2 * (4 * 3 + 4 + 4 * 4 + 4)
    assert toy_mlp_params((2, 3, 3, 3, 2)) == 40 == 2 * (3 * 3 + 3 + 3 * 2 + 2)


def test_bort_shapes():
    released = A.param_count(
        A.BORT, A.Spec(vocab_size=50265, max_positions=514, type_vocab_size=1, pooler=True)
    )
    assert abs(released["total"] / 1e6 - 76.2) < 0.05
    assert round(released["encoder"] / released["total"] * 100, 1) == 30.3
    paper = A.param_count(A.BORT_PAPER_SIZE, A.Spec(vocab_size=50265, pooler=True))
    assert abs(paper["total"] / 1e6 - 55.4) < 0.1
    assert abs(paper["embedding"] / 1e6 - 39.0) < 0.1


@pytest.mark.parametrize(
    "field,args",
    [("heads", (2, 3, 8, 16)), ("depth", (0, 2, 8, 16)), ("intermediate", (2, 2, 8, -1))],
)
def test_invalid_arch_names_field(field, args):
    with pytest.raises(ValueError, match=field):
        A.Arch(*args)


def test_parse():
    assert A.Arch.parse("4,8,1024,768") == A.BORT
    assert A.Arch.parse("D4/A8/H1024/I768") == A.BORT
    with pytest.raises(ValueError):
        A.Arch.parse("4,8")


def _random_archs(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        heads = int(rng.integers(1, 5))
        out.append(
            A.Arch(
                int(rng.integers(1, 4)),
                heads,
                heads * int(rng.integers(1, 9)),
                int(rng.integers(1, 40)),
            )
        )
    return out


@pytest.mark.parametrize("arch", _random_archs(6))
@pytest.mark.parametrize("pooler,mlm,labels", [(True, False, 0), (False, True, 3)])
def test_param_count_matches_flax_tree(arch, pooler, mlm, labels):
    spec = A.Spec(vocab_size=37, max_positions=16, type_vocab_size=2, pooler=pooler)
    model = Bert(arch, spec, mlm_head=mlm, num_labels=labels)
    # The tree's shapes are all the count needs: traced, not compiled or run.
    params = jax.eval_shape(lambda: init_params(model, jax.random.PRNGKey(0)))
    counts = A.param_count(arch, spec, mlm_head=mlm, num_labels=labels)
    extra = 0 if pooler or not labels else A.pooler_params(arch)  # fresh tanh head pooler
    assert A.count_tree(params) == counts["total"] + extra
    assert A.count_tree(params["embeddings"]) == counts["embedding"]
    assert sum(A.count_tree(params[f"layer_{i}"]) for i in range(arch.depth)) == counts["encoder"]


def _jaxpr_dot_flops(jaxpr) -> int:
    """2·(output size)·(contracted size) summed over every dot_general, sub-jaxprs included."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            k = int(np.prod([lhs[d] for d in lhs_contract]))
            total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * k
        for sub in jax.core.subjaxprs(eqn) if hasattr(jax.core, "subjaxprs") else []:
            total += _jaxpr_dot_flops(sub)
        for v in eqn.params.values():
            if hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
                total += _jaxpr_dot_flops(v.jaxpr)
    return total


@pytest.mark.parametrize("pooler", [False, True])
def test_flops_match_traced_matmuls(pooler):
    arch = A.Arch(2, 2, 16, 24)
    spec = A.Spec(vocab_size=50, max_positions=32, pooler=pooler)
    model = Bert(arch, spec)
    params = init_params(model, jax.random.PRNGKey(0))
    ids = np.zeros((3, 12), np.int32)
    jaxpr = jax.make_jaxpr(lambda p, x: model.apply({"params": p}, x))(params, ids)
    assert _jaxpr_dot_flops(jaxpr.jaxpr) == A.flops(arch, 12, batch=3, spec=spec)


def test_flops_by_hand():
    # D1/A1/H2/I3, L=4: 2·4·(4·4 + 2·2·3) + 4·16·2 = 8·28 + 128 = 352
    assert A.flops(A.Arch(1, 1, 2, 3), 4, spec=A.Spec(pooler=False)) == 352
