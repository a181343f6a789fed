"""The whole pipeline (bort_jax/experiments/bort_pipeline.py) on its smoke config, cut to a
two-candidate grid and the fixture GLUE slices: extract → pretrain → fine-tune → report."""

import json
from pathlib import Path

import _pipeline_config
import pytest
from _kill import run_to_end, stall_and_kill

from bort_jax import arch as A
from bort_jax import finetune as ft
from bort_jax.experiments import bort_pipeline
from configs import bort


@pytest.fixture(scope="module")
def config(task_data_dir):
    c = _pipeline_config.get_config()
    assert c.data_dir == str(task_data_dir)
    return c


@pytest.fixture(scope="module")
def run(config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bort")
    return workdir, bort_pipeline.run(config, str(workdir))


@pytest.mark.slow
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


@pytest.mark.slow
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


def _without_latency(report):
    """The report minus what a clock measures (latency and the speed-ups from it)."""
    rows = [
        {k: v for k, v in row.items() if k not in ("latency_ms", "speedup_vs_source")}
        for row in report["models"]
    ]
    return dict(report, models=rows)


@pytest.mark.slow
def test_script_killed_at_five_points_resumes_to_the_same_report(run, tmp_path):
    """`scripts/bort.py` SIGKILLed at five deterministic points, rerun after each, ends with
    the uninterrupted run's report (latencies aside: they are measured, not computed).

    The points: (1) extraction, while the teacher outputs stream into the cache (after the
    first chunk); (2) the first KD pretraining, inside its checkpoint save of step 2 (arrays
    written, not committed); (3) that pretraining done, before its summary.json; (4) the
    first fine-tuning grid point done, before its result.json; (5) everything done, before
    report.json."""
    ref_dir, ref = run
    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    script = Path(__file__).resolve().parents[1] / "scripts" / "bort.py"
    args = [
        str(script),
        f"--config={Path(_pipeline_config.__file__).resolve()}",
        f"--workdir={workdir}",
    ]
    for point in (
        "teacher_chunk:1",
        "ckpt_commit:2",
        f"write:{workdir}/pretrain/*/summary.json",
        f"write:{workdir}/finetune/*/result.json",
        f"write:{workdir}/report.json",
    ):
        stall_and_kill(args, point, marker)
        assert not (workdir / "report.json").exists(), point
    run_to_end(args)
    again = json.loads((workdir / "report.json").read_text())
    assert _without_latency(again) == _without_latency(json.loads(json.dumps(ref)))
    assert _without_latency(again) == _without_latency(
        json.loads((ref_dir / "report.json").read_text())
    )
