"""A padded vocabulary (`Bert.vocab_multiple`) and the activation sharding constraints.

Padding: outputs, HF export and the MiniLM parity are those of the unpadded model; the extra
rows only make the 'model' mesh axis divide the word-embedding table. Constraints: a KD step
on a data=2 x fsdp=2 x model=2 mesh compiles without the SPMD partitioner replicating a tensor
("Involuntary full rematerialization", read from XLA's stderr in a subprocess).

The mesh tests need 8 devices: `.ci/run` runs them with
XLA_FLAGS=--xla_force_host_platform_device_count=8; in the single-device process they are
skipped with that reason.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from bort_jax import config, hf, sharding
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import (
    VOCAB_MULTIPLE,
    Bert,
    ModelOptions,
    fresh_params,
    init_params,
    merge_pretrained,
    pad_vocab,
    padded_vocab,
    slice_params,
    unpad_vocab,
)

needs_8 = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (.ci/run)",
)

ARCH = Arch(2, 4, 32, 48)
SPEC = Spec(vocab_size=70, max_positions=24, pooler=True)
WARNING = "Involuntary full rematerialization"
WORKER = Path(__file__).resolve().parent / "_mesh_step_worker.py"


def _table(params):
    return params["embeddings"]["word_embeddings"]["embedding"]


def _batch(seed=0, b=2, l=10):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, SPEC.vocab_size, (b, l)).astype(np.int32)
    mask = np.ones((b, l), np.int32)
    mask[0, 6:] = 0
    return ids, mask


def test_padded_vocab_rounds_up():
    assert padded_vocab(30522, 128) == 30592 and padded_vocab(50265, 128) == 50304
    assert padded_vocab(30592, 128) == 30592 and padded_vocab(70, 1) == 70
    with pytest.raises(ValueError, match="vocab_multiple must be >= 1"):
        padded_vocab(70, 0)


@pytest.mark.slow
@jax.default_matmul_precision("highest")
def test_padded_model_has_the_unpadded_outputs():
    plain = Bert(ARCH, SPEC, mlm_head=True, num_labels=3)
    padded = Bert(ARCH, SPEC, mlm_head=True, num_labels=3, vocab_multiple=64)
    p0, p1 = (init_params(m, jax.random.PRNGKey(0)) for m in (plain, padded))
    assert padded.padded_vocab == 128 and _table(p1).shape == (128, 32)
    assert p1["mlm_bias"].shape == (128,)
    # the same first V rows (same draw), zero padding; everything else identical
    np.testing.assert_array_equal(_table(p1)[:70], _table(p0))
    assert not np.any(np.asarray(_table(p1)[70:]))
    np.testing.assert_array_equal(unpad_vocab(p1, 70)["mlm_bias"], p0["mlm_bias"])
    ids, mask = _batch()
    pos = np.array([[1, 2], [0, 3]])
    kw = dict(output_hidden_states=True, mlm_positions=pos)
    a = plain.apply({"params": p0}, ids, mask, **kw)
    b = padded.apply({"params": p1}, ids, mask, **kw)
    c = padded.apply({"params": p0}, ids, mask, **kw)  # unpadded tree: padded on the fly
    assert a["mlm_logits"].shape == b["mlm_logits"].shape == (2, 2, 70)
    for out in (b, c):
        for h0, h1 in zip(a["hidden_states"], out["hidden_states"]):
            np.testing.assert_array_equal(h0, h1)
        np.testing.assert_allclose(out["mlm_logits"], a["mlm_logits"], atol=1e-6)
        np.testing.assert_array_equal(out["logits"], a["logits"])
    # gradients of the padding rows are zero: they never win, never move (but weight decay)
    grad = jax.grad(
        lambda p: padded.apply({"params": p}, ids, mask, mlm_positions=pos)["mlm_logits"].sum()
    )(p1)
    assert not np.any(np.asarray(_table(grad)[70:])) and not np.any(grad["mlm_bias"][70:])
    assert np.any(np.asarray(_table(grad)[:70]))


def test_wrong_vocabulary_rows_are_named():
    padded = Bert(ARCH, SPEC, mlm_head=True, vocab_multiple=64)
    params = init_params(padded, jax.random.PRNGKey(0))
    ids, _ = _batch()
    bad = pad_vocab(unpad_vocab(params, 60), 100)
    with pytest.raises(ValueError, match=r"mlm_bias has shape \(100,\); expected \(70,\) or"):
        padded.apply({"params": bad}, ids)
    bad["mlm_bias"] = params["mlm_bias"]
    with pytest.raises(ValueError, match=r"shape \(100, 32\); expected \(70, 32\) or padded"):
        padded.apply({"params": bad}, ids)


def test_pad_unpad_round_trip_and_only_touch_vocabulary_leaves():
    params = jax.device_get(init_params(Bert(ARCH, SPEC, mlm_head=True), jax.random.PRNGKey(1)))
    padded = pad_vocab(params, 128)
    assert _table(padded).shape == (128, 32) and padded["mlm_bias"].shape == (128,)
    assert padded["layer_0"] is params["layer_0"]  # a shallow copy, leaves shared
    assert _table(params).shape == (70, 32)  # the input is not modified
    back = unpad_vocab(padded, 70)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, params)
    no_head = {k: v for k, v in params.items() if k != "mlm_bias"}
    assert "mlm_bias" not in pad_vocab(no_head, 128)
    with pytest.raises(ValueError, match="has 128 rows, more than 100"):
        pad_vocab(padded, 100)


def test_slice_and_merge_pad_a_checkpoint_for_a_padded_model():
    src = init_params(Bert(ARCH, SPEC, mlm_head=True), jax.random.PRNGKey(0))
    small = Arch(1, 2, 16, 24)
    sliced = slice_params(src, ARCH, small, vocab_rows=128)
    assert _table(sliced).shape == (128, 16) and sliced["mlm_bias"].shape == (128,)
    np.testing.assert_array_equal(_table(sliced)[:70], _table(src)[:, :16])
    assert _table(slice_params(src, ARCH, small)).shape == (70, 16)  # default: rows as given
    model = Bert(small, SPEC, num_labels=2, vocab_multiple=VOCAB_MULTIPLE)
    fresh = fresh_params(model)
    pretrained = slice_params(src, ARCH, small)
    with pytest.raises(ValueError, match=r"pretrained embeddings has shape \(70, 16\)"):
        merge_pretrained(fresh, pretrained)
    merged = merge_pretrained(fresh, pretrained, vocab_size=70)
    assert _table(merged).shape == (128, 16) and "classifier" in merged
    np.testing.assert_array_equal(_table(merged)[:70], _table(pretrained))
    with pytest.raises(ValueError, match=r"pretrained embeddings has shape \(60, 16\)"):
        merge_pretrained(fresh, unpad_vocab(pretrained, 60), vocab_size=70)


def test_padded_params_export_to_the_unpadded_hf_layout(tmp_path):
    model = Bert(ARCH, SPEC, mlm_head=True, vocab_multiple=VOCAB_MULTIPLE)
    params = jax.device_get(init_params(model, jax.random.PRNGKey(0)))
    out = hf.save(tmp_path / "export", params, ARCH, SPEC)
    again = hf.load(out)
    jax.tree_util.tree_map(np.testing.assert_array_equal, again.params, unpad_vocab(params, 70))
    from safetensors.numpy import load_file

    tensors = load_file(str(out / "model.safetensors"))
    assert tensors["embeddings.word_embeddings.weight"].shape == (70, 32)
    assert tensors["cls.predictions.bias"].shape == (70,)


@jax.default_matmul_precision("highest")
def test_minilm_parity_and_round_trip_with_a_padded_vocabulary(minilm, minilm_dir, tmp_path):
    reference = np.load(Path(__file__).resolve().parent / "fixtures" / "minilm_reference.npz")
    model = Bert(minilm.arch, minilm.spec, vocab_multiple=VOCAB_MULTIPLE)
    assert model.padded_vocab == 30592
    params = pad_vocab(minilm.params, model.padded_vocab)
    assert _table(params).shape == (30592, 384)
    out = model.apply(
        {"params": params},
        reference["input_ids"],
        reference["attention_mask"],
        reference["token_type_ids"],
        output_hidden_states=True,
    )
    got = np.stack(out["hidden_states"])
    err = np.abs(got - reference["hidden_states"])
    real = reference["attention_mask"].astype(bool)
    assert err[:, real].max() <= 2e-5 and err[:, ~real].max() <= 3e-4
    # padded in memory, bit-exact HF files again on export
    saved = hf.save(tmp_path / "export", params, minilm.arch, minilm.spec)
    from safetensors.numpy import load_file

    orig = load_file(f"{minilm_dir}/model.safetensors")
    new = load_file(str(saved / "model.safetensors"))
    for k, v in new.items():
        np.testing.assert_array_equal(v, orig[k])


def test_model_options_build_the_model_and_convert_params():
    opts = config.from_config(
        ModelOptions, {"scan_layers": True, "remat": True, "vocab_multiple": 128}
    )
    model = Bert(ARCH, SPEC, mlm_head=True, **opts.kwargs())
    assert model.scan_layers and model.remat and model.padded_vocab == 128
    canonical = jax.device_get(init_params(Bert(ARCH, SPEC, mlm_head=True), jax.random.PRNGKey(0)))
    params = opts.to_model(canonical, ARCH, SPEC)
    assert "layers" in params and _table(params).shape == (128, 32)
    ids, mask = _batch()
    a = Bert(ARCH, SPEC, mlm_head=True).apply({"params": canonical}, ids, mask)
    b = model.apply({"params": params}, ids, mask)
    np.testing.assert_allclose(b["mlm_logits"], a["mlm_logits"], atol=1e-5)
    back = opts.to_canonical(params, ARCH, SPEC)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, canonical)
    assert ModelOptions().kwargs() == dict(scan_layers=False, remat=False, vocab_multiple=1)
    with pytest.raises(config.ConfigError, match="remat=True needs model.scan_layers"):
        config.from_config(ModelOptions, {"remat": True}, "config.model")
    with pytest.raises(config.ConfigError, match="vocab_multiple must be >= 1"):
        config.from_config(ModelOptions, {"vocab_multiple": 0}, "config.model")


def test_constraints_are_a_no_op_without_a_partitioner():
    model = Bert(ARCH, SPEC, mlm_head=True, vocab_multiple=VOCAB_MULTIPLE)
    params = init_params(model, jax.random.PRNGKey(0))
    ids, mask = _batch()
    jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, ids, mask))(params)
    assert "sharding_constraint" not in str(jaxpr)


# ----------------------------------------------------------------------------------- mesh


@needs_8
@pytest.mark.parametrize("vocab", [30522, 50265])
def test_padded_vocab_table_is_sharded_along_model_on_mesh(vocab):
    spec = Spec(vocab_size=vocab, max_positions=16, pooler=False)
    for mesh in (dict(data=2, fsdp=2, model=2), dict(data=1, fsdp=2, model=4)):
        part = sharding.Partitioner.from_config(sharding.MeshConfig(**mesh))
        specs = {}
        for multiple in (1, VOCAB_MULTIPLE):
            model = Bert(ARCH, spec, mlm_head=True, vocab_multiple=multiple)
            abstract = jax.eval_shape(lambda m=model: init_params(m, jax.random.PRNGKey(0)))
            s = part.tree_shardings(abstract)
            specs[multiple] = (_table(s).spec, s["mlm_bias"].spec)
        assert specs[VOCAB_MULTIPLE] == (
            jax.sharding.PartitionSpec("model", "fsdp"),
            jax.sharding.PartitionSpec("model"),
        ), (vocab, mesh)
        if vocab % mesh["model"]:  # what the padding fixes: a replicated table
            assert specs[1][0] == jax.sharding.PartitionSpec(None, "fsdp"), (vocab, mesh)


@needs_8
def test_sharded_padded_model_equals_single_device_on_mesh():
    model = Bert(ARCH, SPEC, mlm_head=True, vocab_multiple=VOCAB_MULTIPLE)
    params = init_params(model, jax.random.PRNGKey(0))
    ids, mask = _batch(b=8)
    pos = np.tile(np.array([[1, 2]]), (8, 1))

    def run(p, i, m):
        out = model.apply({"params": p}, i, m, mlm_positions=pos)
        return out["last_hidden_state"], out["mlm_logits"]

    with jax.default_matmul_precision("highest"):
        ref = jax.jit(run)(params, ids, mask)
        part = sharding.Partitioner.from_config(sharding.MeshConfig(data=2, fsdp=2, model=2))
        with part.activate():
            placed = jax.device_put(params, part.tree_shardings(params))
            batch = part.put_batch({"ids": ids, "mask": mask})
            got = jax.jit(run)(placed, batch["ids"], batch["mask"])
    assert got[1].shape == (8, 2, 70)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5)


def _worker(mode: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(
        [sys.executable, str(WORKER), mode], env=env, capture_output=True, text=True, timeout=1500
    )


@needs_8
def test_kd_step_compiles_without_involuntary_rematerialization_on_mesh():
    # The check can fail: the lookup the model did before its constraints warns.
    control = _worker("control")
    assert control.returncode == 0, control.stderr[-3000:]
    assert WARNING in control.stderr, control.stderr[-3000:]
    run = _worker("step")
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if WARNING in line]
    assert not lines, "\n".join(line[:400] for line in lines[:5])
    tables = json.loads(run.stdout.strip().splitlines()[-1])
    for layout in ("False", "True"):  # unrolled, scanned + remat
        assert tables[layout] == {"shape": [30592, 32], "spec": ["model", "fsdp"]}
