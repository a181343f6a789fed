"""The teacher-output cache key covers the whole teacher checkpoint (issue 12, item 5).

A same-size teacher whose weights differ only after the first MiB must get a new key (the old
key hashed size + first MiB); an unchanged teacher must reuse both the memoised full digest and
the cached outputs.
"""

import hashlib
import json
import os

import jax
import numpy as np
import pytest

from bort_jax import distill, hf, teacher_cache
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params

MIB = 1 << 20


def _fake_checkpoint(path, size=3 * MIB, seed=0):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    weights = path / "model.safetensors"
    weights.write_bytes(np.random.default_rng(seed).bytes(size))
    return weights


def _rewrite(f, offset, stamp_ns):
    """Flip one byte at `offset` (same size) and give the file mtime `stamp_ns`."""
    raw = bytearray(f.read_bytes())
    raw[offset] ^= 0xFF
    f.write_bytes(bytes(raw))
    os.utime(f, ns=(stamp_ns, stamp_ns))


@pytest.fixture
def hash_calls(monkeypatch):
    """Counts full-file hashes (the expensive part the memo saves)."""
    calls = []
    real = teacher_cache._file_sha

    def counting(path):
        calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(teacher_cache, "_file_sha", counting)
    return calls


def test_late_byte_change_of_same_size_gives_new_key(tmp_path, hash_calls):
    weights = _fake_checkpoint(tmp_path / "ckpt")
    first = teacher_cache.digest_checkpoint(tmp_path / "ckpt")
    stamp = weights.stat().st_mtime_ns
    head = weights.read_bytes()[:MIB]
    # past the first MiB and outside the memo's sampled ends: only a full digest sees it
    _rewrite(weights, 2 * MIB - 7, stamp + 10**9)
    assert weights.stat().st_size == 3 * MIB and weights.read_bytes()[:MIB] == head
    second = teacher_cache.digest_checkpoint(tmp_path / "ckpt")
    assert second != first
    # the digest is the full content's: it matches hashlib over the whole file
    memo = json.loads((tmp_path / "ckpt" / teacher_cache.DIGEST_MEMO).read_text())
    assert memo["model.safetensors"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    # the very last byte, with the old mtime restored: the sampled tail still catches it
    _rewrite(weights, 3 * MIB - 1, stamp + 10**9)
    third = teacher_cache.digest_checkpoint(tmp_path / "ckpt")
    assert third not in (first, second)


def test_unchanged_checkpoint_reuses_memoised_digest(tmp_path, hash_calls):
    _fake_checkpoint(tmp_path / "ckpt")
    first = teacher_cache.digest_checkpoint(tmp_path / "ckpt")
    assert len(hash_calls) == 2  # config.json and the weights, hashed in full once
    again = teacher_cache.digest_checkpoint(tmp_path / "ckpt")
    assert again == first and len(hash_calls) == 2  # nothing re-hashed
    # the memo is what answered: a forged digest with a matching stamp is believed
    memo_path = tmp_path / "ckpt" / teacher_cache.DIGEST_MEMO
    memo = json.loads(memo_path.read_text())
    memo["model.safetensors"]["sha256"] = "0" * 64
    memo_path.write_text(json.dumps(memo))
    assert teacher_cache.digest_checkpoint(tmp_path / "ckpt") != first
    # a corrupt memo is ignored and rewritten
    memo_path.write_text("{not json")
    assert teacher_cache.digest_checkpoint(tmp_path / "ckpt") == first
    assert len(hash_calls) == 4


def test_read_only_directory_still_gives_full_digest(tmp_path, monkeypatch, hash_calls):
    weights = _fake_checkpoint(tmp_path / "ckpt")

    def refuse(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(teacher_cache, "atomic_write_json", refuse)
    first = teacher_cache.digest_checkpoint(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / teacher_cache.DIGEST_MEMO).exists()
    _rewrite(weights, 2 * MIB, weights.stat().st_mtime_ns + 10**9)
    assert teacher_cache.digest_checkpoint(tmp_path / "ckpt") != first
    assert len(hash_calls) == 4  # no memo: hashed in full every time


def test_changed_teacher_rebuilds_cached_outputs(tmp_path, minilm_dir):
    """End to end through `distill.prepare`: same teacher → cache hit; a teacher of the same
    size whose weights differ only late in the file → cache miss and new outputs."""
    arch, spec = Arch(2, 4, 64, 128), Spec(vocab_size=30522, max_positions=64, pooler=False)
    params = jax.device_get(init_params(Bert(arch, spec), jax.random.PRNGKey(0)))
    path = hf.save(tmp_path / "teacher", params, arch, spec, tokenizer_dir=minilm_dir)
    weights = path / "model.safetensors"
    kw = dict(
        max_sequences=24,
        heldout_fraction=0.25,
        seed=0,
        want_logits=False,
        cache_dir=str(tmp_path / "cache"),
    )

    def prepare():
        return distill.prepare(distill.Teacher.load(str(path)), str(path), "embedded", 16, **kw)

    first, second = prepare(), prepare()
    assert not first.cache_hit and second.cache_hit
    size, head = weights.stat().st_size, weights.read_bytes()[:MIB]
    assert size > 2 * MIB
    # a "retrained" teacher: the last layer's output LayerNorm shifted, same shapes, stored
    # after the embeddings (beyond the first MiB)
    changed = jax.tree_util.tree_map(np.asarray, params)
    changed["layer_1"]["ffn_norm"]["bias"] = changed["layer_1"]["ffn_norm"]["bias"] + 0.5
    hf.save(path, changed, arch, spec, tokenizer_dir=minilm_dir)
    assert weights.stat().st_size == size and weights.read_bytes()[:MIB] == head
    third = prepare()
    assert not third.cache_hit
    assert not np.array_equal(
        np.asarray(third.teacher_train["hidden"][:, -1]),
        np.asarray(second.teacher_train["hidden"][:, -1]),
    )
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 2
