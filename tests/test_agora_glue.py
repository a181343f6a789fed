"""`bort_jax.experiments.agora_glue` end to end on a tiny random BERT and a synthetic SST-2:
the held-out half never reaches Agora or the training set, the report lists the split
sizes, and a run SIGKILLed at several points and rerun ends with the same report."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from bort_jax import agora, hf
from bort_jax.arch import Arch, Spec
from bort_jax.config import ConfigError
from bort_jax.data import batching
from bort_jax.experiments import agora_glue, without_seconds
from bort_jax.experiments.agora_glue import experiment
from bort_jax.models.bert import Bert, fresh_params
from bort_jax.tasks import get_task
from bort_jax.tasks.encoding import encode_examples
from bort_jax.tasks.loading import load_examples
from configs import agora_glue as agora_glue_config

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_agora_worker.py")
WORDS = (
    "good",
    "great",
    "bad",
    "awful",
    "the",
    "movie",
    "was",
    "a",
    "film",
    "plot",
    "actor",
    "really",
    "this",
    "and",
    "story",
    "very",
    "it",
    "so",
    "cast",
    "music",
    "scene",
    "end",
    "long",
    "short",
    "old",
    "new",
    "dark",
    "light",
)
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _canonical(report: dict) -> str:
    """The report without wall-clock fields, as sorted JSON (so NaN equals NaN)."""
    return json.dumps(without_seconds(report), sort_keys=True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_agora")
    (root / "tok").mkdir()
    (root / "tok" / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    arch, spec = (
        Arch(1, 2, 32, 64),
        Spec(vocab_size=len(SPECIAL + WORDS), max_positions=32, pooler=False),
    )
    params = jax.device_get(fresh_params(Bert(arch, spec)))
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
            words.insert(
                int(rng.integers(0, 10)), str(rng.choice(WORDS[:2] if label else WORDS[2:4]))
            )
            text = " ".join(words)
            if text not in seen:
                seen.add(text)
                rows.append(f"{text}\t{label}")
        (root / "glue" / "SST-2" / f"{split}.tsv").write_text(
            "sentence\tlabel\n" + "\n".join(rows) + "\n"
        )
    return root


def _config(tiny_dir: Path, data_dir: Path, cache_dir: Path) -> dict:
    """The `smoke` config on the tiny model and data: 2 seeds, 1 Agora round, both controls.

    The JAX compilation cache is shared by every run of the module (in process and in the
    kill test's subprocesses): each fit re-jits an identical train step. No dropout: it
    quadruples the train step's compile time on CPU and is not what these tests check.
    """
    cfg = agora_glue_config.get_config("smoke")
    cfg.init, cfg.data_dir, cfg.compilation_cache = str(tiny_dir), str(data_dir), str(cache_dir)
    cfg.n_train, cfg.max_dev_examples, cfg.seeds = 64, 0, "0,1"
    cfg.max_seq_len, cfg.student_arch = 16, "1,2,16,32"
    cfg.student.learning_rate, cfg.student.dropout_rate, cfg.labeler.dropout_rate = 1e-3, 0, 0
    cfg.labeler.update(num_steps=40, learning_rate=2e-3, eval_every=20, train_examples=80)
    cfg.agora.radius = 2.0
    cfg.control_restarts, cfg.control_distill, cfg.distill_pool_size = True, True, 12
    # two Agora arms: the masked LM (MiniLM-like: the tiny model has no MLM head, so one is
    # fitted; the primary arm) and nearest pool neighbours; the report compares all four
    cfg.control_budget = True
    cfg.sampler.kind, cfg.sampler.mask_count, cfg.sampler.neighbours = "masked_lm,neighbour", 2, 4
    cfg.sampler_report.n_centres = 8
    cfg.sampler_report.samplers = "nearest_token,masked_lm,span,neighbour"
    return cfg.to_dict()


@pytest.fixture(scope="module")
def config(tiny_dir, data_dir, tmp_path_factory) -> dict:
    return _config(tiny_dir, data_dir, tmp_path_factory.mktemp("jax_cache"))


@pytest.fixture(scope="module")
def uninterrupted(config, tmp_path_factory) -> tuple[dict, Path, list]:
    """One in-process run; records what `agora.run_agora` was handed."""
    seen_by_agora = []
    run_agora = agora.run_agora

    def spy(train_set, agora_dev_set, *args, **kwargs):
        result = run_agora(train_set, agora_dev_set, *args, **kwargs)
        seen_by_agora.append((train_set, agora_dev_set, result))
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(agora, "run_agora", spy)
        workdir = tmp_path_factory.mktemp("agora_glue_run")
        report = agora_glue.run(config, workdir)
    return report, workdir, seen_by_agora


@pytest.mark.slow
def test_tiny_end_to_end(uninterrupted, tiny_dir, data_dir):
    report, workdir, seen_by_agora = uninterrupted
    task = report["tasks"]["sst2"]
    assert task["sizes"] == {
        "train": 64,
        "labeler_train": 80,
        "dev": 40,
        "agora_dev": 20,
        "heldout": 20,
    }
    # the labeler saw 80 training rows, the student only its 64 (a subset of them)
    assert len(task["train_idx"]) == 64 and len(task["labeler_train_idx"]) == 80
    assert set(task["train_idx"]) <= set(task["labeler_train_idx"])
    assert task["labeler"]["heldout_rows_in_train"] == 0
    assert not set(task["agora_idx"]) & set(task["heldout_idx"])
    assert sorted(task["agora_idx"] + task["heldout_idx"]) == list(range(40))
    # Agora was handed the agora half only; no held-out row is in any training set
    sst2 = get_task("sst2")
    heldout = encode_examples(
        hf.load_tokenizer(tiny_dir),
        sst2,
        [load_examples(sst2, "dev", str(data_dir))[i] for i in task["heldout_idx"]],
        16,
    )
    heldout_keys = set(agora_glue.row_keys(heldout))
    assert len(seen_by_agora) == 4  # 2 seeds x 2 arms
    for train_set, agora_dev, _ in seen_by_agora:
        assert batching.num_rows(train_set) == 64  # the student's real rows only
        assert batching.num_rows(agora_dev) == 20
        assert not heldout_keys & set(agora_glue.row_keys(agora_dev))
        assert not heldout_keys & set(agora_glue.row_keys(train_set))
    for seed in task["seeds"]:
        assert seed["plain"] == seed["history"][0]["heldout_metric"]
        assert seed["agora"] == seed["history"][seed["best_round"]]["heldout_metric"]
        assert all(r["heldout_loss"] > 0 for r in seed["history"])
        for r in seed["history"]:
            assert r["heldout_rows_in_train_real"] == r["heldout_rows_in_train_synthetic"] == 0
        assert seed["history"][-1]["train_size"] > 64  # synthetic rows were added
        assert len(seed["control"]["runs"]) == len(seed["history"])
        # distillation control: pseudo-labelled rows from outside both training sets
        assert seed["distill_control"]["n_extra"] == min(
            12, max(r["n_synthetic"] for r in seed["history"])
        )
        assert 0.0 <= seed["distill"] <= 1.0
    # two arms per seed on one shared plain fit; the primary (masked LM) is the top level
    cfg = agora_glue.GlueConfig.from_config(uninterrupted[0]["config"])
    pool = agora_glue.load_task_data(sst2, cfg, hf.load_tokenizer(tiny_dir)).distill_pool
    pool_keys = set(agora_glue.row_keys(pool))
    for i, seed in enumerate(task["seeds"]):
        arms = seed["arms"]
        assert list(arms) == ["masked_lm", "neighbour"]
        assert seed["agora"] == arms["masked_lm"]["agora"]
        assert seed["history"] == arms["masked_lm"]["history"]
        assert arms["neighbour"]["history"][0] == {
            **arms["masked_lm"]["history"][0],
            "seconds": arms["neighbour"]["history"][0]["seconds"],
            "labeler_agreement": arms["neighbour"]["history"][0]["labeler_agreement"],
        }
        # the neighbour arm trains on real rows plus pool rows only (relabelled)
        final = seen_by_agora[2 * i + 1][2].train_set
        synthetic = np.asarray(final["synthetic"], bool)
        assert synthetic.any()
        keys = agora_glue.row_keys(final)
        assert all(k in pool_keys for k, m in zip(keys, synthetic) if m)
        last = arms["neighbour"]["history"][-1]
        assert last["distinct_synthetic"] == len({k for k, m in zip(keys, synthetic) if m})
    arm_summary = task["summary"]["arms"]
    assert list(arm_summary) == ["masked_lm", "neighbour"]
    assert arm_summary["masked_lm"]["ci_distill"] == task["summary"]["ci_distill"]
    md_arms = (workdir / "agora_glue.md").read_text()
    assert "Agora arms" in md_arms and "| sst2 | neighbour |" in md_arms
    # the masked-LM sampler: no radius; every sample differs from its centre in exactly
    # mask_count = 2 tokens (every sentence has 10 perturbable words)
    assert all(math.isnan(s["radius"]) for s in task["seeds"])
    report_s = task["sampler_report"]
    assert report_s["n_centres"] == 8 and list(report_s["samplers"]) == [
        "nearest_token",
        "masked_lm",
        "span",
        "neighbour",
    ]
    assert report_s["samplers"]["neighbour"]["changed"] > 0.5  # other sentences
    mlm = report_s["samplers"]["masked_lm"]
    assert mlm["changed"] == 1.0 and mlm["tokens_changed"] == 2.0
    span = report_s["samplers"]["span"]
    assert 0.0 < span["changed"] <= 1.0 and 0.0 < span["tokens_changed"] <= 3.0
    for x in report_s["samplers"].values():
        assert 0.0 <= x["labeler_equals_gold"] <= 1.0 and len(x["examples"]) == 2
    assert {"ci_plain", "ci_best_of", "ci_distill", "ci_budget"} <= set(task["summary"])
    assert "| sst2 | masked_lm | 8 | 100% | 2.00 |" in (workdir / "agora_glue.md").read_text()
    for seed in task["seeds"]:
        assert seed["budget_control"]["num_steps"] == 12 * len(seed["history"])
        assert seed["budget"] == seed["budget_control"]["heldout"]
        assert seed["selected_round"] == seed["best_round"]  # selection 'agora_half'
        assert seed["agora_agora_dev"] == seed["history"][seed["best_round"]]["agora_dev_metric"]
    assert 0.0 <= task["perturbation"]["token_change_rate"] <= 1.0
    assert len(task["perturbation"]["examples"]) == 2
    # the report: JSON + Markdown listing split sizes and the per-round history
    saved = json.loads((workdir / "agora_glue.json").read_text())
    assert saved["tasks"]["sst2"]["sizes"]["heldout"] == 20
    md = (workdir / "agora_glue.md").read_text()
    assert "| sst2 | 64 | 40 (20 / 20) | 80 |" in md and "Per round" in md
    assert "Control: student on real rows" in md
    assert 0.0 <= task["labeler"]["heldout"] <= 1.0
    assert {
        "plain_mean",
        "agora_mean",
        "plain_std",
        "agora_std",
        "best_of_mean",
        "distill_mean",
    } <= set(task["summary"])
    # finished stages: one JSON each; student checkpoints gone; the labeler's best model kept
    assert {p.name for p in (workdir / "sst2").iterdir()} == {
        "labeler",
        "mlm_head",
        "seed0.json",
        "seed1.json",
        "task.json",
    }
    assert (workdir / "sst2" / "labeler" / "best_model" / "config.json").is_file()
    assert not (workdir / "sst2" / "labeler" / "checkpoints").exists()


@pytest.mark.slow
def test_rerun_loads_finished_stages(uninterrupted, config, monkeypatch):
    """A finished workdir is loaded, not recomputed; another config there is refused."""
    report, workdir, _ = uninterrupted

    def boom(*args, **kwargs):
        raise AssertionError("a finished task was recomputed")

    monkeypatch.setattr(experiment, "run_task", boom)
    again = agora_glue.run(config, workdir)
    assert _canonical(again) == _canonical(report)
    with pytest.raises(ValueError, match="another config"):
        agora_glue.run(dict(config, n_train=32), workdir)


def test_labeler_train_examples(config, tiny_dir):
    """0 = the student's set; -1 = the whole split; N = N rows containing the student's; the
    labeler's rows reach the labeler, the student keeps its n_train."""
    tok, task = hf.load_tokenizer(tiny_dir), get_task("sst2")
    for value, expected in ((0, 64), (-1, 96), (80, 80), (500, 96)):
        cfg = agora_glue.GlueConfig.from_config(
            dict(config, labeler=dict(config["labeler"], train_examples=value))
        )
        data = agora_glue.load_task_data(task, cfg, tok)
        assert data.sizes()["train"] == 64
        assert data.sizes()["labeler_train"] == batching.num_rows(data.labeler_rows) == expected
        assert (data.labeler_train is None) == (expected == 64)
        assert set(data.train_idx.tolist()) <= set(data.labeler_train_idx.tolist())
        keys = set(agora_glue.row_keys(data.labeler_rows))
        assert set(agora_glue.row_keys(data.train)) <= keys
        pool = set(agora_glue.row_keys(data.distill_pool))
        assert len(pool) == 12 and not pool & set(agora_glue.row_keys(data.train))
        assert not pool & set(agora_glue.row_keys(data.heldout))
        if expected < 96:
            assert not pool & keys  # unlabeled for the labeler too, when rows remain
    # train_examples is not a FinetuneConfig field: stage_config drops it
    assert agora_glue.stage_config(cfg.labeler, cfg, seed=0).num_steps == 40


def test_config_errors(config):
    """Unknown keys are named with their dotted path; bad values are refused early."""
    with pytest.raises(ConfigError, match="config.labeler.train_exampels"):
        agora_glue.GlueConfig.from_config(
            dict(config, labeler=dict(config["labeler"], train_exampels=1))
        )
    with pytest.raises(ConfigError, match="config.agora.radious"):
        agora_glue.GlueConfig.from_config(dict(config, agora=dict(config["agora"], radious=1)))
    with pytest.raises(ConfigError, match="train_examples"):
        agora_glue.GlueConfig.from_config(
            dict(config, labeler=dict(config["labeler"], train_examples=-2))
        )
    with pytest.raises(ConfigError, match="regression"):
        agora_glue.GlueConfig.from_config(dict(config, tasks="stsb"))
    smoke = agora_glue.GlueConfig.from_config(agora_glue_config.get_config("smoke"))
    assert smoke.tasks == "sst2" and smoke.seeds == "0"
    assert agora_glue.GlueConfig.from_config(agora_glue_config.get_config()).n_train == 500
    # the equal-compute comparison with controls and its smoke variant: the same arms,
    # controls and selection
    for arg in ("controls", "controls,smoke"):
        rows = agora_glue.GlueConfig.from_config(agora_glue_config.get_config(arg))
        assert rows.sampler.kinds == ["neighbour", "nearest_token"]
        assert rows.control_distill and rows.control_budget and not rows.control_restarts
        assert rows.selection == "fixed"
    assert (rows.tasks, rows.seeds, rows.n_train) == ("sst2", "0", 64)


def test_selection(config):
    """'fixed' reports a round chosen without scores; bad selections and samplers refused."""
    history = [{"round": r} for r in range(4)]
    pick = lambda **kw: agora_glue.selected_round(
        history, 1, agora_glue.GlueConfig.from_config(dict(config, **kw))
    )
    assert pick(selection="agora_half") == 1
    assert pick(selection="fixed") == 3 and pick(selection="fixed", fixed_round=2) == 2
    assert pick(selection="fixed", fixed_round=9) == 3
    with pytest.raises(ConfigError, match="selection"):
        pick(selection="best")
    with pytest.raises(ConfigError, match="sampler.kind"):
        agora_glue.GlueConfig.from_config(dict(config, sampler=dict(kind="bert")))
    with pytest.raises(ConfigError, match="only needs"):
        agora_glue.GlueConfig.from_config(dict(config, sampler_report=dict(samplers="", only=True)))


# ---------------------------------------------------------------------------- kill / resume


def _stage_checkpoint(*parts: str):
    """Marker: a finished Orbax checkpoint step under workdir/parts/checkpoints."""

    def present(workdir: Path) -> bool:
        d = workdir.joinpath(*parts, "checkpoints")
        return d.is_dir() and any(p.name.isdigit() for p in d.iterdir())

    return present


def _run_worker(config_path: Path, workdir: Path, kill_when=None) -> int:
    """Run the worker; with `kill_when(workdir)`, SIGKILL it as soon as that holds."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(config_path), str(workdir)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if kill_when is not None:
        while proc.poll() is None and not kill_when(workdir):
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, -signal.SIGKILL), err[-3000:]
    return proc.returncode


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(uninterrupted, config, tmp_path):
    """SIGKILL mid-labeler, mid-student-fit (after a checkpoint) and after the first seed's
    result; the rerun ends with the uninterrupted run's report (wall-clock fields aside)."""
    report, reference, _ = uninterrupted
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    workdir = tmp_path / "run"
    seed0 = workdir / "sst2" / "seed0.json"
    for marker in (
        _stage_checkpoint("sst2", "labeler"),
        _stage_checkpoint("sst2", "seed0", "masked_lm", "round1"),
        lambda w: seed0.is_file(),
    ):
        assert _run_worker(config_path, workdir, marker) == -signal.SIGKILL
        assert not (workdir / "agora_glue.json").exists()
    finished = seed0.stat().st_mtime_ns
    assert _run_worker(config_path, workdir) == 0
    assert seed0.stat().st_mtime_ns == finished  # loaded, not recomputed
    resumed = json.loads((workdir / "agora_glue.json").read_text())
    assert _canonical(resumed) == _canonical(report)
    assert (workdir / "agora_glue.md").read_text() == report["markdown"]
    best = Path("sst2", "labeler", "best_model")
    for name in ("model.safetensors", hf.HEAD_FILE):  # the labeler resumed bit-exactly
        assert (workdir / best / name).read_bytes() == (reference / best / name).read_bytes()
