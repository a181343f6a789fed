"""The Flax encoder: masking, dropout, dtypes, heads and slicing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params, logical_axes, position_ids, slice_params

ARCH = Arch(2, 4, 32, 48)
SPEC = Spec(vocab_size=64, max_positions=24, pooler=True)


@pytest.fixture(scope="module")
def model_params():
    model = Bert(ARCH, SPEC, mlm_head=True, num_labels=3)
    return model, init_params(model, jax.random.PRNGKey(0))


def _batch(seed=0, b=2, l=10):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 64, (b, l)).astype(np.int32)
    mask = np.ones((b, l), np.int32)
    mask[0, 6:] = 0
    return ids, mask


def test_output_shapes(model_params):
    model, params = model_params
    ids, mask = _batch()
    out = model.apply({"params": params}, ids, mask, output_hidden_states=True,
                      output_attentions=True, mlm_positions=np.array([[1, 2], [0, 3]]))
    assert out["last_hidden_state"].shape == (2, 10, 32)
    assert len(out["hidden_states"]) == 3 and len(out["attention_logits"]) == 2
    assert out["attention_logits"][0].shape == (2, 4, 10, 10)
    assert out["mlm_logits"].shape == (2, 2, 64)
    assert out["logits"].shape == (2, 3) and out["pooled"].shape == (2, 32)


@jax.default_matmul_precision("highest")  # accelerators default to TF32/bf16 passes for fp32
def test_padding_never_leaks(model_params):
    model, params = model_params
    ids, mask = _batch()
    other = ids.copy()
    other[0, 6:] = np.arange(4) + 40  # different tokens under the padding
    a = model.apply({"params": params}, ids, mask)
    b = model.apply({"params": params}, other, mask)
    # exactly equal on CPU; accelerators may pick other matmul algorithms per call
    np.testing.assert_allclose(a["last_hidden_state"][0, :6], b["last_hidden_state"][0, :6],
                               atol=1e-5)
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5)
    # and the unpadded row agrees with running it alone, unpadded
    alone = model.apply({"params": params}, ids[:1, :6], mask[:1, :6])
    np.testing.assert_allclose(alone["last_hidden_state"][0], a["last_hidden_state"][0, :6],
                               atol=1e-5)


def test_mlm_logits_tied_to_word_embeddings(model_params):
    model, params = model_params
    ids, mask = _batch()
    out = model.apply({"params": params}, ids, mask, output_hidden_states=True)
    # recompute the head by hand from the last hidden state
    x = out["last_hidden_state"]
    t = x @ params["mlm_transform"]["kernel"] + params["mlm_transform"]["bias"]
    t = jax.nn.gelu(t, approximate=False)
    mu, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
    t = (t - mu) / jnp.sqrt(var + SPEC.layer_norm_eps) * params["mlm_norm"]["scale"] \
        + params["mlm_norm"]["bias"]
    ref = t @ params["embeddings"]["word_embeddings"]["embedding"].T + params["mlm_bias"]
    np.testing.assert_allclose(out["mlm_logits"], ref, atol=1e-4)


def test_dropout_needs_rng_and_is_deterministic(model_params):
    model, params = model_params
    ids, mask = _batch()
    with pytest.raises(Exception):
        model.apply({"params": params}, ids, mask, deterministic=False)
    r = jax.random.PRNGKey(1)
    a = model.apply({"params": params}, ids, mask, deterministic=False, rngs={"dropout": r})
    b = model.apply({"params": params}, ids, mask, deterministic=False, rngs={"dropout": r})
    c = model.apply({"params": params}, ids, mask, deterministic=True)
    np.testing.assert_array_equal(a["logits"], b["logits"])
    assert not np.allclose(a["logits"], c["logits"])


def test_bfloat16(model_params):
    _, params = model_params
    model = Bert(ARCH, SPEC, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    p16 = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
    p16 = {k: v for k, v in p16.items() if k not in ("mlm_transform", "mlm_norm", "mlm_bias",
                                                      "classifier")}
    ids, mask = _batch()
    out = model.apply({"params": p16}, ids, mask)["last_hidden_state"]
    ref = Bert(ARCH, SPEC).apply({"params": params}, ids, mask)["last_hidden_state"]
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=0.1)


def test_sequence_too_long_is_named():
    model = Bert(ARCH, SPEC)
    with pytest.raises(ValueError, match="max_positions"):
        init_params(model, jax.random.PRNGKey(0), seq_len=SPEC.max_positions + 1)


def test_roberta_positions_skip_padding():
    spec = Spec(vocab_size=10, pad_token_id=1, position_offset=2)
    ids = jnp.array([[0, 5, 6, 2, 1, 1]])
    np.testing.assert_array_equal(position_ids(ids, spec), [[2, 3, 4, 5, 1, 1]])
    np.testing.assert_array_equal(position_ids(ids, Spec()), [[0, 1, 2, 3, 4, 5]])


def test_logical_axes_cover_kernels():
    axes = logical_axes(Bert(ARCH, SPEC))
    assert tuple(axes["layer_0"]["ffn_in"]["kernel"]) == ("embed", "mlp")
    assert tuple(axes["embeddings"]["word_embeddings"]["embedding"]) == ("vocab", "embed")


def test_slice_to_full_size_is_identity(model_params):
    _, params = model_params
    sliced = slice_params(params, ARCH, ARCH)
    jax.tree_util.tree_map(np.testing.assert_array_equal, sliced, params)


def test_slice_smaller_runs_and_keeps_heads(model_params):
    _, params = model_params
    small = Arch(1, 2, 16, 20)
    sliced = slice_params(params, ARCH, small, layer_map=[1])
    model = Bert(small, SPEC, mlm_head=True, num_labels=3)
    ref = init_params(model, jax.random.PRNGKey(3))
    assert jax.tree_util.tree_structure(sliced) == jax.tree_util.tree_structure(ref)
    for a, b in zip(jax.tree_util.tree_leaves(sliced), jax.tree_util.tree_leaves(ref)):
        assert a.shape == b.shape
    # head 1 of the source query keeps its first d'=8 dims of its own 8-dim block
    src_q = np.asarray(params["layer_1"]["attention"]["query"]["kernel"]).reshape(32, 4, 8)
    got_q = np.asarray(sliced["layer_0"]["attention"]["query"]["kernel"]).reshape(16, 2, 8)
    np.testing.assert_array_equal(got_q[:, 1], src_q[:16, 1])
    ids, mask = _batch()
    assert np.isfinite(model.apply({"params": sliced}, ids, mask)["logits"]).all()


def test_slice_rejects_bigger_target(model_params):
    _, params = model_params
    with pytest.raises(ValueError, match="intermediate"):
        slice_params(params, ARCH, Arch(1, 4, 32, 64))


def test_slice_to_wider_heads_falls_back_to_units(model_params):
    _, params = model_params
    wide = Arch(1, 2, 24, 48)  # head width 12 > source's 8: plain [H', H'] blocks
    sliced = slice_params(params, ARCH, wide)
    np.testing.assert_array_equal(sliced["layer_0"]["attention"]["key"]["kernel"],
                                  np.asarray(params["layer_0"]["attention"]["key"]["kernel"])[:24, :24])
    ids, mask = _batch()
    out = Bert(wide, SPEC, mlm_head=True, num_labels=3).apply({"params": sliced}, ids, mask)
    assert np.isfinite(out["logits"]).all()
