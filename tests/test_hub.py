"""hub.resolve: `hf:` ids through a Hugging Face cache laid out on disk (no network)."""

import hashlib
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from bort_jax import cli, hf, hub

REPO = "sentence-transformers/all-MiniLM-L6-v2"
MAIN = "a" * 40
TAGGED = "b" * 40
SNAPSHOT_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")


def _add_snapshot(repo_dir: Path, commit: str, source: Path, names=SNAPSHOT_FILES) -> Path:
    """snapshots/<commit>/<name> → ../../blobs/<sha>, as huggingface_hub lays them out (the
    blobs link to the installed files instead of holding copies)."""
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    for name in names:
        blob = repo_dir / "blobs" / hashlib.sha256(f"{commit}/{name}".encode()).hexdigest()
        if not blob.exists():
            blob.symlink_to(source / name)
        (snap / name).symlink_to(os.path.relpath(blob, snap))
    return snap


def _add_ref(repo_dir: Path, ref: str, commit: str) -> None:
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / ref).write_text(commit)  # huggingface_hub writes no newline


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1, also for a huggingface_hub already imported."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cache(tmp_path, minilm_dir, offline) -> Path:
    """A cache holding REPO at main (MAIN) and at tag v1 (TAGGED)."""
    root = tmp_path / "hf_cache"
    repo_dir = root / ("models--" + REPO.replace("/", "--"))
    _add_snapshot(repo_dir, MAIN, Path(minilm_dir))
    _add_snapshot(repo_dir, TAGGED, Path(minilm_dir))
    _add_ref(repo_dir, "main", MAIN)
    _add_ref(repo_dir, "v1", TAGGED)
    return root


def _snapshot(cache: Path, commit: str) -> str:
    path = cache / ("models--" + REPO.replace("/", "--")) / "snapshots" / commit
    return os.path.realpath(path)


def test_resolve_finds_cached_snapshot(cache):
    got = hub.resolve(f"hf:{REPO}", cache_dir=str(cache))
    assert os.path.realpath(got) == _snapshot(cache, MAIN)
    assert (Path(got) / "config.json").is_file()


@pytest.mark.parametrize("var", ["HF_HUB_CACHE", "HF_HOME"])
def test_resolve_honours_cache_env(cache, monkeypatch, var):
    monkeypatch.setenv(var, str(cache if var == "HF_HUB_CACHE" else cache.parent))
    if var == "HF_HOME":  # $HF_HOME/hub is the cache
        (cache.parent / "hub").symlink_to(cache)
    assert os.path.realpath(hub.resolve(f"hf:{REPO}")) == _snapshot(cache, MAIN)


def test_load_by_id_equals_load_by_directory(cache, minilm, minilm_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    ckpt = hf.load(f"hf:{REPO}")
    assert ckpt.arch == minilm.arch and ckpt.spec == minilm.spec
    assert os.path.realpath(ckpt.path) == _snapshot(cache, MAIN)
    jax.tree_util.tree_map(np.testing.assert_array_equal, ckpt.params, minilm.params)
    text = "checkpoints by name"
    by_id = hf.load_tokenizer(f"hf:{REPO}").encode(text).ids
    assert by_id == hf.load_tokenizer(minilm_dir).encode(text).ids


def test_save_copies_tokenizer_from_id(cache, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    arch = hf.Arch(1, 2, 8, 16)
    spec = hf.Spec(vocab_size=30522, max_positions=16)
    tensors = {"embeddings.word_embeddings.weight": np.zeros((30522, 8), np.float32)}
    params = hf.tensors_to_params(tensors, arch, spec)
    out = hf.save(tmp_path / "out", params, arch, spec, tokenizer_dir=f"hf:{REPO}")
    assert (out / "vocab.txt").read_bytes() == (
        Path(_snapshot(cache, MAIN)) / "vocab.txt"
    ).read_bytes()


@pytest.mark.parametrize("rev", ["v1", TAGGED])
def test_revision(cache, rev):
    got = hub.resolve(f"hf:{REPO}@{rev}", cache_dir=cache)
    assert os.path.realpath(got) == _snapshot(cache, TAGGED)
    assert hub.parse(f"hf:{REPO}@{rev}") == (REPO, rev)
    assert hub.parse("hf:bert-large-uncased") == ("bert-large-uncased", None)


def test_missing_id_offline_is_one_line_user_error(cache):
    for hub_id in ("hf:nobody/missing", f"hf:{REPO}@v2"):
        with pytest.raises(hub.HubError) as err:
            hub.resolve(hub_id, cache_dir=cache)
        message = str(err.value)
        assert hub_id in message and "\n" not in message and "HF_HUB_OFFLINE" in message
        assert isinstance(err.value, cli.USER_ERRORS) and isinstance(err.value, FileNotFoundError)
    with pytest.raises(hub.HubError, match="hf:nobody/missing"):
        hf.load("hf:nobody/missing")


def test_no_download_when_not_allowed(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(hub.HubError, match="hf:org/model.*downloads are off"):
        hub.resolve("hf:org/model", cache_dir=tmp_path, allow_download=False)


def test_partial_snapshot_offline(cache, minilm_dir, monkeypatch):
    """A cached snapshot without weights (a tokenizer-only repository) is still returned."""
    repo_dir = cache / "models--org--tok"
    _add_snapshot(repo_dir, MAIN, Path(minilm_dir), names=("vocab.txt",))
    _add_ref(repo_dir, "main", MAIN)
    got = hub.resolve("hf:org/tok", cache_dir=cache)
    assert os.listdir(got) == ["vocab.txt"]
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert hf.load_tokenizer("hf:org/tok").token_to_id("[CLS]") is not None
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        hf.load("hf:org/tok")


def test_download_fetches_only_loader_files(tmp_path, monkeypatch):
    """Online: one download of exactly the files hf reads (never *.bin / *.h5 / *.msgpack)."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    calls = []

    def fake(repo_id, **kw):
        calls.append((repo_id, kw))
        if kw.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        return str(tmp_path / "downloaded")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert hub.resolve("hf:roberta-large@main", cache_dir=tmp_path) == str(tmp_path / "downloaded")
    assert [c[1].get("local_files_only", False) for c in calls] == [True, False]
    repo_id, kw = calls[-1]
    assert repo_id == "roberta-large" and kw["revision"] == "main"
    assert kw["cache_dir"] == str(tmp_path)
    patterns = kw["allow_patterns"]
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= set(patterns)
    assert not any(p.endswith((".bin", ".h5", ".msgpack", ".onnx")) for p in patterns)

    def failing(repo_id, **kw):
        raise OSError("Repository Not Found for url:\nhttps://huggingface.co/api/models/x")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    with pytest.raises(hub.HubError) as err:
        hub.resolve("hf:org/x", cache_dir=tmp_path)
    assert str(err.value).startswith("hf:org/x: ") and "\n" not in str(err.value)


def test_paths_pass_through(tmp_path):
    assert hub.resolve("") == ""
    assert hub.resolve("gs://bucket/x") == "gs://bucket/x"
    assert hub.resolve("hf_models/bert") == "hf_models/bert"  # a relative path, not an id
    assert hub.resolve(str(tmp_path)) == str(tmp_path)
    assert hub.resolve(tmp_path) == str(tmp_path)
    assert not hub.is_hub_id("gs://bucket/x") and hub.is_hub_id("hf:roberta-large")


@pytest.mark.parametrize("bad", ["hf:", "hf:a/b/c", "hf:org/name@", "hf:../x", "hf:a b"])
def test_malformed_id(bad):
    with pytest.raises(ValueError, match="not a Hugging Face hub id"):
        hub.resolve(bad)


def test_cached_config_only_downloads_the_rest_once(tmp_path, monkeypatch, minilm_dir):
    """A snapshot holding just config.json (fetched for a plan) serves CONFIG_ONLY with no
    network; a full resolve downloads the rest into it."""
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    repo_dir = tmp_path / "models--org--model"
    snap = _add_snapshot(repo_dir, MAIN, Path(minilm_dir), names=("config.json",))
    _add_ref(repo_dir, "main", MAIN)
    real = huggingface_hub.snapshot_download
    online = []

    def fake(repo_id, **kw):
        if kw.get("local_files_only"):
            return real(repo_id, **kw)
        online.append(kw["allow_patterns"])
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    got = hub.resolve("hf:org/model", cache_dir=tmp_path, files=hub.CONFIG_ONLY)
    assert os.path.realpath(got) == os.path.realpath(snap) and online == []
    hub.resolve("hf:org/model", cache_dir=tmp_path)
    assert online == [list(hub.loader_files())]


def test_every_config_family_validates_with_ids(cache, monkeypatch, tmp_path):
    """Extraction, pretraining and fine-tuning take `hf:` ids at their checkpoint fields."""
    from bort_jax import extract, pretrain
    from bort_jax import finetune as ft
    from configs import default, pretrain_bort
    from tests.test_finetune import _write_sst2

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    hid = f"hf:{REPO}"
    cfg = default.get_config("smoke")
    cfg.source_dir = cfg.teacher_dir = hid
    extract.validate(cfg, str(tmp_path / "extract"))
    assert os.path.realpath(extract._teacher_dir(cfg)) == _snapshot(cache, MAIN)
    cfg.teacher_dir = "hf:nobody/missing"
    with pytest.raises(hub.HubError):
        extract.validate(cfg, str(tmp_path / "extract"))

    pcfg = pretrain_bort.get_config("smoke")
    pcfg.teacher_dir = pcfg.init = hid
    assert pretrain.validate(pcfg).teacher_dir == hid

    data = _write_sst2(tmp_path / "data", n_train=16, n_dev=8)
    prep = ft.prepare(
        dict(task="sst2", init=hid, data_dir=str(data), max_seq_len=16, batch_size=4, num_steps=1)
    )
    assert os.path.realpath(prep.tokenizer_dir) == _snapshot(cache, MAIN)
