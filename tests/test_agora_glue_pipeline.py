"""`bort_jax.experiments.agora_glue` with the student started from its own checkpoint
(`student_init`) and `pipeline.agora_for_model`: the student's initial encoder is that
checkpoint's, a wrong shape or vocabulary is refused by name before any work, and the
summary's numbers are the experiment report's."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from bort_jax import finetune as ft
from bort_jax import hf
from bort_jax.arch import Arch, Spec
from bort_jax.config import ConfigError
from bort_jax.experiments import agora_glue
from bort_jax.models.bert import Bert, fresh_params, slice_params
from bort_jax.tasks import get_task
from configs import agora_glue as agora_glue_config

MINILM_STUDENT = Arch(1, 12, 384, 1536)
TINY_LABELER, TINY_STUDENT = Arch(1, 2, 32, 64), Arch(1, 2, 16, 32)


def _save_student(path: Path, source: hf.Checkpoint, arch: Arch) -> Path:
    """`source` sliced to `arch`, every weight moved by seeded noise (so the student is no
    slice of `source`), saved with `source`'s tokenizer."""
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda x: x + rng.normal(0, 0.05, x.shape).astype(x.dtype),
        slice_params(source.params, source.arch, arch),
    )
    return hf.save(path, params, arch, source.spec, tokenizer_dir=source.path)


@pytest.fixture(scope="module")
def minilm_student(minilm, tmp_path_factory) -> Path:
    return _save_student(tmp_path_factory.mktemp("student") / "model", minilm, MINILM_STUDENT)


@pytest.fixture(scope="module")
def tiny_labeler(minilm, tmp_path_factory) -> Path:
    """A random one-layer BERT with MiniLM's vocabulary and tokenizer (so the fixture GLUE
    slices tokenize as usual)."""
    spec = dataclasses.replace(minilm.spec, max_positions=64, pooler=False)
    params = jax.device_get(fresh_params(Bert(TINY_LABELER, spec)))
    path = tmp_path_factory.mktemp("labeler") / "model"
    return hf.save(path, params, TINY_LABELER, spec, tokenizer_dir=minilm.path)


@pytest.fixture(scope="module")
def tiny_student(tiny_labeler, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny_student") / "model"
    return _save_student(path, hf.load(tiny_labeler), TINY_STUDENT)


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory) -> Path:
    """A tiny BERT with a vocabulary of its own."""
    root = tmp_path_factory.mktemp("other_vocab")
    words = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad")
    (root / "tok").mkdir()
    (root / "tok" / "vocab.txt").write_text("\n".join(words) + "\n")
    spec = Spec(vocab_size=len(words), max_positions=64, pooler=False)
    params = jax.device_get(fresh_params(Bert(TINY_STUDENT, spec)))
    return hf.save(root / "model", params, TINY_STUDENT, spec, tokenizer_dir=root / "tok")


def _config(init, student, data_dir, cache: Path | None = None, **fields) -> dict:
    """`configs/agora_glue.py:pipeline` at the smoke size on the fixture GLUE slices: 32
    training rows, one Agora round of the neighbour sampler, a few steps per fit, no dropout
    (it multiplies the train step's compile time on CPU)."""
    c = agora_glue_config.get_config("pipeline")
    c.init, c.student_init, c.student_arch, c.data_dir = str(init), str(student), "", str(data_dir)
    c.compilation_cache = str(cache) if cache else ""
    c.n_train, c.max_dev_examples, c.seeds, c.max_seq_len = 32, 0, "0,1", 32
    c.student.update(num_steps=6, log_every=6, dropout_rate=0.0)
    c.labeler.update(num_steps=8, eval_every=8, log_every=8, dropout_rate=0.0)
    c.agora.update(rounds=1, samples_per_error=2)
    c.distill_pool_size, c.sampler.neighbours = 16, 4
    c.update(fields)
    return c.to_dict()


def test_pipeline_config():
    """The pipeline variant: SST-2 and MRPC at 500 examples, 3 seeds, the neighbour arm
    alone, no controls, a fixed round; runnable alone (MiniLM sliced) and from a checkpoint."""
    cfg = agora_glue.GlueConfig.from_config(agora_glue_config.get_config("pipeline"))
    assert (cfg.tasks, cfg.n_train, cfg.seeds) == ("sst2,mrpc", 500, "0,1,2")
    assert cfg.sampler.kinds == ["neighbour"] and cfg.selection == "fixed"
    assert not (cfg.control_restarts or cfg.control_distill or cfg.control_budget)
    assert cfg.student_init == "" and Arch.parse(cfg.student_arch).hidden == 384
    assert agora_glue.GlueConfig.from_config(agora_glue_config.get_config()).student_init == ""


def test_student_starts_from_student_init(minilm_dir, minilm_student, task_data_dir):
    """student_arch '' or the checkpoint's own shape: the student's initial encoder is the
    student_init checkpoint's, unsliced (not MiniLM's first layer); the head is fresh."""
    ckpt = hf.load(minilm_student)
    saved = hf.flatten(ckpt.params)
    for arch in ("", "1,12,384,1536"):
        values = _config(minilm_dir, minilm_student, task_data_dir, student_arch=arch)
        cfg = agora_glue.GlueConfig.from_config(values)
        assert agora_glue.student_init_dir(cfg, minilm_dir) == str(minilm_student)
        data = agora_glue.load_task_data(get_task("sst2"), cfg, hf.load_tokenizer(minilm_dir))
        student = agora_glue.SeedStudent.build(data, ckpt, cfg, 0, None)
        assert student.model.arch == MINILM_STUDENT
        init = hf.flatten(student.init)
        assert set(saved) < set(init)  # plus the task head
        for key, value in saved.items():
            np.testing.assert_array_equal(init[key], value, err_msg=key)
    minilm_layer = hf.flatten(hf.load(minilm_dir).params)
    key = next(k for k in saved if "layer_0" in k and k.endswith("kernel"))
    assert not np.array_equal(saved[key], minilm_layer[key][tuple(map(slice, saved[key].shape))])


def test_student_init_checked_before_any_work(
    minilm_dir, minilm_student, other_vocab, task_data_dir, tmp_path
):
    """A student_arch other than the checkpoint's shape, and a vocabulary other than the
    labeler's, are refused by name before the workdir is touched."""
    workdir = tmp_path / "run"
    wrong = _config(minilm_dir, minilm_student, task_data_dir, student_arch="2,12,384,1536")
    message = (
        "config.student_arch='2,12,384,1536' is D2/A12/H384/I1536, but "
        f"config.student_init={minilm_student} is D1/A12/H384/I1536"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        agora_glue.run(wrong, workdir)
    with pytest.raises(ConfigError, match="vocabulary is not the labeler's.*sizes differ"):
        agora_glue.run(_config(minilm_dir, other_vocab, task_data_dir), workdir)
    with pytest.raises(ConfigError, match="no checkpoint"):
        agora_glue.run(_config(minilm_dir, tmp_path / "missing", task_data_dir), workdir)
    assert not workdir.exists()
    with pytest.raises(ConfigError, match="student_arch is empty"):
        agora_glue.GlueConfig.from_config(_config(minilm_dir, "", task_data_dir))


@pytest.mark.slow
def test_agora_for_model(tiny_labeler, tiny_student, task_data_dir, tmp_path, monkeypatch):
    """SST-2 and MRPC fixture slices, 2 seeds, one round: the summary per task holds finite
    numbers equal to the report's; the students start from student_dir, the labeler from
    init_dir; a rerun loads the finished run; another student in that workdir is refused."""
    built = []
    build = ft.build_classifier

    def spy(checkpoint, task, arch=None, **kwargs):
        built.append((checkpoint.path, arch))
        return build(checkpoint, task, arch, **kwargs)

    monkeypatch.setattr(ft, "build_classifier", spy)
    config = _config(tiny_labeler, "", task_data_dir, tmp_path / "jax_cache")
    config["tasks"] = "sst2,mrpc"
    workdir = tmp_path / "agora"
    out = agora_glue.agora_for_model(
        config, str(tiny_labeler), str(tiny_student), str(task_data_dir), workdir
    )
    report = json.loads((workdir / "agora_glue.json").read_text())
    assert report["config"]["student_init"] == report["student_init"] == str(tiny_student)
    assert report["config"]["student_arch"] == "" and report["init"] == str(tiny_labeler)
    students = [arch for path, arch in built if path == str(tiny_student)]
    assert len(students) == 4 and set(students) == {TINY_STUDENT}  # 2 tasks x 2 seeds
    assert {path for path, _ in built} == {str(tiny_student), str(tiny_labeler)}
    assert list(out) == ["sst2", "mrpc"]
    for name, metric in (("sst2", "accuracy"), ("mrpc", "f1")):
        got, task = out[name], report["tasks"][name]
        s = task["summary"]
        assert got["metric"] == metric and got["sampler"] == "neighbour"
        assert (got["seeds"], got["n_train"]) == (2, 32)
        assert got["heldout_rows"] == task["sizes"]["heldout"] > 0
        assert got["plain"] == {"mean": s["plain_mean"], "std": s["plain_std"]}
        assert got["agora"] == {"mean": s["agora_mean"], "std": s["agora_std"]}
        diff, half = s["ci_plain"]
        assert got["difference"] == {
            "mean": diff,
            "half_width": half,
            "interval": [diff - half, diff + half],
        }
        assert got["wins"] == s["wins"] and got["labeler"] == task["labeler"]["heldout"]
        numbers = [got["plain"]["mean"], got["plain"]["std"], got["agora"]["mean"]]
        numbers += [got["agora"]["std"], diff, half, got["labeler"]]
        assert all(math.isfinite(x) for x in numbers)
        assert 0.0 <= got["plain"]["mean"] <= 1.0 and 0.0 <= got["agora"]["mean"] <= 1.0
        assert math.isclose(diff, got["agora"]["mean"] - got["plain"]["mean"], abs_tol=1e-12)
    again = agora_glue.agora_for_model(
        config, str(tiny_labeler), str(tiny_student), str(task_data_dir), workdir
    )
    assert again == out
    with pytest.raises(ValueError, match="another config.*student_init"):
        agora_glue.agora_for_model(
            config, str(tiny_labeler), str(tiny_labeler), str(task_data_dir), workdir
        )
