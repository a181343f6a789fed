"""The whole pipeline (bort_jax/experiments/bort_pipeline.py) on its smoke config, cut to a
two-candidate grid and the fixture GLUE slices: extract → pretrain → fine-tune → report."""

import json

import pytest

from bort_jax import arch as A
from bort_jax import finetune as ft
from bort_jax.experiments import bort_pipeline
from configs import bort


@pytest.fixture(scope="module")
def config(task_data_dir):
    c = bort.get_config("smoke")
    c.data_dir = str(task_data_dir)
    c.extract.grid.depth, c.extract.grid.hidden = [1, 2], [128]
    c.extract.grid.heads, c.extract.grid.intermediate = [4], [384]
    # i(ξ) from FLOPs: the latency model is tested in test_extract; the pipeline's own
    # side-by-side latency measurement (the report's speed-ups) still runs
    c.extract.inference = "flops"
    c.pretrain.num_steps, c.pretrain.checkpoint_every, c.pretrain.eval_every = 4, 2, 2
    c.grid.num_steps = [4]
    return c


@pytest.fixture(scope="module")
def run(config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bort")
    return workdir, bort_pipeline.run(config, str(workdir))


def test_report_compares_chosen_extremes_and_source(run, config, minilm):
    workdir, report = run
    names = {r["model"] for r in report["models"]}
    assert "source" in names and any("chosen" in n for n in names)
    assert {"smallest", "largest"} <= {part for n in names for part in n.split("=")}
    assert report["tasks"] == ["sst2", "stsb"]
    source = next(r for r in report["models"] if r["model"] == "source")
    for row in report["models"]:
        arch = A.Arch.parse(row["arch"])
        assert row["params"] == A.param_count(arch, minilm.spec)["total"]
        assert row["speedup_vs_source"] == pytest.approx(source["latency_ms"] / row["latency_ms"])
        for task in report["tasks"]:
            detail = report["details"][row["model"]][task]
            metric = detail["primary_metric"]
            assert row["scores"][task] == detail["report"][metric]
            # the selected grid point is the best one on the selection half
            best = max(p["select"][metric] for p in detail["grid"])
            assert detail["select"][metric] == best
            # the two halves partition the dev set
            n_dev = min(65, config.finetune.max_eval_examples or 65)  # fixture SST-2/STS-B
            assert detail["select_examples"] + detail["report_examples"] == n_dev
    assert source["arch"] == "D6/A12/H384/I1536"
    md = (workdir / "report.md").read_text()
    assert f"{100 * source['scores']['sst2']:.1f}" in md and report["chosen"] in md
    assert json.loads((workdir / "report.json").read_text())["models"] == report["models"]


def test_rerun_reuses_every_stage(run, config, monkeypatch):
    workdir, report = run

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(ft, "run_prepared", no_training)
    monkeypatch.setattr(bort_pipeline.pretrain, "pretrain", no_training)
    again = bort_pipeline.run(config, str(workdir))
    assert again == report


def test_bad_task_named_before_work(config, tmp_path):
    bad = bort.get_config("smoke")
    bad.data_dir = config.data_dir
    bad.tasks = "sst2,qqq"
    with pytest.raises(ValueError, match="qqq"):
        bort_pipeline.run(bad, str(tmp_path))
    assert not any(tmp_path.iterdir())
