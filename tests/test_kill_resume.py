"""SIGKILL at deterministic points of the ε study and of the streamed teacher-cache write;
the rerun resumes and ends with what an uninterrupted run gives.

Each kill point is a stall (tests/_stall_worker.py): the process reaches a named place, says
so, and is SIGKILLed there. The other long jobs have theirs beside their own tests:
the pipeline in test_bort_pipeline.py, the error audit in test_error_audit.py, checkpoint
saves in test_train.py, fine-tuning / pretraining / extraction / Agora in their files.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from _kill import run_to_end, stall_and_kill
from _teacher_cache_worker import prepare as prepare_teacher_cache

from bort_jax import experiments as ex
from bort_jax.experiments import eps_budget
from configs import eps_budget as eps_budget_config

ROOT = Path(__file__).resolve().parents[1]
TEACHER_WORKER = Path(__file__).with_name("_teacher_cache_worker.py")

pytestmark = pytest.mark.slow


def test_eps_study_script_killed_at_four_points_resumes_to_the_same_report(tmp_path):
    """`scripts/eps_budget.py` (smoke: 4 candidates at T = 2 and 4) SIGKILLed (1) while the
    extraction's teacher outputs stream into the cache, (2) after the first T = 2 proxy
    training, before its stage file, (3) with T = 2 complete, before its report, (4) after
    the first T = 4 proxy training, before its stage file; then run to the end. Report and
    stage files equal an uninterrupted in-process run's (wall-clock `seconds` aside)."""
    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    args = [
        str(ROOT / "scripts" / "eps_budget.py"),
        f"--config={ROOT / 'configs' / 'eps_budget.py'}:smoke",
        f"--workdir={workdir}",
    ]
    for point in (
        "teacher_chunk:1",
        f"write:{workdir}/e/T00002/*.json",
        f"write:{workdir}/eps_budget.json",
        f"write:{workdir}/e/T00004/*.json",
    ):
        stall_and_kill(args, point, marker)
    assert len(list((workdir / "e" / "T00002").glob("*.json"))) == 4
    assert not list((workdir / "e" / "T00004").glob("*.json"))
    assert json.loads((workdir / "eps_budget.json").read_text())["steps_done"] == [2]
    run_to_end(args)
    ref_dir = tmp_path / "ref"
    eps_budget.run(eps_budget_config.get_config("smoke"), str(ref_dir))
    strip = lambda r: {k: v for k, v in ex.without_seconds(r).items() if k != "markdown"}  # noqa: E731
    report = lambda d: json.loads((d / "eps_budget.json").read_text())  # noqa: E731
    got, want = strip(report(workdir)), strip(report(ref_dir))
    assert got["complete"] and got["steps_done"] == [2, 4]
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)  # nan-safe
    stages = sorted(p.relative_to(ref_dir) for p in ref_dir.glob("e/*/*.json"))
    assert len(stages) == 8
    assert sorted(p.relative_to(workdir) for p in workdir.glob("e/*/*.json")) == stages
    for rel in stages:
        a, b = (ex.without_seconds(json.loads((d / rel).read_text())) for d in (workdir, ref_dir))
        assert a == b, rel


def _cached_entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_teacher_cache_killed_while_streaming_is_rebuilt_identically(tmp_path):
    """`distill.prepare` streaming the teacher outputs into the cache, SIGKILLed (1) after the
    second of four chunks was written into the staging memory-maps and (2) with every chunk
    written and flushed, before the entry is hashed and renamed into place. Neither leaves an
    entry a later run would read; the rerun builds the entry, equal to one built without a
    kill, and a further run reads it back from the cache."""
    cache, marker, out = tmp_path / "cache", tmp_path / "stalled", tmp_path / "out.npz"
    args = [str(TEACHER_WORKER), str(cache), str(out)]
    for point in ("teacher_chunk:2", "teacher_commit"):
        stall_and_kill(args, point, marker)
        assert not _cached_entries(cache), point
        staged = [p for p in cache.iterdir() if p.name.startswith(".")]
        assert staged and all((p / "train_hidden.npy").is_file() for p in staged), point
    assert not out.exists()
    run_to_end(args)
    got = np.load(out)
    assert not got["hit"] and len(_cached_entries(cache)) == 1
    run_to_end(args)
    assert np.load(out)["hit"]
    ref = prepare_teacher_cache(str(tmp_path / "fresh"))
    want = {
        **{f"train_{k}": v for k, v in ref.teacher_train.items()},
        **{f"heldout_{k}": v for k, v in ref.teacher_heldout.items()},
    }
    assert sorted(want) == sorted(k for k in got.files if k != "hit")
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], np.asarray(v), err_msg=k)
