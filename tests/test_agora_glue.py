"""scripts/agora_glue.py end to end on a tiny random BERT and a synthetic SST-2: the held-out
half never reaches Agora or the training set, and the report lists the split sizes."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from bort_jax import finetune as ft
from bort_jax import hf
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert
from bort_jax.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("good", "great", "bad", "awful", "the", "movie", "was", "a", "film", "plot",
         "actor", "really", "this", "and", "story", "very", "it", "so", "cast", "music",
         "scene", "end", "long", "short", "old", "new", "dark", "light")
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def agora_glue():
    return _load("agora_glue_script", ROOT / "scripts" / "agora_glue.py")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_agora")
    (root / "tok").mkdir()
    (root / "tok" / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    arch, spec = Arch(1, 2, 32, 64), Spec(vocab_size=len(SPECIAL + WORDS), max_positions=32,
                                          pooler=False)
    params = jax.device_get(ft.fresh_params(Bert(arch, spec)))
    return hf.save(root / "model", params, arch, spec, tokenizer_dir=root / "tok")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Distinct 10-word sentences; label 1 iff 'good'/'great' occurs."""
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    root = tmp_path_factory.mktemp("agora_data")
    (root / "glue" / "SST-2").mkdir(parents=True)
    for split, n in (("train", 96), ("dev", 40)):
        rows = []
        while len(rows) < n:
            label = int(rng.integers(0, 2))
            words = list(rng.choice(WORDS[4:], size=9))
            words.insert(int(rng.integers(0, 10)), str(rng.choice(WORDS[:2] if label
                                                                  else WORDS[2:4])))
            text = " ".join(words)
            if text not in seen:
                seen.add(text)
                rows.append(f"{text}\t{label}")
        (root / "glue" / "SST-2" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


def _config(tiny_dir: Path, data_dir: Path) -> ml_collections.ConfigDict:
    cfg = _load("agora_glue_config", ROOT / "configs" / "agora_glue.py").get_config()
    cfg.tasks, cfg.init, cfg.data_dir = "sst2", str(tiny_dir), str(data_dir)
    cfg.n_train, cfg.seeds, cfg.max_seq_len, cfg.student_arch = 64, "0,1", 16, "1,2,16,32"
    cfg.student.update(num_steps=12, learning_rate=1e-3)
    cfg.labeler.update(num_steps=40, learning_rate=2e-3, eval_every=20, train_examples=80)
    cfg.agora.update(rounds=1, samples_per_error=2, radius=2.0)
    cfg.control_distill, cfg.distill_pool_size = True, 12
    return cfg


def test_tiny_end_to_end(agora_glue, tiny_dir, data_dir, tmp_path, monkeypatch):
    seen_by_agora = []
    run_agora = agora_glue.agora.run_agora

    def spy(train_set, agora_dev_set, *args, **kwargs):
        seen_by_agora.append((train_set, agora_dev_set))
        return run_agora(train_set, agora_dev_set, *args, **kwargs)

    monkeypatch.setattr(agora_glue.agora, "run_agora", spy)
    report = agora_glue.run(_config(tiny_dir, data_dir), tmp_path)
    task = report["tasks"]["sst2"]
    assert task["sizes"] == {"train": 64, "labeler_train": 80, "dev": 40, "agora_dev": 20,
                             "heldout": 20}
    # the labeler saw 80 training rows, the student only its 64 (a subset of them)
    assert len(task["train_idx"]) == 64 and len(task["labeler_train_idx"]) == 80
    assert set(task["train_idx"]) <= set(task["labeler_train_idx"])
    assert task["labeler"]["heldout_rows_in_train"] == 0
    assert not set(task["agora_idx"]) & set(task["heldout_idx"])
    assert sorted(task["agora_idx"] + task["heldout_idx"]) == list(range(40))
    # Agora was handed the agora half only; no held-out row is in any training set
    heldout = ft.encode_examples(
        hf.load_tokenizer(tiny_dir), get_task("sst2"),
        [ft.load_examples(get_task("sst2"), "dev", str(data_dir))[i]
         for i in task["heldout_idx"]], 16)
    heldout_keys = set(agora_glue.row_keys(heldout))
    assert len(seen_by_agora) == 2
    for train_set, agora_dev in seen_by_agora:
        assert ft.num_rows(train_set) == 64      # the student's real rows, not the labeler's
        assert not heldout_keys & set(agora_glue.row_keys(agora_dev))
        assert not heldout_keys & set(agora_glue.row_keys(train_set))
    for seed in task["seeds"]:
        assert seed["plain"] == seed["history"][0]["heldout_metric"]
        for r in seed["history"]:
            assert r["heldout_rows_in_train_real"] == r["heldout_rows_in_train_synthetic"] == 0
        assert seed["history"][-1]["train_size"] >= 64
        assert len(seed["control"]["runs"]) == len(seed["history"])
        # distillation control: pseudo-labelled rows from outside both training sets
        assert seed["distill_control"]["n_extra"] == min(
            12, max(r["n_synthetic"] for r in seed["history"]))
        assert 0.0 <= seed["distill"] <= 1.0
    # the report: JSON + Markdown listing split sizes and the per-round history
    saved = json.loads((tmp_path / "agora_glue.json").read_text())
    assert saved["tasks"]["sst2"]["sizes"]["heldout"] == 20
    md = (tmp_path / "agora_glue.md").read_text()
    assert "| sst2 | 64 | 40 (20 / 20) | 80 |" in md and "Per round" in md
    assert 0.0 <= task["labeler"]["heldout"] <= 1.0
    assert {"plain_mean", "agora_mean", "plain_std", "agora_std",
            "distill_mean"} <= set(task["summary"])
    assert "Control: student on real rows" in md


def test_labeler_train_examples(agora_glue, tiny_dir, data_dir):
    """0 = the student's set (default); -1 = the whole split; N = N rows containing the
    student's; the labeler's rows reach the labeler, the student keeps its n_train."""
    cfg = _config(tiny_dir, data_dir)
    tok, task = hf.load_tokenizer(tiny_dir), get_task("sst2")
    for value, expected in ((0, 64), (-1, 96), (80, 80), (500, 96)):
        cfg.labeler.train_examples = value
        data = agora_glue.load_task_data(task, cfg, tok)
        assert data.sizes()["train"] == 64
        assert data.sizes()["labeler_train"] == ft.num_rows(data.labeler_rows) == expected
        assert (data.labeler_train is None) == (expected == 64)
        assert set(data.train_idx.tolist()) <= set(data.labeler_train_idx.tolist())
        keys = set(agora_glue.row_keys(data.labeler_rows))
        assert set(agora_glue.row_keys(data.train)) <= keys
        pool = set(agora_glue.row_keys(data.distill_pool))
        assert len(pool) == 12 and not pool & set(agora_glue.row_keys(data.train))
        assert not pool & set(agora_glue.row_keys(data.heldout))
        if expected < 96:
            assert not pool & keys       # unlabeled for the labeler too, when rows remain
    cfg.labeler.train_examples = -2
    with pytest.raises(ValueError):
        agora_glue.load_task_data(task, cfg, tok)
    # train_examples is not a FinetuneConfig field: stage_config must drop it
    assert agora_glue.stage_config(cfg.labeler, cfg, seed=0).num_steps == 40
