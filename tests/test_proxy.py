"""Proxy training and the teacher-output cache on the embedded corpus with the real MiniLM."""

import dataclasses
import json

import numpy as np
import pytest

from bort_jax import distill, mlm_head, proxy, teacher_cache, train
from bort_jax.arch import Arch
from bort_jax.models.bert import Bert, slice_params


@pytest.fixture(scope="module")
def teacher(minilm_dir):
    return distill.Teacher.load(minilm_dir)


@pytest.fixture(scope="module")
def data(teacher, minilm_dir, tmp_path_factory):
    return distill.prepare(
        teacher,
        minilm_dir,
        "embedded",
        32,
        max_sequences=160,
        heldout_fraction=0.2,
        seed=0,
        want_logits=False,
        cache_dir=str(tmp_path_factory.mktemp("cache")),
    )


@pytest.mark.slow
def test_big_student_beats_tiny_student(data, teacher):
    cfg = proxy.ProxyConfig(
        num_steps=24, batch_size=8, optim=train.OptimConfig(learning_rate=2e-3, warmup_steps=4)
    )
    big = proxy.proxy_error(Arch(2, 4, 128, 512), data, teacher.checkpoint.spec, cfg)
    tiny = proxy.proxy_error(Arch(1, 1, 32, 32), data, teacher.checkpoint.spec, cfg)
    assert big.error < tiny.error, (big.metrics, tiny.metrics)
    assert big.train_seconds > 0 and big.steps == 24


@pytest.mark.slow
def test_proxy_is_deterministic(data, teacher):
    cfg = proxy.ProxyConfig(num_steps=6, batch_size=8, seed=3)
    a = proxy.proxy_error(Arch(1, 2, 32, 64), data, teacher.checkpoint.spec, cfg)
    b = proxy.proxy_error(Arch(1, 2, 32, 64), data, teacher.checkpoint.spec, cfg)
    assert a.error == b.error and a.metrics == b.metrics


@pytest.mark.slow
def test_sliced_full_student_reproduces_teacher_states(data, teacher):
    """Sliced to the teacher's own shape, the student's hidden-state KD loss is ~0."""
    arch = teacher.checkpoint.arch
    cfg = proxy.ProxyConfig(
        num_steps=1, batch_size=8, init_method="slice", optim=train.OptimConfig(learning_rate=1e-9)
    )
    r = proxy.proxy_error(arch, data, teacher.checkpoint.spec, cfg, source=teacher.checkpoint)
    assert r.metrics["heldout_hidden"] < 1e-3  # float16 cache rounding only


@pytest.mark.slow
def test_hidden_nmse_is_normalised_output_error(data, teacher):
    """error='hidden_nmse' = output-layer MSE / teacher variance: ~0 for the teacher's own shape
    (float16 cache rounding only), well inside (0, 1] for a small sliced student."""
    spec, src = teacher.checkpoint.spec, teacher.checkpoint
    cfg = proxy.ProxyConfig(
        num_steps=1,
        batch_size=8,
        init_method="slice",
        error="hidden_nmse",
        optim=train.OptimConfig(learning_rate=1e-9),
    )
    full = proxy.proxy_error(src.arch, data, spec, cfg, source=src)
    var = distill.teacher_output_variance(data)
    assert full.error == full.metrics["heldout_hidden_nmse"] < 1e-4
    # proj_init='slice': W = [I | 0], so (lr ~ 0) the error is that of the sliced model's
    # output states zero-padded to the teacher's width — recomputed here independently
    arch = Arch(1, 4, 128, 384)
    cfg = dataclasses.replace(cfg, proj_init="slice")
    small = proxy.proxy_error(arch, data, spec, cfg, source=src)
    assert small.error == pytest.approx(small.metrics["heldout_hidden_last"] / var)
    model = Bert(arch, distill.student_spec(spec))
    sliced = slice_params(src.params, src.arch, arch)
    sliced.pop("pooler", None)
    rows = data.heldout
    h = model.apply({"params": sliced}, rows["input_ids"], rows["attention_mask"])
    h = np.asarray(h["last_hidden_state"])
    t = np.asarray(
        data.teacher_heldout["hidden"][:, data.hidden_index[data.teacher_depth]], np.float64
    )
    t[..., :128] -= h
    m = rows["attention_mask"] > 0
    # held-out metric = mean over the full batches of 8 rows of each batch's masked MSE
    # (`distill.HeldoutEvaluator`, `losses.hidden_kd`); lr 1e-9 leaves the slice as it was
    n, size = len(m), min(8, len(m))
    per_batch = [
        np.mean(np.square(t[s : s + size][m[s : s + size]])) for s in range(0, n - size + 1, size)
    ]
    ref = np.mean(per_batch) / var
    assert small.error == pytest.approx(ref, rel=1e-4)
    assert small.error > 0.5  # one sliced layer is far from the teacher's sixth (measured 2.24)


@pytest.mark.slow
def test_fitted_head_init_measures_the_encoder(data, teacher, tmp_path):
    """head_init='fitted': the sliced student starts from the head fitted on the source, so its
    held-out MLM CE is far below a fresh head's after the same (tiny) run; the head is fitted
    once and stored under cache_dir."""
    spec, src = teacher.checkpoint.spec, teacher.checkpoint
    kw = dict(num_steps=2, batch_size=8, init_method="slice", error="mlm")
    head = mlm_head.HeadConfig(num_steps=20, batch_size=64, learning_rate=3e-3)
    fitted = proxy.ProxyConfig(head_init="fitted", head=head, **kw)
    fresh = proxy.ProxyConfig(head_init="fresh", **kw)
    arch = Arch(2, 8, 256, 384)
    a = proxy.proxy_error(arch, data, spec, fitted, source=src, cache_dir=str(tmp_path))
    b = proxy.proxy_error(arch, data, spec, fresh, source=src)
    assert a.error == a.metrics["heldout_mlm"] < b.error - 1.0, (a.metrics, b.metrics)
    assert len(list(tmp_path.glob("mlm_head_*.npz"))) == 1


def test_cache_hit_and_corruption_rebuild(teacher, minilm_dir, tmp_path):
    kw = dict(
        max_sequences=40, heldout_fraction=0.25, seed=0, want_logits=False, cache_dir=str(tmp_path)
    )
    first = distill.prepare(teacher, minilm_dir, "embedded", 16, **kw)
    second = distill.prepare(teacher, minilm_dir, "embedded", 16, **kw)
    assert not first.cache_hit and second.cache_hit
    np.testing.assert_array_equal(first.teacher_train["hidden"], second.teacher_train["hidden"])
    assert second.teacher_train["hidden"].dtype == np.float16
    assert isinstance(second.teacher_train["hidden"], np.memmap)
    ref = np.array(first.teacher_train["hidden"])  # a copy: `first` maps the file itself
    # corrupt one array file: detected and rebuilt
    entry = next(p for p in tmp_path.iterdir() if not p.name.startswith("."))
    f = entry / "train_hidden.npy"
    raw = bytearray(f.read_bytes())
    raw[-10] ^= 0xFF
    f.write_bytes(bytes(raw))
    assert teacher_cache.load(entry) is None
    third = distill.prepare(teacher, minilm_dir, "embedded", 16, **kw)
    assert not third.cache_hit
    np.testing.assert_array_equal(third.teacher_train["hidden"], ref)
    # different data → different key
    fourth = distill.prepare(teacher, minilm_dir, "embedded", 16, **{**kw, "seed": 1})
    assert not fourth.cache_hit
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2
    assert json.loads((entry / "meta.json").read_text())["info"]["seq_len"] == 16


def test_named_errors(teacher, minilm_dir):
    with pytest.raises(ValueError, match="512"):
        distill.prepare(
            teacher,
            minilm_dir,
            "embedded",
            1024,
            max_sequences=8,
            heldout_fraction=0.2,
            seed=0,
            want_logits=False,
            cache_dir=None,
        )
    with pytest.raises(ValueError, match="MLM head"):
        distill.prepare(
            teacher,
            minilm_dir,
            "embedded",
            32,
            max_sequences=8,
            heldout_fraction=0.2,
            seed=0,
            want_logits=True,
            cache_dir=None,
        )
    with pytest.raises(ValueError, match="empty"):
        distill.prepare(
            teacher,
            minilm_dir,
            "embedded",
            32,
            max_sequences=8,
            heldout_fraction=0.2,
            seed=0,
            want_logits=False,
            cache_dir=None,
            docs=["", "  "],
        )
    with pytest.raises(ValueError, match="init_method"):
        proxy.ProxyConfig(init_method="magic")
    with pytest.raises(ValueError, match="proxy.error"):
        proxy.ProxyConfig(error="accuracy")
    with pytest.raises(ValueError, match="head_init"):
        proxy.ProxyConfig(head_init="fitted", init_method="random")
