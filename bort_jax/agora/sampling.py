"""Agora's sampling step: around each misclassified point, draw k samples and label them.

Two forms, each one `jax.jit`-compiled `jax.vmap` over the n centres:

* in a representation space (`sample_and_relabel`): every *atom* (the last `atom_ndim` axes
  of a representation, of dimension a; one token of a [L, E] sequence) of a centre c is
  moved by delta in R^a,
      'uniform_ball':  delta = r u^(1/a) z / ||z||,  z ~ N(0, I_a), u ~ U(0, 1)
                       (uniform in the closed ball B(0, r));
      'gaussian':      delta = (r / sqrt(a)) z       (E||delta||^2 = r^2),
  frozen atoms (`perturb_mask` False: special tokens, padding) stay put; the sample is
  decoded to a model input (`decode_fn`) and the *decoded* input is labelled;
* on the model inputs directly (`resample_and_relabel`), for samplers that edit the input
  themselves (`bort_jax.agora.text`: masked-LM resampling, span replacement, neighbours).

The radius r is absolute or a multiple of rho, the mean nearest-neighbour distance between
distinct atoms of the real training set (`mean_nn_distance`): the scale at which balls
around the training points start to overlap.

Randomness: the samples of centre i come from `point_key(rng, i)` = fold_in(rng, i), so the
result does not depend on how the centres are chunked (`index_offset`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from bort_jax.agora.config import AgoraConfig
from bort_jax.agora.datasets import Dataset, Inputs, inputs_of, random_subset

Array = jax.Array


# -------------------------------------------------------------------------------- radius


def atom_dim(shape: Sequence[int], atom_ndim: int) -> int:
    """a = prod(shape[-atom_ndim:]), the dimension of one perturbed vector."""
    if len(shape) < atom_ndim:
        raise ValueError(f"shape {tuple(shape)} has fewer than atom_ndim={atom_ndim} axes")
    return int(np.prod(shape[len(shape) - atom_ndim :], dtype=np.int64))


def reference_atoms(
    reps: np.ndarray,
    atom_ndim: int,
    perturb_mask: Optional[np.ndarray] = None,
    max_points: int = 2048,
    seed: int = 0,
) -> np.ndarray:
    """Distinct atoms [m, a] of representations reps [n, *S] (frozen atoms excluded).

    Duplicates are removed (a repeated token would give a zero nearest-neighbour distance);
    if more than `max_points` remain, a seeded random subset of that size is returned.
    """
    reps = np.asarray(reps, dtype=np.float32)
    atoms = reps.reshape(-1, atom_dim(reps.shape[1:], atom_ndim))
    if perturb_mask is not None:
        atoms = atoms[np.asarray(perturb_mask, dtype=bool).reshape(-1)]
    atoms = np.unique(atoms, axis=0)
    if len(atoms) > max_points:
        pick = np.random.default_rng(seed).choice(len(atoms), max_points, replace=False)
        atoms = atoms[np.sort(pick)]
    return atoms


def mean_nn_distance(points: np.ndarray) -> float:
    """rho = (1/m) sum_i min_{j != i} ||x_i - x_j||_2 for points [m, a] (m >= 2), float64."""
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"mean_nn_distance needs [m >= 2, a] points, got shape {x.shape}")
    sq = np.sum(x * x, axis=1)
    d2 = sq[:, None] - 2.0 * (x @ x.T) + sq[None, :]
    np.fill_diagonal(d2, np.inf)
    return float(np.mean(np.sqrt(np.maximum(d2.min(axis=1), 0.0))))


def resolve_radius(cfg: AgoraConfig, atoms: Optional[np.ndarray] = None) -> float:
    """Absolute radius r: cfg.radius, or cfg.radius * mean_nn_distance(atoms) ('nn_mean')."""
    if cfg.radius_mode == "absolute":
        return float(cfg.radius)
    if atoms is None:
        raise ValueError("radius_mode 'nn_mean' needs reference atoms")
    return float(cfg.radius * mean_nn_distance(atoms))


def training_radius(
    train_set: Dataset,
    represent_fn: Callable,
    cfg: AgoraConfig,
    perturb_mask_fn: Optional[Callable],
) -> float:
    """Absolute radius from (a seeded subsample of at most nn_max_points) training rows."""
    if cfg.radius_mode == "absolute":
        return float(cfg.radius)
    rows = random_subset(train_set, cfg.nn_max_points, np.random.default_rng(cfg.seed))
    inputs = inputs_of(rows)
    mask = None if perturb_mask_fn is None else perturb_mask_fn(inputs)
    atoms = reference_atoms(
        np.asarray(represent_fn(inputs)), cfg.atom_ndim, mask, cfg.nn_max_points, cfg.seed
    )
    return resolve_radius(cfg, atoms)


# ------------------------------------------------------------------------------ sampling


def point_key(rng: Array, index: Array | int) -> Array:
    """Key of the misclassified point with global index `index` in a round: fold_in(rng, i)."""
    return jax.random.fold_in(rng, index)


def perturbation(
    key: Array, shape: Sequence[int], atom_ndim: int, distribution: str, radius: float | Array
) -> Array:
    """Noise delta of `shape` = (..., *atom_shape), i.i.d. per atom of a = prod(atom_shape).

    'uniform_ball': delta = r u^(1/a) z/||z|| with z ~ N(0, I_a), u ~ U(0,1): uniform in the
    ball of radius r (the radial law P(||delta|| <= t) = (t/r)^a). 'gaussian':
    delta = (r / sqrt(a)) z, per-coordinate std r/sqrt(a), E||delta||^2 = r^2.
    """
    shape = tuple(shape)
    a = atom_dim(shape, atom_ndim)
    lead = shape[: len(shape) - atom_ndim]
    kz, ku = jax.random.split(key)
    z = jax.random.normal(kz, lead + (a,), jnp.float32)
    if distribution == "gaussian":
        delta = z * (radius / math.sqrt(a))
    elif distribution == "uniform_ball":
        norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
        u = jax.random.uniform(ku, lead + (1,), jnp.float32)
        delta = radius * u ** (1.0 / a) * z / jnp.maximum(norm, 1e-12)
    else:
        raise ValueError(f"unknown distribution {distribution!r}")
    return delta.reshape(shape)


@dataclasses.dataclass(frozen=True)
class Noise:
    """The static part of a sampling step: k samples per centre, their law, the atom axes."""

    k: int
    distribution: str
    atom_ndim: int


def _sample_point(
    key: Array, centre: tuple, radius: Array, fns: tuple, noise: Noise
) -> tuple[Array, Inputs, Array]:
    """One centre (representation [*S], inputs, perturb mask) -> (samples [k, *S], decoded
    inputs [k, ...], labels [k]); fns = (labeler_fn, decode_fn)."""
    center, center_input, perturb_mask = centre
    labeler_fn, decode_fn = fns
    shape = (noise.k,) + center.shape
    delta = perturbation(key, shape, noise.atom_ndim, noise.distribution, radius)
    mask = perturb_mask.astype(delta.dtype).reshape(perturb_mask.shape + (1,) * noise.atom_ndim)
    samples = center[None].astype(jnp.float32) + delta * mask[None]
    inputs = decode_fn(samples, center_input)
    labels = jnp.asarray(labeler_fn(inputs)).astype(jnp.int32)
    return samples, inputs, labels


@functools.partial(jax.jit, static_argnames=("noise",))
def _sample_and_relabel_jit(rng, index_offset, radius, centres, fns, *, noise):
    index = index_offset + jnp.arange(centres[0].shape[0], dtype=jnp.int32)
    keys = jax.vmap(point_key, in_axes=(None, 0))(rng, index)
    one = functools.partial(_sample_point, fns=fns, noise=noise)
    return jax.vmap(one, in_axes=(0, 0, None))(keys, centres, radius)


def as_partial(fn: Callable) -> Partial:
    """Pass functions to jit as pytrees: arrays bound in a `Partial` are traced, not baked."""
    return fn if isinstance(fn, Partial) else Partial(fn)


def sample_and_relabel(
    rng: Array,
    centers: Array,
    labeler_fn: Callable,
    decode_fn: Callable,
    cfg: AgoraConfig,
    *,
    center_inputs: Optional[Inputs] = None,
    perturb_mask: Optional[Array] = None,
    index_offset: int = 0,
) -> tuple[Array, dict, Array]:
    """THE Agora step: sample k points around each centre, decode them, label them.

    One `jax.jit`-compiled `jax.vmap` over the n centres (misclassified points):
        x_ij = c_i + m_i * delta_ij,  delta_ij ~ cfg.distribution(radius)   j = 1..k
        inputs_ij = decode_fn(x_i., center_inputs_i)[j],  y_ij = labeler_fn(inputs_i.)[j]
    with delta drawn from `point_key(rng, index_offset + i)` (deterministic in rng; chunking
    with the matching `index_offset` gives identical results).

    Args:
        rng: a PRNG key.
        centers: representations [n, *S] of the centres.
        labeler_fn: `inputs (dict of [k, ...]) -> labels [k]`, jittable. Bind arrays
            (parameters) with `jax.tree_util.Partial` so they are traced, not constants.
        decode_fn: `(samples [k, *S], center_input (dict of one centre's arrays)) -> inputs
            (dict of [k, ...])`, jittable; same `Partial` convention.
        cfg: the sampler's hyperparameters: samples_per_error (k), distribution, atom_ndim,
            and radius, read as the absolute radius r (`cfg.with_radius(r)` sets it).
        center_inputs: dict of [n, ...] arrays handed row-wise to decode_fn (ids, masks).
        perturb_mask: bool [n, *S[:-atom_ndim]], False = atom frozen at the centre.
        index_offset: global index of centres[0] (for chunked calls).

    Returns:
        samples [n, k, *S] float32, inputs (dict of [n, k, ...]), labels [n, k] int32.
    """
    centers = jnp.asarray(centers, jnp.float32)
    n = centers.shape[0]
    lead = centers.shape[1 : centers.ndim - cfg.atom_ndim]
    atom_dim(centers.shape[1:], cfg.atom_ndim)
    if perturb_mask is None:
        perturb_mask = jnp.ones((n,) + lead, bool)
    perturb_mask = jnp.asarray(perturb_mask, bool)
    if perturb_mask.shape != (n,) + lead:
        raise ValueError(f"perturb_mask shape {perturb_mask.shape} != {(n,) + lead}")
    r = jnp.asarray(cfg.radius, jnp.float32)
    return _sample_and_relabel_jit(
        rng,
        jnp.asarray(index_offset, jnp.int32),
        r,
        (centers, dict(center_inputs or {}), perturb_mask),
        (as_partial(labeler_fn), as_partial(decode_fn)),
        noise=Noise(cfg.samples_per_error, cfg.distribution, cfg.atom_ndim),
    )


def _resample_point(key: Array, center_input: Inputs, labeler_fn: Callable, sample_fn: Callable):
    """One centre -> (inputs [k, ...], labels [k])."""
    inputs = sample_fn(key, center_input)
    return inputs, jnp.asarray(labeler_fn(inputs)).astype(jnp.int32)


@jax.jit
def _resample_and_relabel_jit(rng, center_inputs, index_offset, labeler_fn, sample_fn):
    first = next(iter(center_inputs.values()))
    index = index_offset + jnp.arange(first.shape[0], dtype=jnp.int32)
    keys = jax.vmap(point_key, in_axes=(None, 0))(rng, index)
    return jax.vmap(_resample_point, in_axes=(0, 0, None, None))(
        keys, center_inputs, labeler_fn, sample_fn
    )


def resample_and_relabel(
    rng: Array,
    center_inputs: Inputs,
    labeler_fn: Callable,
    sample_fn: Callable,
    *,
    index_offset: int = 0,
) -> tuple[dict, Array]:
    """Agora step for samplers that work on the model inputs directly (no representation).

    One `jax.jit`-compiled `jax.vmap` over the n centres:
        inputs_i. = sample_fn(point_key(rng, index_offset + i), center_inputs_i)   [k, ...]
        y_ij = labeler_fn(inputs_i.)[j]
    e.g. masked-LM resampling or span replacement (`bort_jax.agora.text`). Deterministic in
    rng; chunking with the matching `index_offset` gives identical results.

    Args:
        rng: a PRNG key.
        center_inputs: dict of [n, ...] arrays (one row per centre).
        labeler_fn: `inputs (dict of [k, ...]) -> labels [k]`, jittable (`Partial` for params).
        sample_fn: `(key, center_input (dict of one centre's arrays)) -> inputs (dict of
            [k, ...])`, jittable; arrays bound with `jax.tree_util.Partial`.
        index_offset: global index of the first centre (for chunked calls).

    Returns:
        inputs (dict of [n, k, ...]), labels [n, k] int32.
    """
    center_inputs = {key: jnp.asarray(v) for key, v in dict(center_inputs).items()}
    if not center_inputs:
        raise ValueError("resample_and_relabel needs at least one input array")
    return _resample_and_relabel_jit(
        rng,
        center_inputs,
        jnp.asarray(index_offset, jnp.int32),
        as_partial(labeler_fn),
        as_partial(sample_fn),
    )


# -------------------------------------------------------------------- decode and label


def _identity_decode(samples: Array, center_input: Inputs, *, key: str) -> dict:
    return {key: samples}


@functools.lru_cache(maxsize=None)
def identity_decode(key: str = "x") -> Callable:
    """decode_fn for continuous inputs: samples [k, *S] -> {key: samples}."""
    return functools.partial(_identity_decode, key=key)


def _argmax_labeler(logits_fn: Callable, params: Any, inputs: Inputs) -> Array:
    return jnp.argmax(logits_fn(params, inputs), axis=-1)


@functools.lru_cache(maxsize=None)
def _argmax_of(logits_fn: Callable) -> Callable:
    return functools.partial(_argmax_labeler, logits_fn)


def argmax_labeler(logits_fn: Callable[[Any, Inputs], Array], params: Any) -> Partial:
    """labeler_fn = argmax_c logits_fn(params, inputs)[..., c]; params are traced under jit."""
    return Partial(_argmax_of(logits_fn), params)
