"""`bort_jax.experiments.agora_torus`: the `smoke` config end to end (Agora beats plain
training on held-out data by the margin docs/agora.md reports), resume, config errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from bort_jax import experiments
from bort_jax.config import ConfigError
from bort_jax.experiments import agora_torus, without_seconds
from configs import agora_torus as agora_torus_config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[dict, object]:
    workdir = tmp_path_factory.mktemp("torus")
    return agora_torus.run(agora_torus_config.get_config("smoke"), workdir), workdir


@pytest.mark.slow
def test_agora_beats_plain_training_on_the_torus(smoke_run):
    """Seed 0, default settings, same per-fit steps. Measured (docs/agora.md) over seeds
    0-2: plain 64-66 %, Agora 98-99 % held-out, gain about +33 points; assert +20."""
    report, workdir = smoke_run
    (out,) = report["seeds"]
    assert out["seed"] == 0 and out["best_round"] >= 1
    assert out["agora"] - out["plain"] >= 0.20, out
    assert out["agora"] >= 0.9, out
    assert out["plain"] == out["rounds"][0]["heldout_acc"]  # round 0 is plain
    rounds = out["rounds"]
    assert rounds[0]["n_synthetic"] == 0 and rounds[0]["train_size"] == 64
    assert rounds[1]["n_synthetic"] == rounds[0]["n_new"] > 0
    assert 0.05 < out["radius"] < 0.2  # 1 x the nearest-neighbour scale
    assert report["summary"]["gain_min"] == pytest.approx(out["agora"] - out["plain"])
    assert "plain_long" not in out and "reference" not in out  # smoke: no controls
    saved = json.loads((workdir / "agora_torus.json").read_text())
    assert saved["seeds"][0]["agora"] == out["agora"]
    assert "| Agora − plain (points) |" in (workdir / "agora_torus.md").read_text()
    assert not list(workdir.glob("*.png"))  # smoke: no plots


@pytest.mark.slow
def test_rerun_loads_finished_seeds(smoke_run, monkeypatch):
    report, workdir = smoke_run

    def boom(*args, **kwargs):
        raise AssertionError("a finished seed was recomputed")

    monkeypatch.setattr(agora_torus, "run_seed", boom)
    again = agora_torus.run(agora_torus_config.get_config("smoke"), workdir)
    drop = lambda r: json.dumps(
        without_seconds({k: v for k, v in r.items() if k != "markdown"}), sort_keys=True
    )
    assert drop(again) == drop(report)
    other = agora_torus_config.get_config("smoke")
    other.agora.radius = 2.0
    with pytest.raises(ValueError, match="another config"):
        agora_torus.run(other, workdir)


def test_fit_uses_epoch_batches():
    """Every training row is seen once per epoch: with batch = n, each step sees all rows,
    so two data sets that differ only in row order give the same fit."""
    rng = np.random.default_rng(0)
    data = {
        "x": rng.normal(size=(16, 2)).astype(np.float32),
        "label": rng.integers(0, 2, 16).astype(np.int32),
    }
    fit = agora_torus.MLPFit(
        hidden=(8,), num_steps=5, batch_size=16, learning_rate=1e-2, weight_decay=0.0
    )
    a = agora_torus.fit_mlp(data, fit, seed=0)
    perm = rng.permutation(16)
    b = agora_torus.fit_mlp({k: v[perm] for k, v in data.items()}, fit, seed=0)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_config_errors():
    cfg = agora_torus_config.get_config().to_dict()
    with pytest.raises(ConfigError, match="config.agora.radious"):
        agora_torus.TorusConfig.from_config(dict(cfg, agora=dict(cfg["agora"], radious=1)))
    with pytest.raises(ConfigError, match="config.agora.seed"):
        agora_torus.TorusConfig.from_config(dict(cfg, agora=dict(cfg["agora"], seed=1)))
    with pytest.raises(ConfigError, match="labeler.kind"):
        agora_torus.TorusConfig.from_config(dict(cfg, labeler=dict(cfg["labeler"], kind="weak")))
    with pytest.raises(ConfigError, match="seeds"):
        agora_torus.TorusConfig.from_config(dict(cfg, seeds="0,0"))
    full = agora_torus.TorusConfig.from_config(agora_torus_config.get_config())
    assert full.seeds == "0,1,2" and full.controls and full.student.hidden == (32, 32)


def test_open_workdir_guards_results_of_another_config(tmp_path):
    """A workdir with results keeps its config; one with nothing else takes a new one."""
    assert experiments.open_workdir(None, {"a": 1}) is None
    experiments.open_workdir(tmp_path, {"a": 1, "b": (1, 2)})
    experiments.open_workdir(tmp_path, {"a": 2, "b": (1, 2)})  # nothing else there yet
    (tmp_path / "seed0.json").write_text("{}")
    experiments.open_workdir(tmp_path, {"a": 2, "b": [1, 2]})  # the same config
    with pytest.raises(ValueError, match="differs in a"):
        experiments.open_workdir(tmp_path, {"a": 3, "b": (1, 2)})
    assert json.loads((tmp_path / "config.json").read_text()) == {"a": 2, "b": [1, 2]}
