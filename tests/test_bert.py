"""The Flax encoder: masking, dropout, dtypes, heads and slicing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.errors import InvalidRngError

from bort_jax import distill, hf, proxy, train
from bort_jax.arch import Arch, Spec
from bort_jax.config import ConfigError, from_config
from bort_jax.models.bert import (
    Bert,
    ModelOptions,
    fresh_params,
    init_params,
    logical_axes,
    merge_pretrained,
    position_ids,
    slice_params,
    stack_layers,
    taken_from_pretrained,
    unstack_layers,
)

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
    out = model.apply(
        {"params": params},
        ids,
        mask,
        output_hidden_states=True,
        output_attentions=True,
        mlm_positions=np.array([[1, 2], [0, 3]]),
    )
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
    np.testing.assert_allclose(
        a["last_hidden_state"][0, :6], b["last_hidden_state"][0, :6], atol=1e-5
    )
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5)
    # and the unpadded row agrees with running it alone, unpadded
    alone = model.apply({"params": params}, ids[:1, :6], mask[:1, :6])
    np.testing.assert_allclose(
        alone["last_hidden_state"][0], a["last_hidden_state"][0, :6], atol=1e-5
    )


def test_mlm_logits_tied_to_word_embeddings(model_params):
    model, params = model_params
    ids, mask = _batch()
    out = model.apply({"params": params}, ids, mask, output_hidden_states=True)
    # recompute the head by hand from the last hidden state
    x = out["last_hidden_state"]
    t = x @ params["mlm_transform"]["kernel"] + params["mlm_transform"]["bias"]
    t = jax.nn.gelu(t, approximate=False)
    mu, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
    t = (t - mu) / jnp.sqrt(var + SPEC.layer_norm_eps) * params["mlm_norm"]["scale"] + params[
        "mlm_norm"
    ]["bias"]
    ref = t @ params["embeddings"]["word_embeddings"]["embedding"].T + params["mlm_bias"]
    np.testing.assert_allclose(out["mlm_logits"], ref, atol=1e-4)


def test_dropout_needs_rng_and_is_deterministic(model_params):
    model, params = model_params
    ids, mask = _batch()
    with pytest.raises(InvalidRngError):
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
    p16 = {
        k: v
        for k, v in p16.items()
        if k not in ("mlm_transform", "mlm_norm", "mlm_bias", "classifier")
    }
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


def test_fresh_params_skips_what_a_pretrained_tree_replaces(model_params):
    """The subtrees a merge takes from a checkpoint are not drawn: they come back abstract,
    the others equal the full init's exactly; a merge must then replace every skipped one."""
    model, _ = model_params
    full = fresh_params(model, 3)  # every subtree drawn
    body = {k: v for k, v in full.items() if k.startswith("layer_") or k == "embeddings"}
    skip = taken_from_pretrained(body)
    assert "layer_0" in skip and "classifier" not in skip
    fresh = fresh_params(model, 3, skip=skip)
    assert list(fresh) == list(full)
    for name, sub in fresh.items():
        leaves = jax.tree_util.tree_leaves(sub)
        if name in skip:
            assert all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves), name
        else:
            jax.tree_util.tree_map(np.testing.assert_array_equal, sub, full[name])
    merged = merge_pretrained(fresh, body)
    jax.tree_util.tree_map(np.testing.assert_array_equal, merged, full)
    with pytest.raises(ValueError, match="layer_1 was not initialised"):
        merge_pretrained(fresh, {k: v for k, v in body.items() if k != "layer_1"})


@pytest.mark.slow
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
    key = np.asarray(params["layer_0"]["attention"]["key"]["kernel"])
    np.testing.assert_array_equal(sliced["layer_0"]["attention"]["key"]["kernel"], key[:24, :24])
    ids, mask = _batch()
    out = Bert(wide, SPEC, mlm_head=True, num_labels=3).apply({"params": sliced}, ids, mask)
    assert np.isfinite(out["logits"]).all()


# ------------------------------------------------------------------ scanned layers (nn.scan)


def _close(a, b, rtol=1e-5, atol=1e-6):
    """Trees a and b equal in structure and close leaf by leaf (fp32, highest precision)."""
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol),
        a,
        b,
    )


def _scan_pair(depth, **kw):
    arch = Arch(depth, 4, 32, 48)
    unrolled = Bert(arch, SPEC, mlm_head=True, num_labels=3, **kw)
    scanned = Bert(arch, SPEC, mlm_head=True, num_labels=3, scan_layers=True, **kw)
    params = init_params(unrolled, jax.random.PRNGKey(depth))
    return arch, unrolled, scanned, params


def _everything(model, params, ids, mask, positions, rng=None):
    kw = (
        dict(deterministic=True)
        if rng is None
        else dict(deterministic=False, rngs={"dropout": rng})
    )
    return model.apply(
        {"params": params},
        ids,
        mask,
        output_hidden_states=True,
        output_attentions=True,
        mlm_positions=positions,
        **kw,
    )


def _scalar_loss(model, params, ids, mask, positions):
    """Touches every output: MLM + classifier logits, every hidden state, every logit map."""
    out = _everything(model, params, ids, mask, positions)
    loss = jnp.mean(jax.nn.log_softmax(out["mlm_logits"])[..., 7]) + jnp.sum(out["logits"] ** 2)
    loss += sum(jnp.mean(jnp.sin(h) * (k + 1)) for k, h in enumerate(out["hidden_states"]))
    loss += sum(
        jnp.mean(jnp.where(jnp.isfinite(z) & (z > -1e9), z, 0.0) ** 2)
        for z in out["attention_logits"]
    )
    return loss + jnp.mean(out["pooled"])


@pytest.mark.slow
@pytest.mark.parametrize("depth", [1, 3])
@jax.default_matmul_precision("highest")
def test_scanned_layers_equal_unrolled_outputs_and_gradients(depth):
    arch, unrolled, scanned, params = _scan_pair(depth)
    stacked = stack_layers(params, depth)
    # the scanned model's own init has exactly the stacked layout
    own = init_params(scanned, jax.random.PRNGKey(0))
    assert jax.tree_util.tree_structure(own) == jax.tree_util.tree_structure(stacked)
    assert own["layers"]["ffn_in"]["kernel"].shape == (depth, 32, 48)
    assert not any(k.startswith("layer_") for k in own)
    ids, mask = _batch(depth)
    positions = np.array([[1, 2, 5], [0, 3, 9]])
    run = jax.jit(_everything, static_argnums=0)
    ref, got = (
        run(unrolled, params, ids, mask, positions),
        run(scanned, stacked, ids, mask, positions),
    )
    assert len(got["hidden_states"]) == depth + 1 and len(got["attention_logits"]) == depth
    assert set(got) == {
        "last_hidden_state",
        "pooled",
        "hidden_states",
        "attention_logits",
        "mlm_logits",
        "logits",
    }
    _close(got, ref)
    np.testing.assert_array_equal(got["hidden_states"][-1], got["last_hidden_state"])
    grad = jax.jit(jax.grad(_scalar_loss, argnums=1), static_argnums=0)
    g_ref, g_got = (
        grad(unrolled, params, ids, mask, positions),
        grad(scanned, stacked, ids, mask, positions),
    )
    assert float(jnp.abs(g_ref["layer_0"]["ffn_in"]["kernel"]).max()) > 1e-4  # not vacuous
    _close(unstack_layers(g_got, depth), g_ref)


@pytest.mark.slow
@jax.default_matmul_precision("highest")
def test_remat_gives_the_same_gradients():
    arch, unrolled, scanned, params = _scan_pair(3)
    remat = Bert(arch, SPEC, mlm_head=True, num_labels=3, scan_layers=True, remat=True)
    stacked = stack_layers(params, 3)
    ids, mask = _batch(1)
    positions = np.array([[1, 2, 5], [0, 3, 9]])
    grad = jax.jit(jax.grad(_scalar_loss, argnums=1), static_argnums=0)
    g_scan = grad(scanned, stacked, ids, mask, positions)
    g_remat = grad(remat, stacked, ids, mask, positions)
    _close(g_remat, g_scan)
    _close(unstack_layers(g_remat, 3), grad(unrolled, params, ids, mask, positions))
    # the backward pass really recomputes: a remat (checkpoint) primitive in the jaxpr
    jaxpr = str(jax.make_jaxpr(lambda p: _scalar_loss(remat, p, ids, mask, positions))(stacked))
    assert "checkpoint" in jaxpr or "remat" in jaxpr
    with pytest.raises(ValueError, match="scan_layers"):
        init_params(Bert(arch, SPEC, remat=True), jax.random.PRNGKey(0))


def test_stack_unstack_round_trip_is_exact(model_params):
    _, params = model_params
    stacked = stack_layers(params, ARCH.depth)
    assert "layer_0" not in stacked and stacked["layers"]["attention"]["query"]["kernel"].shape == (
        2,
        32,
        32,
    )
    np.testing.assert_array_equal(
        stacked["layers"]["ffn_out"]["bias"][1], params["layer_1"]["ffn_out"]["bias"]
    )
    back = unstack_layers(stacked, ARCH.depth)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, params)
    with pytest.raises(ValueError, match="missing"):
        stack_layers(params, 3)
    with pytest.raises(ValueError, match="extra"):
        stack_layers(params, 1)
    with pytest.raises(ValueError, match="shape"):
        unstack_layers(stacked, 3)


@pytest.mark.slow
def test_scanned_dropout_is_deterministic_per_rng():
    _, _, scanned, params = _scan_pair(3, dropout_rate=0.3, attention_dropout_rate=0.3)
    stacked = stack_layers(params, 3)
    ids, mask = _batch()
    positions = np.array([[1, 2, 5], [0, 3, 9]])
    with pytest.raises(InvalidRngError):
        scanned.apply({"params": stacked}, ids, mask, deterministic=False)
    run = jax.jit(_everything, static_argnums=0)
    r = jax.random.PRNGKey(1)
    a = run(scanned, stacked, ids, mask, positions, r)
    b = run(scanned, stacked, ids, mask, positions, r)
    c = run(scanned, stacked, ids, mask, positions, jax.random.PRNGKey(2))
    d = run(scanned, stacked, ids, mask, positions)
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a["logits"], c["logits"]) and not np.allclose(a["logits"], d["logits"])
    # each layer draws its own mask: the dropped-out residual branches differ between layers
    for k in range(1, 4):
        assert not np.allclose(a["hidden_states"][k], d["hidden_states"][k])


def test_scanned_logical_axes_name_the_layers_axis():
    axes = logical_axes(Bert(ARCH, SPEC, scan_layers=True))
    assert tuple(axes["layers"]["ffn_in"]["kernel"]) == ("layers", "embed", "mlp")
    assert tuple(axes["layers"]["attention_norm"]["scale"]) == ("layers", "embed")
    assert tuple(axes["embeddings"]["word_embeddings"]["embedding"]) == ("vocab", "embed")


def _kd_data(teacher_depth=2, teacher_hidden=24, n=4, length=10):
    rng = np.random.default_rng(0)
    ids, mask = _batch(b=n, l=length)
    rows = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": np.zeros_like(ids),
        "mlm_positions": np.tile(np.array([[1, 2, 4]]), (n, 1)),
        "mlm_ids": rng.integers(5, 64, (n, 3)).astype(np.int32),
        "mlm_weights": np.ones((n, 3), np.float32),
    }
    teacher = {
        "hidden": rng.normal(size=(n, teacher_depth + 1, length, teacher_hidden)).astype(np.float16)
    }
    data = distill.KDData(rows, rows, teacher, teacher, teacher_depth, teacher_hidden, 64)
    return data, distill.kd_rows(rows, teacher)


@pytest.mark.slow
@jax.default_matmul_precision("highest")
def test_kd_student_with_scanned_layers_has_the_same_loss_and_gradients():
    data, batch = _kd_data()
    arch, weights = Arch(3, 4, 32, 48), distill.KDWeights(hidden=1.0, mlm=1.0)
    ref = distill.build_student(arch, data, SPEC, weights, seed=0)
    got = distill.build_student(
        arch, data, SPEC, weights, seed=0, options=ModelOptions(scan_layers=True)
    )
    assert got.model.scan_layers and "layers" in got.params["student"]
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        unstack_layers(got.params["student"], 3),
        ref.params["student"],
    )

    def run(student):
        fn = lambda p: student.loss_fn(p, batch, jax.random.PRNGKey(0), deterministic=True)
        return jax.jit(jax.value_and_grad(fn, has_aux=True))(student.params)

    (l_ref, m_ref), g_ref = run(ref)
    (l_got, m_got), g_got = run(got)
    assert m_ref["hidden"] > 0 and set(m_got) == set(m_ref)
    _close(m_got, m_ref)
    _close({**g_got, "student": unstack_layers(g_got["student"], 3)}, g_ref)


def test_proxy_config_passes_model_options_to_the_student(monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def fake_build_student(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(distill, "build_student", fake_build_student)
    for flag in (False, True):
        cfg = from_config(proxy.ProxyConfig, {"model": {"scan_layers": flag, "remat": flag}})
        with pytest.raises(Stop):
            proxy.proxy_error(Arch(1, 2, 32, 64), None, SPEC, cfg)
        assert seen["options"] == ModelOptions(scan_layers=flag, remat=flag)
    with pytest.raises(ConfigError, match="proxy.model.scan"):
        from_config(proxy.ProxyConfig, {"model": {"scan": True}}, "proxy")


@pytest.mark.slow
@jax.default_matmul_precision("highest")
def test_kd_training_with_model_options_equals_the_plain_student(tmp_path):
    """A few KD train steps with every layout option on (scanned, remat, padded vocabulary)
    give the plain student's losses, and its canonical tree exports the same HF weights."""
    data, _ = _kd_data(n=8)
    arch, weights = Arch(3, 4, 32, 48), distill.KDWeights(hidden=1.0, mlm=1.0)
    on = ModelOptions(scan_layers=True, remat=True, vocab_multiple=48)  # 64 -> 96 rows
    loop = train.LoopConfig(num_steps=3, seed=0, log_every=1)
    optim = train.OptimConfig(learning_rate=1e-2, warmup_steps=1)
    runs = {}
    for name, options in (("off", ModelOptions()), ("on", on)):
        student = distill.build_student(arch, data, SPEC, weights, seed=0, options=options)
        result = train.train(
            student.loss_fn, student.params, distill.train_batches(data, 4, 0), loop, optim
        )
        params = options.to_canonical(
            jax.device_get(result.state.params["student"]), arch, student.spec
        )
        path = hf.save(tmp_path / name, params, arch, student.spec)
        runs[name] = ([r["loss"] for r in result.history], hf.load(path).params, student)
    assert runs["on"][2].model.padded_vocab == 96 and "layers" in runs["on"][2].params["student"]
    (loss_off, exported_off, _), (loss_on, exported_on, _) = runs["off"], runs["on"]
    assert len(loss_off) == 3 and loss_off[-1] < loss_off[0]  # it trained
    np.testing.assert_allclose(loss_on, loss_off, rtol=1e-5)
    _close(exported_on, exported_off)
    with pytest.raises(ValueError, match="stacked 'layers'"):
        hf.save(tmp_path / "bad", runs["on"][2].params["student"], arch, runs["on"][2].spec)
