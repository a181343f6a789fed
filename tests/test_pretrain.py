"""End-to-end smoke of the pretraining script's library function."""
import json

import numpy as np
import pytest

from bort_jax import hf, pretrain
from configs import pretrain_bort


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
    np.testing.assert_array_equal(again_params["layer_0"]["ffn_in"]["kernel"],
                                  exported.params["layer_0"]["ffn_in"]["kernel"])
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
