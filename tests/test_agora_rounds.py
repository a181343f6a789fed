"""Tests of bort_jax.agora.rounds: generation around errors, replay, the dev split guard
and the round loop. The torus demonstration (Agora beats plain training) is
tests/test_agora_torus.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bort_jax import agora
from bort_jax.data import batching
from bort_jax.tasks.loading import assert_disjoint, split_dev


def _sign_labeler(inputs):
    """Label = 1 where the first coordinate is positive. inputs['x']: [k, d] -> [k]."""
    return (inputs["x"][..., 0] > 0).astype(jnp.int32)


def _cfg(**kw) -> agora.AgoraConfig:
    return agora.AgoraConfig(**{"samples_per_error": 4, "radius_mode": "absolute", **kw})


def test_generate_does_not_depend_on_chunking():
    rng = np.random.default_rng(3)
    centers = {
        "x": rng.normal(size=(11, 2)).astype(np.float32),
        "label": rng.integers(0, 2, 11).astype(np.int32),
    }
    out = [
        agora.generate(
            jax.random.PRNGKey(2),
            centers,
            agora.Generator(_sign_labeler, lambda x: x["x"], agora.identity_decode("x")),
            _cfg(samples_per_error=3, chunk_size=c),
            0.4,
        )
        for c in (3, 256)
    ]
    for key in ("x", "label", "synthetic"):
        np.testing.assert_array_equal(out[0][0][key], out[1][0][key])
    assert out[0][0]["x"].shape == (33, 2) and out[0][0]["synthetic"].all()
    assert out[0][1] == out[1][1]


# ------------------------------------------------------------------ split and replay


def test_split_dev_disjoint_and_deterministic():
    a, h = split_dev(101, 0.3, seed=5)
    a2, h2 = split_dev(101, 0.3, seed=5)
    a3, _ = split_dev(101, 0.3, seed=6)
    assert_disjoint(a, h)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(h, h2)
    assert not np.array_equal(a, a3)
    assert len(a) == 30 and np.array_equal(np.sort(np.concatenate([a, h])), np.arange(101))
    with pytest.raises(AssertionError):
        assert_disjoint(a, np.concatenate([h, a[:1]]))


def test_replay_fraction_and_cap():
    def rows(n, start):
        return {
            "x": np.arange(start, start + n, dtype=np.float32)[:, None],
            "label": np.zeros(n, np.int32),
            "synthetic": np.ones(n, bool),
        }

    old, new = rows(10, 0), rows(4, 100)
    out = agora.replay(old, new, agora.AgoraConfig(replay_fraction=0.5), 1)
    assert batching.num_rows(out) == 9 and set(out["x"][-4:, 0]) == {100, 101, 102, 103}
    out = agora.replay(old, new, agora.AgoraConfig(replay_fraction=1.0, max_synthetic=6), 1)
    assert batching.num_rows(out) == 6 and set(out["x"][-4:, 0]) == {100, 101, 102, 103}
    out = agora.replay(old, new, agora.AgoraConfig(replay_fraction=0.0), 1)
    assert batching.num_rows(out) == 4
    out = agora.replay(old, new, agora.AgoraConfig(max_synthetic=2), 1)
    assert batching.num_rows(out) == 2 and set(out["x"][:, 0]) <= {100, 101, 102, 103}


# -------------------------------------------------------------------------- round loop


def _ring(n, rng, arc=2 * np.pi):
    theta = rng.uniform(0, arc, n)
    x = np.stack([np.cos(theta), np.sin(theta)], -1).astype(np.float32)
    return {"x": x, "label": (theta > np.pi).astype(np.int32)}


def test_run_agora_loop_with_nearest_neighbour_model():
    """1-NN 'model' (no training): checks the bookkeeping, selection and held-out isolation."""
    rng = np.random.default_rng(0)
    train_set = _ring(12, rng, arc=np.pi)  # only label 0 is ever seen
    dev = _ring(200, rng)
    agora_idx, heldout_idx = split_dev(200, 0.5, seed=0)
    assert_disjoint(agora_idx, heldout_idx)
    agora_dev, heldout = batching.take(dev, agora_idx), batching.take(dev, heldout_idx)
    heldout_rows = {tuple(x) for x in heldout["x"]}
    seen: list[np.ndarray] = []
    fits: list[tuple[int, int, int]] = []

    def fit_fn(data, r, key):
        assert data["synthetic"].dtype == bool
        fits.append((r, batching.num_rows(data), int(data["synthetic"].sum())))
        seen.append(data["x"])
        return {k: np.asarray(v) for k, v in data.items()}

    def predict_fn(state, inputs):
        seen.append(inputs["x"])
        d = np.linalg.norm(inputs["x"][:, None] - state["x"][None], axis=-1)
        return state["label"][np.argmin(d, axis=1)]

    def labeler(inputs):
        return (jnp.arctan2(inputs["x"][:, 1], inputs["x"][:, 0]) < 0).astype(jnp.int32)

    cfg = agora.AgoraConfig(
        rounds=3, samples_per_error=4, radius=0.05, radius_mode="absolute", patience=2, seed=0
    )
    learner = agora.Learner(fit_fn, predict_fn)
    generator = agora.Generator(labeler, lambda inputs: inputs["x"], agora.identity_decode("x"))
    res = agora.run_agora(train_set, agora_dev, learner, generator, cfg)
    h = res.history
    assert h[0]["n_synthetic"] == 0 and h[0]["train_size"] == 12
    assert h[0]["n_new"] == 4 * h[0]["n_errors"] > 0
    assert h[1]["n_synthetic"] == h[0]["n_new"]
    assert fits[1] == (1, 12 + h[0]["n_new"], h[0]["n_new"])
    assert h[0]["labeler_agreement"] > 0.9
    assert res.best_metric == max(r["agora_dev_metric"] for r in h)
    assert res.best_metric > h[0]["agora_dev_metric"] + 0.3
    assert res.history[res.best_round]["is_best"]
    for x in seen:  # Agora never touched held-out rows
        assert not heldout_rows & {tuple(row) for row in x}
    again = agora.run_agora(train_set, agora_dev, learner, generator, cfg)
    np.testing.assert_array_equal(again.train_set["x"], res.train_set["x"])


def test_patience_stops_early():
    rng = np.random.default_rng(1)
    train_set, dev = _ring(8, rng), _ring(40, rng)
    const = lambda state, inputs: np.zeros(len(inputs["x"]), np.int32)  # noqa: E731
    cfg = agora.AgoraConfig(
        rounds=10, samples_per_error=2, radius=0.1, radius_mode="absolute", patience=2
    )
    res = agora.run_agora(
        train_set,
        dev,
        agora.Learner(lambda d, r, k: None, const),
        agora.Generator(
            lambda inputs: jnp.zeros(inputs["x"].shape[0], jnp.int32),
            lambda inputs: inputs["x"],
            agora.identity_decode("x"),
        ),
        cfg,
    )
    assert [r["round"] for r in res.history] == [0, 1, 2] and res.best_round == 0


def test_undefined_metric_ranks_last():
    """A NaN agora-dev metric (e.g. a correlation of constant predictions) is the worst value:
    round 0 is still the best when every round is NaN, and any number beats it."""
    rng = np.random.default_rng(1)
    data = (_ring(8, rng), _ring(40, rng))
    generator = agora.Generator(_sign_labeler, lambda x: x["x"], agora.identity_decode("x"))
    for values, best in (([np.nan] * 4, 0), ([np.nan, np.nan, 0.1, np.nan], 2)):
        metrics = iter(values)
        learner = agora.Learner(
            fit_fn=lambda d, r, k: r,  # the state is the round
            predict_fn=lambda state, x: np.zeros(len(x["x"]), np.int32),
            metric_fn=lambda p, y, m=metrics: next(m),
        )
        res = agora.run_agora(*data, learner, generator, _cfg(rounds=3, patience=0))
        assert res.best_round == best and res.best_state == best, values
