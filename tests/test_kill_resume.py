"""SIGKILL at deterministic points of the streamed teacher-cache write; the rerun builds
the entry an uninterrupted run gives.

Each kill point is a stall (tests/_stall_worker.py): the process reaches a named place, says
so, and is SIGKILLed there. The long jobs have theirs beside their own tests: the pipeline
in test_bort_pipeline.py, the error audit in test_error_audit.py, the ε study in
test_budget.py, checkpoint saves in test_train.py, fine-tuning / pretraining / extraction /
Agora in their files.
"""

from pathlib import Path

import numpy as np
import pytest
from _kill import run_to_end, stall_and_kill
from _teacher_cache_worker import prepare as prepare_teacher_cache

TEACHER_WORKER = Path(__file__).with_name("_teacher_cache_worker.py")

pytestmark = pytest.mark.slow


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
