"""End-to-end smoke of the pretraining library function, including SIGKILL and resume."""

import json

import jax
import numpy as np
import pytest
from _kill import kill_when

from bort_jax import hf, pretrain
from configs import pretrain_bort


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted smoke pretraining: (config, workdir, summary)."""
    cfg = pretrain_bort.get_config("smoke")
    workdir = tmp_path_factory.mktemp("pretrain_ref")
    return cfg, workdir, pretrain.pretrain(cfg, str(workdir))


@pytest.mark.slow
def test_smoke_pretrain_loss_falls_exports_and_resumes(reference):
    cfg, tmp_path, summary = reference
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


@pytest.mark.slow
def test_model_options_train_the_same_student_and_export_canonical(tmp_path):
    """Scanned + remat + padded vocabulary: the plain run's losses and held-out objective, and
    an export in the HF layout with the plain run's weights."""
    runs = {}
    for name, layout in (("off", {}), ("on", dict(scan_layers=True, remat=True))):
        cfg = pretrain_bort.get_config("smoke")
        cfg.num_steps, cfg.checkpoint_every, cfg.eval_every, cfg.log_every = 4, 4, 4, 2
        cfg.dropout_rate, cfg.dtype = 0.0, "float32"
        cfg.cache_dir = str(tmp_path / "teacher_cache")  # one teacher pass for both
        cfg.model.update(dict(layout, vocab_multiple=128 if layout else 1))
        summary = pretrain.pretrain(cfg, str(tmp_path / name))
        history = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        losses = [json.loads(r)["loss"] for r in history if '"loss"' in r]
        runs[name] = (summary, losses, hf.load(tmp_path / name / "export"))
    (s_off, l_off, e_off), (s_on, l_on, e_on) = runs["off"], runs["on"]
    assert len(l_off) == 2 and s_on["teacher_cache_hit"]
    np.testing.assert_allclose(l_on, l_off, rtol=1e-5)
    for key in ("heldout_total", "heldout_mlm"):
        assert s_on["final_heldout"][key] == pytest.approx(s_off["final_heldout"][key], rel=1e-5)
    assert e_on.arch == e_off.arch and "layer_1" in e_on.params
    assert (
        e_on.params["embeddings"]["word_embeddings"]["embedding"].shape[0] == e_on.spec.vocab_size
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        e_on.params,
        e_off.params,
    )


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
def test_sigkill_anywhere_resumes_to_the_same_result(reference, tmp_path):
    """Killed (a real SIGKILL) right after its first checkpoint (step 6), rerun and killed
    again after the last step's checkpoint, before summary.json; the third run resumes from
    step 12 and ends with the uninterrupted run's summary and exported weights."""
    cfg, ref_dir, ref = reference
    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    kill_when("pretrain", cfg.to_dict(), workdir, lambda: (workdir / "checkpoints" / "6").is_dir())
    assert not (workdir / "checkpoints" / "12").exists()
    kill_when("pretrain", cfg.to_dict(), workdir, marker.exists, stall=("summary.json", marker))
    assert (workdir / "checkpoints" / "12").is_dir() and not (workdir / "summary.json").exists()
    history = [json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [
        json.loads(r)["step"] for r in (ref_dir / "metrics.jsonl").read_text().splitlines()
    ]  # the second run logged from step 7 on, after the first run's records up to 6
    resumed = pretrain.pretrain(cfg, str(workdir))
    assert resumed["resumed_from"] == 12
    for key in ("initial_heldout", "final_heldout", "params", "train_sequences"):
        assert resumed[key] == ref[key], key
    jax.tree_util.tree_map(
        np.testing.assert_array_equal,
        hf.load(workdir / "export").params,
        hf.load(ref_dir / "export").params,
    )
