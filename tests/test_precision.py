"""Mixed precision (`bort_jax.precision`): bfloat16 computation, float32 parameters.

A bfloat16 KD step and a bfloat16 fine-tuning step are run beside the float32 ones from the
same initial parameters and batch, through the real train step (`train.make_train_step`, AdamW
with clipping), and must track them. The tolerances:

  bfloat16 keeps 8 significant bits, so one rounding has relative error <= 2^-9 (~0.2%) and a
  value that went through a few roundings (matmul inputs, GELU, residual sums, LayerNorm
  output) carries ~2^-8. The loss is a float32 mean over many per-token terms whose rounding
  errors are independent and mostly cancel: measured here, the bfloat16 loss is within
  ~3e-5 (KD) and ~1e-5 (fine-tuning) relative of the float32 one. LOSS_RTOL = 1e-3 leaves a
  30x margin and is still half of one bfloat16 rounding of the loss itself (2^-9 ≈ 2e-3).
  Gradient direction: each gradient element carries relative noise ε ~ 2^-8, so
  1 - cos(g_bf16, g_f32) ≈ ε²/2 ~ 1e-5 (measured 1.5e-5 .. 5e-5, worst single leaf 8e-5).
  GRAD_COS_MIN = 0.999 (elementwise noise up to ~4%, about ten bfloat16 roundings, passes; a
  dropped or mis-scaled term or a wrong-signed leaf does not), checked for the whole tree and
  for every leaf of at least BIG_LEAF entries, so no leaf hides behind the others.
  Update direction: the first AdamW step moves each parameter by ≈ lr·sign(g), so the cosine
  of the two updates counts sign flips, which only gradients within bfloat16 noise of zero
  suffer (measured 1 - cos = 2e-4 .. 8e-4); UPDATE_COS_MIN = 0.99.

The same test also checks that bfloat16 really ran (the hidden states are bfloat16 and the
two losses are not bit-identical), so it cannot pass by ignoring `dtype`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bort_jax import distill, hf, precision, train
from bort_jax import finetune as ft
from bort_jax.arch import Arch, Spec
from bort_jax.config import ConfigError
from bort_jax.models.bert import Bert, fresh_params

LOSS_RTOL = 1e-3
GRAD_COS_MIN = 0.999
UPDATE_COS_MIN = 0.99
BIG_LEAF = 256  # leaves with at least this many entries get their own cosine check

V, L, P, B = 96, 16, 4, 8
SPEC = Spec(vocab_size=V, max_positions=32, pooler=False)
STUDENT = Arch(2, 2, 32, 64)
DT, HT = 4, 48  # teacher depth and width (the student projects 32 → 48)


# ----------------------------------------------------------------------------- resolver


def test_compute_dtype_values():
    assert precision.compute_dtype("float32") == jnp.float32
    assert precision.compute_dtype("bfloat16") == jnp.bfloat16
    for backend in ("tpu", "gpu", "cuda", "rocm"):
        assert precision.compute_dtype("auto", backend=backend) == jnp.bfloat16
    assert precision.compute_dtype("auto", backend="cpu") == jnp.float32


def test_auto_is_float32_on_cpu():
    assert jax.default_backend() == "cpu"  # the test suite runs on CPU (conftest)
    assert precision.compute_dtype("auto") == jnp.float32


@pytest.mark.parametrize("bad", ["fp16", "float16", "bf16", "", None, 32])
def test_bad_dtype_names_the_field(bad):
    with pytest.raises(ValueError) as e:
        precision.compute_dtype(bad, "config.student.dtype")
    msg = str(e.value)
    assert "config.student.dtype" in msg and repr(bad) in msg and "\n" not in msg


def test_configs_validate_dtype():
    from bort_jax import pretrain
    from bort_jax.experiments.agora_glue import GlueConfig, stage_config
    from configs import agora_glue, finetune, pretrain_bort

    for c in (pretrain_bort.get_config(), finetune.get_config(), agora_glue.get_config()):
        assert c.dtype == "auto"
    assert pretrain.validate(pretrain_bort.get_config()).dtype == "auto"
    assert ft.FinetuneConfig.from_config({"dtype": "bfloat16"}).dtype == "bfloat16"
    glue = GlueConfig.from_config(dict(agora_glue.get_config(), dtype="float32"))
    assert stage_config(glue.student, glue, 0).dtype == "float32"
    assert stage_config(glue.labeler, glue, 0).dtype == "float32"
    bad = [
        lambda: pretrain.validate(dict(pretrain_bort.get_config(), dtype="fp16")),
        lambda: ft.FinetuneConfig.from_config({"dtype": "half"}),
        lambda: GlueConfig.from_config(dict(agora_glue.get_config(), dtype="bf16")),
    ]
    for make in bad:
        with pytest.raises(ConfigError, match=r"config\.dtype="):
            make()


# ------------------------------------------------------------------------------ helpers


def _cos(a, b) -> float:
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def _assert_float32(tree, what: str) -> None:
    bad = {
        jax.tree_util.keystr(k): str(x.dtype)
        for k, x in jax.tree_util.tree_leaves_with_path(tree)
        if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != jnp.float32
    }
    assert not bad, f"{what} not float32: {bad}"


def _copy(tree):
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _step_both(loss_fn32, loss_fn16, params, batch, optim: train.OptimConfig):
    """The real train step and the gradient, float32 and bfloat16, from the same params."""
    out = {}
    for name, loss_fn in (("f32", loss_fn32), ("bf16", loss_fn16)):
        tx = train.make_optimizer(optim, num_steps=10)
        state = train.init_state(_copy(params), tx, seed=0)
        _assert_float32(state.opt_state, "initial optimizer state")
        grad_fn = jax.jit(jax.grad(lambda p, b, f=loss_fn: f(p, b, jax.random.PRNGKey(0))[0]))
        grads = grad_fn(state.params, batch)
        new, metrics = train.make_train_step(loss_fn, tx)(state, batch)
        out[name] = dict(grads=grads, state=new, metrics=jax.device_get(metrics))
    return out["f32"], out["bf16"]


def _check_tracking(f32: dict, bf16: dict, params0) -> None:
    assert bf16["metrics"]["loss"].dtype == np.float32  # the loss leaves the step in float32
    assert bool(bf16["metrics"]["finite"])
    l32, l16 = float(f32["metrics"]["loss"]), float(bf16["metrics"]["loss"])
    assert l16 != l32, "identical losses: bfloat16 did not run"
    assert abs(l16 - l32) <= LOSS_RTOL * abs(l32), (l16, l32)
    # parameters and optimizer state stay float32 under bfloat16 computation
    _assert_float32(bf16["state"].params, "updated params")
    _assert_float32(bf16["state"].opt_state, "optimizer state")
    _assert_float32(bf16["grads"], "gradients")
    # gradient direction: whole tree and every large leaf
    assert _cos(_flat(f32["grads"]), _flat(bf16["grads"])) > GRAD_COS_MIN
    pairs = zip(jax.tree_util.tree_leaves_with_path(f32["grads"]), jax.tree.leaves(bf16["grads"]))
    for (path, g32), g16 in pairs:
        if np.size(g32) >= BIG_LEAF and np.linalg.norm(g32) > 0:
            cos = _cos(g32, g16)
            assert cos > GRAD_COS_MIN, (jax.tree_util.keystr(path), cos)
    # the update of the first AdamW step points the same way
    delta = lambda s: _flat(s["state"].params) - _flat(params0)  # noqa: E731
    assert _cos(delta(f32), delta(bf16)) > UPDATE_COS_MIN


# ------------------------------------------------------------------------------ KD step


def _kd_data(rng: np.random.Generator) -> distill.KDData:
    rows = {
        "input_ids": rng.integers(5, V, (B, L)).astype(np.int32),
        "attention_mask": np.concatenate(
            [np.ones((B, L - 3), np.int32), np.zeros((B, 3), np.int32)], 1
        ),
        "token_type_ids": np.zeros((B, L), np.int32),
        "mlm_positions": np.sort(
            np.stack([rng.permutation(L - 3)[:P] for _ in range(B)]), 1
        ).astype(np.int32),
        "mlm_ids": rng.integers(5, V, (B, P)).astype(np.int32),
        "mlm_weights": np.ones((B, P), np.float32),
    }
    teacher = {
        "hidden": rng.standard_normal((B, DT + 1, L, HT)).astype(np.float16),
        "mlm_logits": (3 * rng.standard_normal((B, P, V))).astype(np.float16),
    }
    return distill.KDData(rows, rows, teacher, teacher, DT, HT, V)


@pytest.mark.slow
def test_bf16_kd_step_tracks_float32():
    data = _kd_data(np.random.default_rng(0))
    weights = distill.KDWeights(mlm=1.0, hidden=1.0, logit=0.5, temperature=2.0)
    build = lambda dt: distill.build_student(  # noqa: E731
        STUDENT, data, SPEC, weights, seed=0, dropout=0.0, dtype=dt
    )
    s32, s16 = build(jnp.float32), build(jnp.bfloat16)
    assert s16.model.dtype == jnp.bfloat16 and s16.model.param_dtype == jnp.float32
    jax.tree.map(np.testing.assert_array_equal, s32.params, s16.params)  # one init
    _assert_float32(s16.params, "initial params")
    batch = distill.kd_rows(data.train, data.teacher_train)

    out = s16.model.apply(
        {"params": s16.params["student"]},
        batch["input_ids"],
        batch["attention_mask"],
        mlm_positions=batch["mlm_positions"],
    )
    assert out["last_hidden_state"].dtype == jnp.bfloat16  # computation really is bfloat16
    assert out["mlm_logits"].dtype == jnp.float32  # logits leave the model in float32

    optim = train.OptimConfig(learning_rate=1e-3, weight_decay=0.01, clip_norm=1.0)
    f32, bf16 = _step_both(s32.loss_fn, s16.loss_fn, s32.params, batch, optim)
    for key in ("mlm", "hidden", "logit", "total"):
        assert bf16["metrics"][key].dtype == np.float32, key
    _check_tracking(f32, bf16, s32.params)


# ------------------------------------------------------------------------ fine-tuning step


@pytest.mark.slow
def test_bf16_finetune_step_tracks_float32():
    spec = dataclasses.replace(SPEC, pooler=True)
    arch = Arch(2, 2, 32, 64)
    body = jax.device_get(fresh_params(Bert(arch, spec), seed=1))
    ckpt = hf.Checkpoint(arch, spec, body, {}, "", False)
    m32, p32 = ft.build_classifier(ckpt, "sst2", dropout_rate=0.0, seed=0, dtype=jnp.float32)
    m16, p16 = ft.build_classifier(ckpt, "sst2", dropout_rate=0.0, seed=0, dtype=jnp.bfloat16)
    assert m16.dtype == jnp.bfloat16 and m16.param_dtype == jnp.float32
    jax.tree.map(np.testing.assert_array_equal, p32, p16)
    _assert_float32(p16, "initial params")

    rng = np.random.default_rng(1)
    mask = (np.arange(L)[None, :] < rng.integers(6, L + 1, (B, 1))).astype(np.int32)
    batch = {
        "input_ids": (rng.integers(5, V, (B, L)) * mask).astype(np.int32),
        "attention_mask": mask,
        "token_type_ids": np.zeros((B, L), np.int32),
        "label": rng.integers(0, 2, B).astype(np.int32),
    }
    logits = ft.task_logits(m16, p16, batch)
    assert logits.dtype == jnp.float32

    optim = ft.optim_config(ft.FinetuneConfig(learning_rate=1e-3, warmup_ratio=0.0))
    f32, bf16 = _step_both(
        ft.classification_loss_fn(m32), ft.classification_loss_fn(m16), p32, batch, optim
    )
    assert bf16["metrics"]["accuracy"].dtype == np.float32
    _check_tracking(f32, bf16, p32)


def test_finetune_prepare_threads_dtype(monkeypatch):
    """`prepare` builds the model with the resolved config dtype (data and checkpoint faked)."""
    spec = dataclasses.replace(SPEC, pooler=True)
    arch = Arch(1, 2, 32, 64)
    ckpt = hf.Checkpoint(arch, spec, jax.device_get(fresh_params(Bert(arch, spec))), {}, "", False)
    seen = {}

    def fake_build(checkpoint, task, arch=None, **kw):
        seen.update(kw)
        raise RuntimeError("stop")

    monkeypatch.setattr(ft.hf, "load", lambda path: ckpt)
    monkeypatch.setattr(ft, "load_examples", lambda *a, **k: [])
    monkeypatch.setattr(ft.hf, "load_tokenizer", lambda path: None)
    monkeypatch.setattr(ft, "encode_examples", lambda *a, **k: {})
    monkeypatch.setattr(ft, "build_classifier", fake_build)
    for name, want in (("bfloat16", jnp.bfloat16), ("auto", jnp.float32)):
        with pytest.raises(RuntimeError, match="stop"):
            ft.prepare({"dtype": name, "init": "x", "max_seq_len": 16})
        assert seen["dtype"] == want
