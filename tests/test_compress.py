"""Layer dropping on a hand-built tree and on a real forward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import (
    Bert,
    Embeddings,
    EncoderLayer,
    init_params,
    slice_params,
    stack_layers,
)
from bort_jax.models.compress import depth_of, drop_layers, dropped_arch, keep_every

SPEC = Spec(vocab_size=32, max_positions=16, pooler=True)
ARCH4 = Arch(4, 2, 16, 32)


def hand_tree():
    return {
        "embeddings": {"w": np.array([9.0])},
        **{f"layer_{i}": {"w": np.array([float(i)])} for i in range(4)},
        "pooler": {"kernel": np.array([7.0])},
    }


def test_hand_built_tree():
    out = drop_layers(hand_tree(), [0, 2])
    assert sorted(out) == ["embeddings", "layer_0", "layer_1", "pooler"]
    assert out["layer_0"]["w"][0] == 0.0 and out["layer_1"]["w"][0] == 2.0
    assert out["embeddings"]["w"][0] == 9.0 and out["pooler"]["kernel"][0] == 7.0
    assert drop_layers(hand_tree(), [3, 1])["layer_0"]["w"][0] == 3.0  # order is kept
    assert depth_of(hand_tree()) == 4 and depth_of(out) == 2


def test_hand_built_stacked_tree():
    tree = {"embeddings": {"w": np.zeros(1)}, "layers": {"w": np.arange(4.0)[:, None]}}
    out = drop_layers(tree, keep_every(2, 4))
    np.testing.assert_array_equal(out["layers"]["w"], [[0.0], [2.0]])
    assert depth_of(tree) == 4 and depth_of(out) == 2


def test_keep_every_and_errors():
    assert keep_every(2, 4) == [0, 2]
    assert keep_every(2, 5, offset=1) == [1, 3]
    assert keep_every(1, 3) == [0, 1, 2]
    assert keep_every(3, 12) == [0, 3, 6, 9]
    assert dropped_arch(ARCH4, [0, 2]) == Arch(2, 2, 16, 32)
    for bad in ([], [4], [-1], [1.0]):
        with pytest.raises(ValueError):
            drop_layers(hand_tree(), bad)
    with pytest.raises(ValueError):
        keep_every(0, 4)
    with pytest.raises(ValueError):
        depth_of({"layer_0": {}, "layer_2": {}})


def _inputs():
    ids = jnp.array([[2, 5, 7, 1, 3, 0], [4, 4, 9, 11, 0, 0]], jnp.int32)
    mask = (ids != 0).astype(jnp.int32)
    return ids, mask


@pytest.mark.slow
def test_forward_equals_depth2_model_of_those_layers():
    p4 = init_params(Bert(ARCH4, SPEC), jax.random.PRNGKey(0))
    ids, mask = _inputs()
    keep = keep_every(2, 4)  # [0, 2]
    arch2 = dropped_arch(ARCH4, keep)
    p2 = drop_layers(p4, keep)
    got = Bert(arch2, SPEC).apply({"params": p2}, ids, mask, deterministic=True)

    # independent: embeddings, then the source's layer 0 and layer 2 applied by hand
    tt = jnp.zeros_like(ids)
    x = Embeddings(ARCH4, SPEC).apply({"params": p4["embeddings"]}, ids, tt, deterministic=True)
    for old in keep:
        x, _ = EncoderLayer(ARCH4, SPEC).apply(
            {"params": p4[f"layer_{old}"]}, x, mask, deterministic=True
        )
    np.testing.assert_allclose(got["last_hidden_state"], x, rtol=1e-5, atol=1e-5)
    pooled = jnp.tanh(x[:, 0] @ p4["pooler"]["kernel"] + p4["pooler"]["bias"])
    np.testing.assert_allclose(got["pooled"], pooled, rtol=1e-5, atol=1e-5)

    # the same tree as slice_params with that layer map (width unchanged)
    sliced = slice_params(p4, ARCH4, arch2, layer_map=keep)
    jax.tree_util.tree_map(np.testing.assert_array_equal, p2, sliced)

    # the stacked layout gives the same model
    p2s = drop_layers(stack_layers(p4, 4), keep)
    got_s = Bert(arch2, SPEC, scan_layers=True).apply({"params": p2s}, ids, mask)
    np.testing.assert_allclose(
        got_s["last_hidden_state"], got["last_hidden_state"], rtol=1e-5, atol=1e-5
    )
