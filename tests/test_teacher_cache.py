"""The teacher-output cache key covers the whole teacher checkpoint.

A same-size teacher whose weights differ only after the first MiB must get a new key (the old
key hashed size + first MiB); an unchanged teacher must reuse both the memoised full digest and
the cached outputs.
"""

import dataclasses
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


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def mlm_teacher(tmp_path_factory, minilm_dir):
    """A random 3-layer teacher with an MLM head, saved in HF format."""
    arch, spec = Arch(3, 4, 32, 64), Spec(vocab_size=30522, max_positions=64, pooler=False)
    params = jax.device_get(init_params(Bert(arch, spec, mlm_head=True), jax.random.PRNGKey(1)))
    path = hf.save(
        tmp_path_factory.mktemp("t") / "mlm", params, arch, spec, tokenizer_dir=minilm_dir
    )
    return str(path)


@pytest.mark.parametrize(
    "depths, kd",
    [
        ((1,), distill.KDWeights(hidden=1.0, logit=0.5, top_k=8)),
        (None, distill.KDWeights(hidden=1.0, logit=0.5)),
        ((2,), distill.KDWeights(hidden=0.0, logit=0.5, top_k=16, layer_map="last")),
    ],
)
@pytest.mark.slow
def test_streamed_cache_equals_in_ram_outputs(tmp_path, mlm_teacher, depths, kd):
    """`prepare` with a cache streams chunks into pre-allocated .npy files; the entry equals the
    in-RAM computation (no cache), holds only the selected layers / top-k arrays, is keyed by
    them, and stays sha-verified."""
    teacher = distill.Teacher.load(mlm_teacher)
    kw = dict(max_sequences=40, heldout_fraction=0.25, seed=0, want_logits=True)
    kw.update(student_depths=depths, kd=kd)
    cached = distill.prepare(teacher, mlm_teacher, "embedded", 16, cache_dir=str(tmp_path), **kw)
    ram = distill.prepare(teacher, mlm_teacher, "embedded", 16, cache_dir=None, **kw)
    again = distill.prepare(teacher, mlm_teacher, "embedded", 16, cache_dir=str(tmp_path), **kw)
    assert not cached.cache_hit and again.cache_hit
    expected_layers = {(1,): (0, 3), None: (0, 1, 2, 3), (2,): ()}[depths]
    assert cached.hidden_layers == ram.hidden_layers == expected_layers
    names = {"topk_values", "topk_ids", "rest_logmass"} if kd.top_k else {"mlm_logits"}
    if expected_layers:
        names.add("hidden")
    for split in ("teacher_train", "teacher_heldout"):
        a, b = getattr(cached, split), getattr(ram, split)
        assert set(a) == set(b) == names
        for k in names:
            assert isinstance(a[k], np.memmap) and not isinstance(b[k], np.memmap)
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
            np.testing.assert_array_equal(np.asarray(a[k]), b[k], err_msg=k)
    n, length = cached.train["input_ids"].shape
    if expected_layers:
        assert cached.teacher_train["hidden"].shape == (n, len(expected_layers), length, 32)
    if kd.top_k:
        assert cached.teacher_train["topk_ids"].shape[-1] == kd.top_k
        assert cached.teacher_train["topk_ids"].dtype == np.int32
        rest = np.asarray(cached.teacher_train["rest_logmass"])
        assert np.all(rest < 0) and np.all(np.isfinite(rest))
    else:
        assert cached.teacher_train["mlm_logits"].shape[-1] == 30522
    # the stored hidden states are the teacher's states at those indices
    if depths == (1,):
        full = distill.teacher_outputs(teacher, cached.train, False)["hidden"]
        np.testing.assert_array_equal(np.asarray(cached.teacher_train["hidden"]), full[:, [0, 3]])
    # one entry, intact; another selection is another key
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert teacher_cache.load(entry) is not None
    other = dataclasses.replace(kd, top_k=kd.top_k + 4 if kd.top_k else 8, hidden=1.0)
    kw["kd"], kw["student_depths"] = other, (3,)
    distill.prepare(teacher, mlm_teacher, "embedded", 16, cache_dir=str(tmp_path), **kw)
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


def test_streamed_entry_corruption_is_detected_and_rebuilt(tmp_path):
    specs = {"a": ((5, 3), np.float16), "b": ((5,), np.int32), "e": ((0, 2), np.float32)}
    calls = []

    def fill(out):
        calls.append(sorted(out))
        assert isinstance(out["a"], np.memmap)
        for start in range(0, 5, 2):  # chunk by chunk
            out["a"][start : start + 2] = np.arange(start, min(start + 2, 5))[:, None]
            out["b"][start : start + 2] = np.arange(start, min(start + 2, 5))

    arrays, hit = teacher_cache.get_or_build_streamed(tmp_path, "k", specs, fill)
    assert not hit and calls == [["a", "b", "e"]]
    np.testing.assert_array_equal(arrays["a"][:, 0], np.arange(5, dtype=np.float16))
    assert arrays["b"].dtype == np.int32 and arrays["e"].shape == (0, 2)
    meta = json.loads((tmp_path / "k" / teacher_cache.META).read_text())
    assert meta["arrays"]["a"]["shape"] == [5, 3] and meta["arrays"]["b"]["dtype"] == "int32"
    assert teacher_cache.get_or_build_streamed(tmp_path, "k", specs, fill)[1]
    f = tmp_path / "k" / "b.npy"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    assert teacher_cache.load(tmp_path / "k") is None
    arrays, hit = teacher_cache.get_or_build_streamed(tmp_path, "k", specs, fill)
    assert not hit and len(calls) == 2
    np.testing.assert_array_equal(arrays["b"], np.arange(5))
    # a failing fill leaves no entry and no staging directory behind
    with pytest.raises(RuntimeError):
        teacher_cache.get_or_build_streamed(
            tmp_path, "bad", specs, lambda out: (_ for _ in ()).throw(RuntimeError("x"))
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]


def _manifest_entry(tmp_path, monkeypatch, n=4096):
    """An entry of one float32 array [n] in 1-KiB chunks (n = 4096: 17 chunks with the
    header), and a counter of the chunks each load hashes."""
    monkeypatch.setattr(teacher_cache, "CHUNK_BYTES", 1024)
    arrays, _ = teacher_cache.get_or_build(
        tmp_path, "m", lambda: {"a": np.arange(n, dtype=np.float32)}, dtype=np.float32
    )
    entry = tmp_path / "m"
    hashed = []
    real = teacher_cache._chunks_intact

    def counting(path, info, mode):
        hashed.append(mode)
        return real(path, info, mode)

    monkeypatch.setattr(teacher_cache, "_chunks_intact", counting)
    return entry, hashed


def _flip(f, offset):
    raw = bytearray(f.read_bytes())
    raw[offset] ^= 0xFF
    f.write_bytes(bytes(raw))


def test_manifest_sample_verify_reads_a_few_chunks(tmp_path, monkeypatch):
    """The manifest holds sizes and per-chunk digests; "sample" hashes first, last and
    SAMPLE_CHUNKS random chunks, "sizes" none, "full" all; all catch what they read."""
    entry, _ = _manifest_entry(tmp_path, monkeypatch)
    f = entry / "a.npy"
    info = json.loads((entry / teacher_cache.META).read_text())["arrays"]["a"]
    size = f.stat().st_size
    assert info["size"] == size and info["chunk_bytes"] == 1024
    assert len(info["chunks"]) == -(-size // 1024) == 17
    assert info["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    reads = []
    real_sha = teacher_cache.hashlib.sha256

    class Counting:
        def __init__(self, data=b""):
            reads.append(len(data))
            self._h = real_sha(data)

        def hexdigest(self):
            return self._h.hexdigest()

    monkeypatch.setattr(teacher_cache.hashlib, "sha256", Counting)
    assert teacher_cache.load(entry) is not None  # default: sample
    assert len(reads) == 2 + teacher_cache.SAMPLE_CHUNKS and sum(reads) <= 4 * 1024
    reads.clear()
    assert teacher_cache.load(entry, "sizes") is not None and not reads
    assert teacher_cache.load(entry, "full") is not None and len(reads) == 17
    monkeypatch.setattr(teacher_cache.hashlib, "sha256", real_sha)
    # a flipped byte in a middle chunk: only "full" is sure to see it
    _flip(f, 8 * 1024 + 5)
    assert teacher_cache.load(entry, "sizes") is not None
    assert teacher_cache.load(entry, "full") is None
    monkeypatch.setenv(teacher_cache.VERIFY_ENV, "full")
    assert teacher_cache.load(entry) is None  # the run's default
    monkeypatch.delenv(teacher_cache.VERIFY_ENV)
    seen = sum(teacher_cache.load(entry) is None for _ in range(60))  # 2 of 15 per load
    assert 0 < seen < 60
    _flip(f, 8 * 1024 + 5)
    # the last chunk (a torn write) and the header are always read
    _flip(f, size - 1)
    assert teacher_cache.load(entry) is None
    _flip(f, size - 1)
    _flip(f, 20)
    assert teacher_cache.load(entry) is None
    _flip(f, 20)
    assert teacher_cache.load(entry) is not None
    # a truncated or extended file fails on its size alone
    raw = f.read_bytes()
    f.write_bytes(raw + b"\0")
    assert teacher_cache.load(entry, "sizes") is None
    f.write_bytes(raw)
    with pytest.raises(ValueError, match="verify"):
        teacher_cache.load(entry, "some")


def test_entry_without_manifest_is_verified_in_full(tmp_path, monkeypatch):
    entry, _ = _manifest_entry(tmp_path, monkeypatch)
    meta_path = entry / teacher_cache.META
    meta = json.loads(meta_path.read_text())
    for info in meta["arrays"].values():  # the layout written before the manifest
        for k in ("size", "chunk_bytes", "chunks"):
            info.pop(k)
    meta_path.write_text(json.dumps(meta))
    assert teacher_cache.load(entry, "sizes") is not None
    _flip(entry / "a.npy", 8 * 1024 + 5)
    assert teacher_cache.load(entry, "sizes") is None
