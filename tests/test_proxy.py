"""Proxy training and the teacher-output cache on the embedded corpus with the real MiniLM."""

import json

import numpy as np
import pytest

from bort_jax import distill, proxy, teacher_cache, train
from bort_jax.arch import Arch


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


def test_big_student_beats_tiny_student(data, teacher):
    cfg = proxy.ProxyConfig(
        steps=24, batch_size=8, optim=train.OptimConfig(learning_rate=2e-3, warmup_steps=4)
    )
    big = proxy.proxy_error(Arch(6, 12, 384, 1536), data, teacher.checkpoint.spec, cfg)
    tiny = proxy.proxy_error(Arch(1, 1, 32, 32), data, teacher.checkpoint.spec, cfg)
    assert big.error < tiny.error, (big.metrics, tiny.metrics)
    assert big.train_seconds > 0 and big.steps == 24


def test_proxy_is_deterministic(data, teacher):
    cfg = proxy.ProxyConfig(steps=6, batch_size=8, seed=3)
    a = proxy.proxy_error(Arch(1, 2, 32, 64), data, teacher.checkpoint.spec, cfg)
    b = proxy.proxy_error(Arch(1, 2, 32, 64), data, teacher.checkpoint.spec, cfg)
    assert a.error == b.error and a.metrics == b.metrics


def test_sliced_full_student_reproduces_teacher_states(data, teacher):
    """Sliced to the teacher's own shape, the student's hidden-state KD loss is ~0."""
    arch = teacher.checkpoint.arch
    cfg = proxy.ProxyConfig(
        steps=1, batch_size=8, init="slice", optim=train.OptimConfig(learning_rate=1e-9)
    )
    r = proxy.proxy_error(arch, data, teacher.checkpoint.spec, cfg, source=teacher.checkpoint)
    assert r.metrics["heldout_hidden"] < 1e-3  # float16 cache rounding only


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
    with pytest.raises(ValueError, match="init"):
        proxy.ProxyConfig(init="magic")
