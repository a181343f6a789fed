"""`scripts/bort.py` killed by SIGKILL at three deterministic points and rerun: the same report
as an uninterrupted run. Its own file (and a one-task, one-seed variant of the pipeline tests'
config) so that it runs beside tests/test_bort_pipeline.py under pytest-xdist."""

import json
from pathlib import Path

import _pipeline_config
import pytest
from _kill import run_to_end, stall_and_kill

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bort.py"
CONFIG = f"--config={Path(_pipeline_config.__file__).resolve()}:kill"


CLOCK = {"latency_ms", "speedup_vs_source", "seconds", "train_seconds"}  # measured, not computed


def _without_clock(tree):
    """`tree` without the fields a clock measures (at any depth)."""
    if isinstance(tree, dict):
        return {k: _without_clock(v) for k, v in tree.items() if k not in CLOCK}
    if isinstance(tree, list):
        return [_without_clock(v) for v in tree]
    return tree


def test_script_killed_at_three_points_resumes_to_the_same_report(tmp_path):
    """The points are the pipeline's own stage boundaries: (1) the first KD pretraining done,
    before its summary.json; (2) the first fine-tuning run done, before its result.json; (3)
    everything done, before report.json. Clock readings aside (latencies, seconds), the
    report equals the uninterrupted run's. (Kills inside a checkpoint save and while the
    teacher outputs stream into the cache: test_train.py and test_kill_resume.py.)"""
    ref_dir = tmp_path / "ref"
    run_to_end([str(SCRIPT), CONFIG, f"--workdir={ref_dir}"])
    ref = json.loads((ref_dir / "report.json").read_text())
    assert ref["tasks"] == ["stsb"] and ref["seeds"] == [0]

    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    args = [str(SCRIPT), CONFIG, f"--workdir={workdir}"]
    for point in (
        f"write:{workdir}/pretrain/*/summary.json",
        f"write:{workdir}/finetune/*/*/*/result.json",
        f"write:{workdir}/report.json",
    ):
        stall_and_kill(args, point, marker)
        assert not (workdir / "report.json").exists(), point
    run_to_end(args)
    again = json.loads((workdir / "report.json").read_text())
    assert _without_clock(again) == _without_clock(ref)
