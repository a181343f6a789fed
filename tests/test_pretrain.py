"""End-to-end smoke of the pretraining library function, including SIGKILL and resume."""

import json

import jax
import numpy as np
import pytest
from _kill import kill_when

from bort_jax import hf, pretrain
from configs import pretrain_bort


@pytest.mark.slow
def test_smoke_pretrain_loss_falls_exports_and_resumes(tmp_path):
    cfg = pretrain_bort.get_config("smoke")
    summary = pretrain.pretrain(cfg, str(tmp_path))
    assert summary["final_heldout"]["heldout_total"] < summary["initial_heldout"]["heldout_total"]
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000
    exported = hf.load(tmp_path / "export")
    assert str(exported.arch) == "D2/A12/H384/I768" and exported.has_mlm_head
    # rerun: resumes from the final checkpoint, trains nothing, same export
    again = pretrain.pretrain(cfg, str(tmp_path))
    assert again["resumed_from"] == cfg.num_steps and again["teacher_cache_hit"]
    again_params = hf.load(tmp_path / "export").params
    np.testing.assert_array_equal(
        again_params["layer_0"]["ffn_in"]["kernel"], exported.params["layer_0"]["ffn_in"]["kernel"]
    )
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == cfg.num_steps


def test_bad_config_named_before_work(tmp_path):
    cfg = pretrain_bort.get_config("smoke")
    cfg.arch = "2,5,384,768"
    with pytest.raises(ValueError, match="heads"):
        pretrain.pretrain(cfg, str(tmp_path))
    cfg = pretrain_bort.get_config("smoke")
    cfg.teacher_dir = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="teacher_dir"):
        pretrain.pretrain(cfg, str(tmp_path))
    cfg = pretrain_bort.get_config("smoke")
    cfg.arch = "2,12,768,768"
    with pytest.raises(ValueError, match="hidden"):
        pretrain.pretrain(cfg, str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_first_checkpoint", "before_summary"])
def test_sigkill_anywhere_resumes_to_the_same_result(tmp_path, point):
    cfg = pretrain_bort.get_config("smoke")
    reference = pretrain.pretrain(cfg, str(tmp_path / "ref"))
    workdir = tmp_path / "run"
    if point == "after_first_checkpoint":
        kill_when(
            "pretrain", cfg.to_dict(), workdir, lambda: (workdir / "checkpoints" / "6").is_dir()
        )
    else:
        marker = tmp_path / "stalled"
        kill_when("pretrain", cfg.to_dict(), workdir, marker.exists, stall=("summary.json", marker))
        assert (workdir / "checkpoints" / "12").is_dir()
    assert not (workdir / "summary.json").exists()
    resumed = pretrain.pretrain(cfg, str(workdir))
    assert resumed["resumed_from"] == (6 if point == "after_first_checkpoint" else 12)
    for key in ("initial_heldout", "final_heldout", "params", "train_sequences"):
        assert resumed[key] == reference[key], key
    ref_params = hf.load(tmp_path / "ref" / "export").params
    jax.tree_util.tree_map(
        np.testing.assert_array_equal, hf.load(workdir / "export").params, ref_params
    )
    history = lambda d: (d / "metrics.jsonl").read_text()
    assert history(workdir) == history(tmp_path / "ref")
