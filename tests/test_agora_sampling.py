"""Tests of bort_jax.agora.sampling: the jit(vmap) sampling step (laws, determinism, chunking,
frozen atoms) and the nearest-neighbour radius."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bort_jax import agora


def _sign_labeler(inputs):
    """Label = 1 where the first coordinate is positive. inputs['x']: [k, d] -> [k]."""
    return (inputs["x"][..., 0] > 0).astype(jnp.int32)


def _cfg(**kw) -> agora.AgoraConfig:
    return agora.AgoraConfig(**{"samples_per_error": 4, "radius_mode": "absolute", **kw})


# ----------------------------------------------------------------------- sampling step


def test_sample_and_relabel_shapes_and_determinism():
    centers = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    cfg = _cfg(radius=0.5)
    decode = agora.identity_decode("x")
    a = agora.sample_and_relabel(jax.random.PRNGKey(0), centers, _sign_labeler, decode, cfg)
    b = agora.sample_and_relabel(jax.random.PRNGKey(0), centers, _sign_labeler, decode, cfg)
    c = agora.sample_and_relabel(jax.random.PRNGKey(7), centers, _sign_labeler, decode, cfg)
    samples, inputs, labels = a
    assert samples.shape == (5, 4, 3) and inputs["x"].shape == (5, 4, 3)
    assert labels.shape == (5, 4) and labels.dtype == jnp.int32
    np.testing.assert_array_equal(samples, b[0])
    np.testing.assert_array_equal(labels, b[2])
    assert not np.allclose(samples, c[0])
    np.testing.assert_array_equal(labels, (samples[..., 0] > 0).astype(np.int32))


def test_uniform_ball_within_radius_and_uniform():
    n, k, d, r = 64, 64, 3, 0.3
    centers = jax.random.normal(jax.random.PRNGKey(2), (n, d))
    cfg = _cfg(samples_per_error=k, distribution="uniform_ball")
    samples, _, _ = agora.sample_and_relabel(
        jax.random.PRNGKey(0),
        centers,
        _sign_labeler,
        agora.identity_decode("x"),
        cfg.with_radius(r),
    )
    norms = np.linalg.norm(np.asarray(samples - centers[:, None]), axis=-1)
    assert norms.max() <= r * (1 + 1e-5)
    assert norms.max() > 0.95 * r
    # Uniform in the ball: (||delta|| / r)^d ~ U(0, 1), mean 1/2, std 1/sqrt(12) / sqrt(N).
    assert abs(np.mean((norms / r) ** d) - 0.5) < 4 / math.sqrt(12 * n * k)


def test_gaussian_has_configured_std():
    n, k, d, r = 128, 64, 4, 0.8
    centers = jnp.zeros((n, d))
    cfg = _cfg(samples_per_error=k, distribution="gaussian")
    samples, _, _ = agora.sample_and_relabel(
        jax.random.PRNGKey(3),
        centers,
        _sign_labeler,
        agora.identity_decode("x"),
        cfg.with_radius(r),
    )
    delta = np.asarray(samples).reshape(-1, d)
    assert np.allclose(delta.std(axis=0), r / math.sqrt(d), rtol=0.04)
    assert np.allclose(delta.mean(axis=0), 0.0, atol=0.02)
    assert abs(np.mean(np.sum(delta**2, -1)) - r**2) < 0.03 * r**2


def test_vmapped_step_equals_python_loop_and_chunking():
    centers = jax.random.normal(jax.random.PRNGKey(4), (6, 2))
    cfg = _cfg(samples_per_error=3, distribution="uniform_ball")
    rng, r = jax.random.PRNGKey(11), 0.7
    decode = agora.identity_decode("x")
    samples, _, labels = agora.sample_and_relabel(
        rng, centers, _sign_labeler, decode, cfg.with_radius(r)
    )
    for i in range(centers.shape[0]):  # reference: one point at a time
        delta = agora.perturbation(agora.point_key(rng, i), (3, 2), 1, "uniform_ball", r)
        ref = centers[i][None] + delta
        np.testing.assert_allclose(samples[i], ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(labels[i], _sign_labeler({"x": ref}))
    tail, _, _ = agora.sample_and_relabel(
        rng, centers[4:], _sign_labeler, decode, cfg.with_radius(r), index_offset=4
    )
    np.testing.assert_allclose(tail, samples[4:], rtol=1e-6, atol=1e-6)


def test_perturb_mask_freezes_atoms():
    centers = jax.random.normal(jax.random.PRNGKey(5), (3, 4, 2))  # [n, L, E]
    mask = np.array([[1, 1, 0, 0], [0, 1, 1, 1], [1, 0, 1, 0]], bool)
    cfg = _cfg(samples_per_error=5)
    samples, _, _ = agora.sample_and_relabel(
        jax.random.PRNGKey(0),
        centers,
        lambda x: jnp.zeros(x["x"].shape[0], jnp.int32),
        agora.identity_decode("x"),
        cfg.with_radius(1.0),
        perturb_mask=mask,
    )
    moved = np.any(np.asarray(samples) != np.asarray(centers)[:, None], axis=-1)  # [n, k, L]
    np.testing.assert_array_equal(moved, np.broadcast_to(mask[:, None], moved.shape))
    per_token = np.linalg.norm(np.asarray(samples - centers[:, None]), axis=-1)
    assert per_token.max() <= 1.0 + 1e-5  # ball per token


def test_mean_nn_distance_and_radius():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [3.0, 0.0]])
    atoms = agora.reference_atoms(pts, atom_ndim=1)  # duplicate removed
    assert atoms.shape == (3, 2)
    assert agora.mean_nn_distance(atoms) == pytest.approx(4.0 / 3.0)
    cfg = agora.AgoraConfig(radius=0.5, radius_mode="nn_mean")
    assert agora.resolve_radius(cfg, atoms) == pytest.approx(2.0 / 3.0)
    assert agora.resolve_radius(dataclasses.replace(cfg, radius_mode="absolute")) == 0.5
