"""Agora (de Wynter, 2020, arXiv 2010.07990): grow a scarce training set around the errors.

The paper's setting: a candidate model f must be trained on a training set D that is too small
or unrepresentative, no more data can be collected, but (a) a labeler (a second, trusted
model, or an oracle) and (b) a data-generating function are available. Agora alternates

    fit f on D  ->  run f on an evaluation split E  ->  take the misclassified points of E
    ->  sample new inputs near each of them in a representation space  ->  label the samples
    with the labeler  ->  add them to D  ->  repeat,

and keeps the best model on E. The theory (binary classification) says the generated points
grow an open cover of the data manifold; D is learnable iff the cover has the manifold's
homology. Bort's README adds that "replay" (re-running some Agora iterations) was needed.

The paper's exact sampling rule, radius, samples per error, representation, labeler and
replay schedule were NOT available to us (docs/papers.md §3). What follows is our
reconstruction; every piece is a small function so that a reader of the PDF can swap it.

Reconstructed choices (see docs/agora.md for the argument behind each):

1. Representation space. `represent_fn(inputs) -> reps [n, *S]`: the inputs themselves for
   continuous data; for text the word-embedding sequence of the tokens, reps [n, L, E].
2. Atoms. The last `atom_ndim` axes of a representation form an *atom* of dimension
   a = prod(S[-atom_ndim:]): the whole point for vectors (S = [d], atom_ndim = 1), one token
   for text (S = [L, E], atom_ndim = 1, so every token is perturbed independently).
   A boolean `perturb_mask [n, *S[:-atom_ndim]]` freezes atoms (special tokens, padding).
3. Distribution, per atom, delta in R^a:
     'uniform_ball':  delta = r * u^(1/a) * z / ||z||,  z ~ N(0, I_a), u ~ U(0, 1),
                      i.e. uniform in the closed ball B(0, r), so ||delta|| <= r;
     'gaussian':      delta = (r / sqrt(a)) * z,  so E||delta||^2 = r^2, std per coordinate
                      r / sqrt(a).
   The ball is the primary choice: the paper's argument is about an open cover by balls.
4. Radius. radius_mode 'absolute': r = cfg.radius. 'nn_mean' (default): r = cfg.radius * rho,
   rho = mean nearest-neighbour distance between distinct atoms of the (real) training set,
   (subsampled to nn_max_points atoms). rho is the scale at which balls around the training
   points start to overlap (the Vietoris-Rips / Cech scale that connects the sample), so a
   multiplier near 1 fills gaps without bridging far-apart parts of the manifold. For text,
   r is better set by the share of tokens it changes after decoding
   (`radius_for_change_rate`, then radius_mode 'absolute'): in high dimension that share
   jumps from ~0 to ~1 over a narrow range of r.
5. Decoding and labelling. A sample is first decoded to a model input (`decode_fn`: identity
   for continuous inputs, nearest-token decoding for text), and the *decoded* input is what
   the labeler labels and what the model trains on, so label and training point agree.
   For text, samplers that edit the tokens directly (masked-LM resampling, span replacement;
   `bort_jax.agora_text`) replace steps 1-5's perturb-and-decode: `resample_and_relabel`,
   `run_agora(sample_fn=...)`.
6. Replay. After each round a fraction `replay_fraction` of the earlier synthetic points is
   kept (random subset); the rest is dropped and replaced by points recomputed around the
   current errors. replay_fraction = 1 accumulates everything (the plain reading of Agora);
   0 keeps only the newest round. `max_synthetic` caps the pool; newest points win.
7. Stopping and selection. Round 0 fits the original data (plain training). Then up to
   `rounds` Agora rounds; stop early when the agora-dev metric has not improved for
   `patience` rounds or when there are no errors left. The returned model is the best one on
   the agora-dev split. The paper's hyperparameter pruning over Theta is left to `fit_fn`.
   "Misclassified" is predictions != labels unless `error_fn` says otherwise.
8. Honesty. Agora uses its evaluation split for training data, so its metric is no longer a
   held-out estimate (docs/papers.md, P5). `split_dev` cuts the dev set into an agora split
   (given to `run_agora`) and a held-out split (never given to it); report the held-out one.

Data sets are dicts of numpy arrays with equal first dimension, a 'label' key, any number of
input keys, and (added here) a boolean 'synthetic' key. Input keys are all keys except
'label' and 'synthetic'. Row helpers (`num_rows`, `take`, `concat`) are those of
`bort_jax.data.batching`; the default metric is `bort_jax.tasks.metrics.accuracy`.

Randomness: the sample of misclassified point i of a round uses `fold_in(rng, i)`, so the
result does not depend on how the points are chunked, and everything is a function of
`cfg.seed`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from bort_jax.data import batching
from bort_jax.tasks.metrics import accuracy

Array = jax.Array
Dataset = dict[str, np.ndarray]
Inputs = Mapping[str, Any]
RESERVED_KEYS = ("label", "synthetic")
DISTRIBUTIONS = ("uniform_ball", "gaussian")
RADIUS_MODES = ("nn_mean", "absolute")


@dataclasses.dataclass(frozen=True)
class AgoraConfig:
    """Hyperparameters of `run_agora` / `sample_and_relabel`.

    Attributes:
        rounds: Agora rounds R after the plain round 0 (at most R + 1 fits).
        samples_per_error: k, synthetic samples drawn around each misclassified point.
        distribution: 'uniform_ball' (uniform in B(0, r) per atom) or 'gaussian'
            (N(0, r^2 / a I_a) per atom, E||delta||^2 = r^2).
        radius: r itself ('absolute') or the multiplier of the mean nearest-neighbour
            distance of the training atoms ('nn_mean').
        radius_mode: 'nn_mean' or 'absolute'.
        atom_ndim: trailing representation axes perturbed as one vector (1 for both [n, d]
            vectors and [n, L, E] token sequences).
        replay_fraction: share in [0, 1] of earlier synthetic points kept each round.
        max_synthetic: cap on the synthetic pool (None: no cap).
        patience: stop after this many rounds without agora-dev improvement (0: never).
        seed: all randomness of Agora (sampling, replay subsets, radius subsample).
        chunk_size: misclassified points per jitted call (bounds memory; no effect on results).
        nn_max_points: atoms used to estimate the nearest-neighbour scale.
    """

    rounds: int = 5
    samples_per_error: int = 8
    distribution: str = "uniform_ball"
    radius: float = 1.0
    radius_mode: str = "nn_mean"
    atom_ndim: int = 1
    replay_fraction: float = 1.0
    max_synthetic: Optional[int] = None
    patience: int = 2
    seed: int = 0
    chunk_size: int = 256
    nn_max_points: int = 2048

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise ValueError(f"AgoraConfig.rounds must be >= 0, got {self.rounds}")
        if self.samples_per_error < 1:
            raise ValueError(
                f"AgoraConfig.samples_per_error must be >= 1, got {self.samples_per_error}"
            )
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"AgoraConfig.distribution={self.distribution!r} not in {DISTRIBUTIONS}"
            )
        if self.radius_mode not in RADIUS_MODES:
            raise ValueError(f"AgoraConfig.radius_mode={self.radius_mode!r} not in {RADIUS_MODES}")
        if not self.radius > 0:
            raise ValueError(f"AgoraConfig.radius must be > 0, got {self.radius}")
        if self.atom_ndim < 1:
            raise ValueError(f"AgoraConfig.atom_ndim must be >= 1, got {self.atom_ndim}")
        if not 0.0 <= self.replay_fraction <= 1.0:
            raise ValueError(
                f"AgoraConfig.replay_fraction must be in [0, 1], got {self.replay_fraction}"
            )
        if self.max_synthetic is not None and self.max_synthetic < 1:
            raise ValueError(
                f"AgoraConfig.max_synthetic must be >= 1 or None, got {self.max_synthetic}"
            )
        if self.patience < 0:
            raise ValueError(f"AgoraConfig.patience must be >= 0, got {self.patience}")
        if self.chunk_size < 1 or self.nn_max_points < 2:
            raise ValueError("AgoraConfig.chunk_size must be >= 1 and nn_max_points >= 2")


@dataclasses.dataclass
class AgoraResult:
    """What `run_agora` returns.

    Attributes:
        best_state: the model state with the best agora-dev metric.
        best_round: its round (0 = plain training on the original data).
        best_metric: its agora-dev metric.
        history: one record per fitted round (see `run_agora`).
        train_set: the training set of the last fitted round (real + synthetic rows).
        radius: the absolute sampling radius used.
    """

    best_state: Any
    best_round: int
    best_metric: float
    history: list[dict]
    train_set: Dataset
    radius: float


# ------------------------------------------------------------------------------ data sets


def input_keys(ds: Mapping[str, np.ndarray]) -> list[str]:
    """Sorted keys that are model inputs (everything but 'label' and 'synthetic')."""
    return sorted(k for k in ds if k not in RESERVED_KEYS)


def inputs_of(ds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The input arrays of a data set."""
    return {k: ds[k] for k in input_keys(ds)}


def with_synthetic_flag(ds: Mapping[str, np.ndarray], value: bool) -> Dataset:
    """`ds` with a boolean 'synthetic' column (kept if present, else filled with `value`)."""
    out = dict(ds)
    if "synthetic" not in out:
        out["synthetic"] = np.full(batching.num_rows(ds), value, dtype=bool)
    return out


def _check_dataset(ds: Mapping[str, np.ndarray], name: str) -> int:
    if "label" not in ds:
        raise ValueError(f"{name} has no 'label' key (keys: {sorted(ds)})")
    if not input_keys(ds):
        raise ValueError(f"{name} has no input keys besides 'label'/'synthetic'")
    return batching.num_rows(ds)


# ------------------------------------------------------------------------- honesty guard


def split_dev(n: int, agora_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic disjoint split of dev indices 0..n-1 into (agora_idx, heldout_idx).

    A fixed permutation of range(n) (numpy PCG64 seeded by `seed`); the first
    round(agora_fraction * n) entries form the agora split. Both outputs are sorted and
    together cover range(n). `run_agora` gets only the agora split; report the held-out one.
    """
    if n < 2:
        raise ValueError(f"split_dev needs n >= 2, got {n}")
    if not 0.0 < agora_fraction < 1.0:
        raise ValueError(f"agora_fraction must be in (0, 1), got {agora_fraction}")
    n_agora = min(max(int(round(agora_fraction * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_agora]), np.sort(perm[n_agora:])


def assert_disjoint(agora_idx: Sequence[int], heldout_idx: Sequence[int]) -> None:
    """Raise AssertionError if the two index sets share an element (or contain repeats)."""
    a, h = np.asarray(agora_idx).ravel(), np.asarray(heldout_idx).ravel()
    for name, x in (("agora", a), ("held-out", h)):
        if len(np.unique(x)) != len(x):
            raise AssertionError(f"the {name} split repeats indices")
    shared = np.intersect1d(a, h)
    if shared.size:
        raise AssertionError(
            f"agora and held-out splits share {shared.size} indices, e.g. {shared[:5].tolist()}"
        )


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


def _sample_point(
    key: Array,
    center: Array,
    center_input: Inputs,
    perturb_mask: Array,
    radius: Array,
    labeler_fn: Callable,
    decode_fn: Callable,
    k: int,
    distribution: str,
    atom_ndim: int,
) -> tuple[Array, Inputs, Array]:
    """One centre [*S] -> (samples [k, *S], decoded inputs [k, ...], labels [k])."""
    delta = perturbation(key, (k,) + center.shape, atom_ndim, distribution, radius)
    mask = perturb_mask.astype(delta.dtype).reshape(perturb_mask.shape + (1,) * atom_ndim)
    samples = center[None].astype(jnp.float32) + delta * mask[None]
    inputs = decode_fn(samples, center_input)
    labels = jnp.asarray(labeler_fn(inputs)).astype(jnp.int32)
    return samples, inputs, labels


@functools.partial(jax.jit, static_argnames=("k", "distribution", "atom_ndim"))
def _sample_and_relabel_jit(
    rng,
    centers,
    center_inputs,
    perturb_mask,
    index_offset,
    radius,
    labeler_fn,
    decode_fn,
    *,
    k,
    distribution,
    atom_ndim,
):
    index = index_offset + jnp.arange(centers.shape[0], dtype=jnp.int32)
    keys = jax.vmap(point_key, in_axes=(None, 0))(rng, index)
    one = functools.partial(
        _sample_point,
        labeler_fn=labeler_fn,
        decode_fn=decode_fn,
        k=k,
        distribution=distribution,
        atom_ndim=atom_ndim,
    )
    return jax.vmap(one, in_axes=(0, 0, 0, 0, None))(
        keys, centers, center_inputs, perturb_mask, radius
    )


def _as_partial(fn: Callable) -> Partial:
    """Pass functions to jit as pytrees: arrays bound in a `Partial` are traced, not baked."""
    return fn if isinstance(fn, Partial) else Partial(fn)


def sample_and_relabel(
    rng: Array,
    centers: Array,
    labeler_fn: Callable,
    decode_fn: Callable,
    cfg: AgoraConfig,
    *,
    radius: Optional[float] = None,
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
        cfg: uses samples_per_error (k), distribution, atom_ndim.
        radius: absolute radius r (default: cfg.radius read as absolute).
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
    r = jnp.asarray(cfg.radius if radius is None else radius, jnp.float32)
    return _sample_and_relabel_jit(
        rng,
        centers,
        dict(center_inputs or {}),
        perturb_mask,
        jnp.asarray(index_offset, jnp.int32),
        r,
        _as_partial(labeler_fn),
        _as_partial(decode_fn),
        k=cfg.samples_per_error,
        distribution=cfg.distribution,
        atom_ndim=cfg.atom_ndim,
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
    e.g. masked-LM resampling or span replacement (`bort_jax.agora_text`). Deterministic in
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
        _as_partial(labeler_fn),
        _as_partial(sample_fn),
    )


# --------------------------------------------------------------- decode / label helpers


def _identity_decode(samples: Array, center_input: Inputs, *, key: str) -> dict:
    return {key: samples}


@functools.lru_cache(maxsize=None)
def identity_decode(key: str = "x") -> Callable:
    """decode_fn for continuous inputs: samples [k, *S] -> {key: samples}."""
    return functools.partial(_identity_decode, key=key)


def _nearest_rows(
    queries: Array, table: Array, candidate_mask: Array, block: Optional[int]
) -> Array:
    """argmax_v (2 q . T_v - ||T_v||^2) over allowed rows; queries [N, E] -> ids [N].

    With `block`, the vocabulary is scanned in blocks of that many rows keeping a running
    best (memory [N, block] instead of [N, V]); ties resolve to the lowest id either way.
    """
    v, e = table.shape
    if block is None or block >= v:
        scores = 2.0 * queries @ table.T - jnp.sum(table * table, axis=-1)
        return jnp.argmax(jnp.where(candidate_mask, scores, -jnp.inf), -1).astype(jnp.int32)
    nb = -(-v // block)
    table = jnp.pad(table, ((0, nb * block - v), (0, 0)))
    allowed = jnp.pad(candidate_mask, (0, nb * block - v))

    def body(carry, b):
        best, best_id = carry
        rows = jax.lax.dynamic_slice(table, (b * block, 0), (block, e))
        ok = jax.lax.dynamic_slice(allowed, (b * block,), (block,))
        scores = jnp.where(ok, 2.0 * queries @ rows.T - jnp.sum(rows * rows, axis=-1), -jnp.inf)
        j = jnp.argmax(scores, -1)
        top = jnp.take_along_axis(scores, j[:, None], -1)[:, 0]
        better = top > best
        return (
            jnp.where(better, top, best),
            jnp.where(better, b * block + j, best_id).astype(jnp.int32),
        ), None

    init = (
        jnp.full(queries.shape[0], -jnp.inf, jnp.float32),
        jnp.zeros(queries.shape[0], jnp.int32),
    )
    (_, ids), _ = jax.lax.scan(body, init, jnp.arange(nb))
    return ids


def nearest_token_decode(
    embedding_table: Array,
    samples: Array,
    keep_mask: Array,
    center_ids: Array,
    candidate_mask: Optional[Array] = None,
    vocab_block: Optional[int] = None,
) -> Array:
    """Map perturbed embeddings to the nearest token; kept positions copy the centre.

        id_l = argmin_{v : candidate_v} ||s_l - T_v||^2 = argmax_v (2 s_l . T_v - ||T_v||^2)
        out_l = center_ids_l if keep_mask_l else id_l

    Args:
        embedding_table: T [V, E].
        samples: [..., L, E].
        keep_mask: bool, broadcastable to [..., L]; True = keep the centre's id (special
            tokens, padding).
        center_ids: int, broadcastable to [..., L].
        candidate_mask: optional bool [V]; False = never emitted at a perturbed position
            (e.g. <pad>, <mask>, <s>, </s>).
        vocab_block: scan the vocabulary in blocks of this many rows (memory
            [prod(...) L, vocab_block] instead of [prod(...) L, V]); None = all at once.

    Returns:
        ids [..., L] int32.
    """
    table = jnp.asarray(embedding_table, jnp.float32)
    allowed = (
        jnp.ones(table.shape[0], bool)
        if candidate_mask is None
        else jnp.asarray(candidate_mask, bool)
    )
    flat = samples.astype(jnp.float32).reshape(-1, samples.shape[-1])
    ids = _nearest_rows(flat, table, allowed, vocab_block).reshape(samples.shape[:-1])
    return jnp.where(keep_mask, jnp.asarray(center_ids, jnp.int32), ids)


def special_or_pad_mask(input_ids: Array, attention_mask: Array, special_ids: Array) -> Array:
    """True where a token must not change: padding (attention_mask == 0) or a special id."""
    special = jnp.any(input_ids[..., None] == jnp.asarray(special_ids)[None], axis=-1)
    return special | (attention_mask == 0)


def _text_decode(
    embedding_table: Array,
    special_ids: Array,
    candidate_mask: Array,
    samples: Array,
    center_input: Inputs,
    *,
    vocab_block: Optional[int],
) -> dict:
    ids = center_input["input_ids"]
    keep = special_or_pad_mask(ids, center_input["attention_mask"], special_ids)
    new = nearest_token_decode(embedding_table, samples, keep, ids, candidate_mask, vocab_block)
    k = samples.shape[0]
    out = {name: jnp.broadcast_to(v, (k,) + v.shape) for name, v in center_input.items()}
    out["input_ids"] = new.astype(ids.dtype)
    return out


@functools.lru_cache(maxsize=None)
def _text_decoder(vocab_block: Optional[int]) -> Callable:
    return functools.partial(_text_decode, vocab_block=vocab_block)


def text_decode_fn(
    embedding_table: Array,
    special_ids: Sequence[int],
    candidate_mask: Optional[Array] = None,
    vocab_block: Optional[int] = 8192,
) -> Partial:
    """decode_fn for token sequences: samples [k, L, E] -> centre's inputs with new ids.

    Every centre input key (attention_mask, token_type_ids, ...) is copied unchanged; only
    non-special, non-pad positions of 'input_ids' are re-decoded (`nearest_token_decode`).
    Special ids are also excluded as candidates unless `candidate_mask` says otherwise.
    Under `sample_and_relabel` one chunk needs chunk * k * L * vocab_block * 4 bytes of scores.
    """
    table = jnp.asarray(embedding_table, jnp.float32)
    special = jnp.asarray(np.asarray(special_ids, dtype=np.int32).reshape(-1))
    if candidate_mask is None:
        candidate_mask = jnp.ones(table.shape[0], bool).at[special].set(False)
    return Partial(_text_decoder(vocab_block), table, special, jnp.asarray(candidate_mask, bool))


def token_embedding_represent(embedding_table: np.ndarray) -> Callable[[Inputs], np.ndarray]:
    """represent_fn for text: inputs -> T[input_ids], [n, L, E] float32."""
    table = np.asarray(embedding_table, dtype=np.float32)
    return lambda inputs: table[np.asarray(inputs["input_ids"])]


def text_perturb_mask(special_ids: Sequence[int]) -> Callable[[Inputs], np.ndarray]:
    """perturb_mask_fn for text: inputs -> bool [n, L], False on special tokens and padding."""
    special = np.asarray(special_ids, dtype=np.int64).reshape(-1)

    def fn(inputs: Inputs) -> np.ndarray:
        ids = np.asarray(inputs["input_ids"])
        return ~(np.isin(ids, special) | (np.asarray(inputs["attention_mask"]) == 0))

    return fn


def _constant_label(inputs: Inputs) -> Array:
    return jnp.zeros(inputs["input_ids"].shape[0], jnp.int32)


def token_change_rate(
    rng: Array,
    embedding_table: np.ndarray,
    inputs: Inputs,
    special_ids: Sequence[int],
    radius: float,
    cfg: AgoraConfig,
    vocab_block: Optional[int] = 8192,
) -> float:
    """Share of perturbable tokens whose nearest-token decoding differs from the centre.

    A perturbation delta (norm r) moves token t closer to t' (distance d) iff
    d < 2 r cos(delta, t' - t). For random directions in E dimensions the largest cosine
    over V tokens is about sqrt(2 ln V / E), so tokens start to change only once
    r > d sqrt(E / (8 ln V)) (about 3.4 d for E = 1024, V = 50265) and the rate then rises
    steeply to near-random replacements. The rate, not r, is the interpretable knob for text
    (compare BERT's 15 % masking); see `radius_for_change_rate`.
    inputs: dict with 'input_ids', 'attention_mask' ([n, L]); uses cfg's k, distribution.
    """
    ids = np.asarray(inputs["input_ids"])
    mask = text_perturb_mask(special_ids)(inputs)
    _, out, _ = sample_and_relabel(
        rng,
        np.asarray(embedding_table, np.float32)[ids],
        _constant_label,
        text_decode_fn(embedding_table, special_ids, vocab_block=vocab_block),
        cfg,
        radius=radius,
        center_inputs=dict(inputs),
        perturb_mask=mask,
    )
    changed = np.asarray(out["input_ids"]) != ids[:, None]
    frozen = np.broadcast_to(mask[:, None], changed.shape)
    return float(changed[frozen].mean()) if frozen.any() else 0.0


def radius_for_change_rate(
    rng: Array,
    embedding_table: np.ndarray,
    inputs: Inputs,
    special_ids: Sequence[int],
    target: float,
    cfg: AgoraConfig,
    iters: int = 16,
    vocab_block: Optional[int] = 8192,
) -> float:
    """Absolute radius r with token_change_rate(r) ~= target, by bisection in log r.

    Brackets from the mean nearest-neighbour distance of the table rows used by `inputs`,
    doubling / halving until the target is bracketed. The same rng is used at every r,
    so the rate is a deterministic, nearly monotone function of r.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target change rate must be in (0, 1), got {target}")
    mask = text_perturb_mask(special_ids)(inputs)
    atoms = reference_atoms(
        np.asarray(embedding_table, np.float32)[np.asarray(inputs["input_ids"])],
        1,
        mask,
        cfg.nn_max_points,
        cfg.seed,
    )
    rate = functools.partial(
        token_change_rate,
        rng,
        embedding_table,
        inputs,
        special_ids,
        cfg=cfg,
        vocab_block=vocab_block,
    )
    lo = hi = mean_nn_distance(atoms)
    above = rate(radius=hi) >= target
    for _ in range(40):  # bracket: rate(lo) < target <= rate(hi)
        if above:
            lo = lo / 2.0
            if rate(radius=lo) < target:
                break
            hi = lo
        else:
            hi = hi * 2.0
            if rate(radius=hi) >= target:
                break
            lo = hi
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if rate(radius=mid) >= target else (mid, hi)
    return float(math.sqrt(lo * hi))


def _argmax_labeler(logits_fn: Callable, params: Any, inputs: Inputs) -> Array:
    return jnp.argmax(logits_fn(params, inputs), axis=-1)


@functools.lru_cache(maxsize=None)
def _argmax_of(logits_fn: Callable) -> Callable:
    return functools.partial(_argmax_labeler, logits_fn)


def argmax_labeler(logits_fn: Callable[[Any, Inputs], Array], params: Any) -> Partial:
    """labeler_fn = argmax_c logits_fn(params, inputs)[..., c]; params are traced under jit."""
    return Partial(_argmax_of(logits_fn), params)


# ---------------------------------------------------------------------------- the loop


def _padded_size(n: int, cap: int) -> int:
    """Smallest power of two >= n, capped at `cap` (bounds the number of compiled shapes)."""
    return min(cap, 1 << max(n - 1, 0).bit_length())


def generate(
    rng: Array,
    centers: Mapping[str, np.ndarray],
    represent_fn: Callable,
    decode_fn: Callable,
    labeler_fn: Callable,
    cfg: AgoraConfig,
    radius: float,
    perturb_mask_fn: Optional[Callable] = None,
    sample_fn: Optional[Callable] = None,
) -> tuple[Dataset, float]:
    """Synthetic rows around the rows of `centers` (a data set), and labeler agreement.

    Represents and samples chunks of at most cfg.chunk_size centres (a short chunk is padded
    to a power of two so few shapes compile; padded rows are discarded). Returns the flattened
    synthetic data set (n * k rows, 'synthetic' = True) and the share of synthetic labels
    that equal their centre's gold label. With `sample_fn` (see `resample_and_relabel`) the
    inputs are resampled directly and represent_fn, decode_fn, radius, perturb_mask_fn are
    unused; sample_fn must draw cfg.samples_per_error samples per centre.
    """
    inputs = inputs_of(centers)
    n, k = batching.num_rows(centers), cfg.samples_per_error
    parts: list[tuple[dict, np.ndarray]] = []
    for start in range(0, n, cfg.chunk_size):
        stop = min(start + cfg.chunk_size, n)
        idx = np.minimum(
            np.arange(start, start + _padded_size(stop - start, cfg.chunk_size)), n - 1
        )
        chunk = {key: v[idx] for key, v in inputs.items()}
        if sample_fn is not None:
            out, labels = resample_and_relabel(
                rng, chunk, labeler_fn, sample_fn, index_offset=start
            )
        else:
            mask = None if perturb_mask_fn is None else np.asarray(perturb_mask_fn(chunk), bool)
            _, out, labels = sample_and_relabel(
                rng,
                np.asarray(represent_fn(chunk), np.float32),
                labeler_fn,
                decode_fn,
                cfg,
                radius=radius,
                center_inputs=chunk,
                perturb_mask=mask,
                index_offset=start,
            )
        out, labels = jax.device_get((out, labels))
        if np.shape(labels) != (len(idx), k):
            raise ValueError(
                f"sampler produced labels of shape {np.shape(labels)}, expected "
                f"{(len(idx), k)} (samples_per_error={k})"
            )
        keep = stop - start
        parts.append(
            ({key: np.asarray(v)[:keep] for key, v in out.items()}, np.asarray(labels)[:keep])
        )
    missing = set(inputs) - set(parts[0][0]) if parts else set()
    if missing:
        raise ValueError(f"decode_fn did not produce input keys {sorted(missing)}")
    synth = {
        key: np.concatenate([p[0][key] for p in parts])
        .reshape((n * k,) + np.shape(parts[0][0][key])[2:])
        .astype(inputs[key].dtype)
        for key in inputs
    }
    labels = np.concatenate([p[1] for p in parts])  # [n, k]
    gold = np.asarray(centers["label"])
    agreement = float(np.mean(labels == gold[:, None]))
    synth["label"] = labels.reshape(-1).astype(gold.dtype)
    synth["synthetic"] = np.ones(n * k, dtype=bool)
    return synth, agreement


def _subset(ds: Dataset, size: int, rng: np.random.Generator) -> Dataset:
    """A uniformly random subset of `size` rows, in original order."""
    n = batching.num_rows(ds)
    if size >= n:
        return ds
    return batching.take(ds, np.sort(rng.choice(n, size, replace=False)))


def replay(old: Optional[Dataset], new: Dataset, cfg: AgoraConfig, round_: int) -> Dataset:
    """Next synthetic pool: a `replay_fraction` subset of `old`, then `new`, capped.

    With cap M = max_synthetic: if |new| >= M, a random M-subset of `new`; otherwise all of
    `new` plus at most M - |new| replayed old points. Deterministic in (cfg.seed, round_).
    """
    rng = np.random.default_rng([cfg.seed, round_])
    kept = None
    if old is not None and batching.num_rows(old):
        kept = _subset(old, int(round(cfg.replay_fraction * batching.num_rows(old))), rng)
    cap = cfg.max_synthetic
    if cap is not None:
        if batching.num_rows(new) >= cap:
            return _subset(new, cap, rng)
        if kept is not None:
            kept = _subset(kept, cap - batching.num_rows(new), rng)
    if kept is not None and batching.num_rows(kept) == 0:
        kept = None
    return batching.concat(kept, new)


def _training_radius(
    train_set: Dataset,
    represent_fn: Callable,
    cfg: AgoraConfig,
    perturb_mask_fn: Optional[Callable],
) -> float:
    """Absolute radius from (a seeded subsample of at most nn_max_points) training rows."""
    if cfg.radius_mode == "absolute":
        return float(cfg.radius)
    rows = _subset(train_set, cfg.nn_max_points, np.random.default_rng(cfg.seed))
    inputs = inputs_of(rows)
    mask = None if perturb_mask_fn is None else perturb_mask_fn(inputs)
    atoms = reference_atoms(
        np.asarray(represent_fn(inputs)), cfg.atom_ndim, mask, cfg.nn_max_points, cfg.seed
    )
    return resolve_radius(cfg, atoms)


def run_agora(
    train_set: Mapping[str, np.ndarray],
    agora_dev_set: Mapping[str, np.ndarray],
    fit_fn: Callable[[Dataset, int, Array], Any],
    predict_fn: Callable[[Any, Inputs], np.ndarray],
    represent_fn: Callable[[Inputs], np.ndarray],
    decode_fn: Callable,
    labeler_fn: Callable,
    cfg: AgoraConfig,
    *,
    metric_fn: Callable[[np.ndarray, np.ndarray], float] = accuracy,
    perturb_mask_fn: Optional[Callable[[Inputs], np.ndarray]] = None,
    error_fn: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
    callback: Optional[Callable[[int, Any, Dataset, dict], None]] = None,
    sample_fn: Optional[Callable] = None,
) -> AgoraResult:
    """Agora rounds: fit -> predict agora-dev -> errors -> sample + relabel -> replay -> refit.

    Round 0 fits `train_set` alone (plain training). Each later round r fits
    D_r = D_real U S_r, where S_r = replay(S_{r-1}, generate(errors of round r-1)).
    Stops after cfg.rounds Agora rounds, when the agora-dev set has no errors, or when the
    metric has not improved (strictly) for cfg.patience rounds. Never sees held-out data:
    pass only the agora split of `split_dev`.

    Args:
        train_set: real training rows (dict of [N, ...] numpy arrays with 'label').
        agora_dev_set: the agora split of the dev set, same keys.
        fit_fn: `(train_set, round, rng) -> model_state`; implement it with
            `bort_jax.train.train`. train_set carries the bool 'synthetic' column.
        predict_fn: `(model_state, inputs) -> labels [n]`.
        represent_fn: `inputs -> representations [n, *S]`.
        decode_fn, labeler_fn: see `sample_and_relabel`.
        cfg: an AgoraConfig.
        metric_fn: `(predictions, labels) -> float`, larger is better (default accuracy).
        perturb_mask_fn: `inputs -> bool [n, *S[:-atom_ndim]]` (False = frozen atom).
        error_fn: `(predictions, labels) -> bool [n]`, the points to sample around
            (default predictions != labels; e.g. |p - y| > tol for regression).
        callback: `(round, model_state, train_set, record) -> None` after every round.
        sample_fn: resample the inputs directly instead (`resample_and_relabel`, e.g.
            `agora_text.masked_lm_sampler`); represent_fn and decode_fn may then be None and
            the recorded radius is NaN.

    Returns:
        AgoraResult. history records: round, train_size, n_real, n_synthetic,
        agora_dev_metric, n_errors, n_new (synthetic points generated after this round),
        labeler_agreement (share of new labels equal to the centre's gold label), radius,
        is_best.
    """
    _check_dataset(train_set, "train_set")
    _check_dataset(agora_dev_set, "agora_dev_set")
    real = with_synthetic_flag(train_set, False)
    dev_inputs, dev_labels = inputs_of(agora_dev_set), np.asarray(agora_dev_set["label"])
    radius = (
        float("nan")
        if sample_fn is not None
        else _training_radius(real, represent_fn, cfg, perturb_mask_fn)
    )
    key = jax.random.PRNGKey(cfg.seed)
    synthetic: Optional[Dataset] = None
    history: list[dict] = []
    best_state, best_round, best_metric, stale = None, -1, -math.inf, 0
    current = real
    for r in range(cfg.rounds + 1):
        current = batching.concat(real, synthetic)
        state = fit_fn(current, r, jax.random.fold_in(jax.random.fold_in(key, 0), r))
        preds = np.asarray(predict_fn(state, dev_inputs)).reshape(-1)
        metric = float(metric_fn(preds, dev_labels))
        wrong = np.flatnonzero(
            preds != dev_labels
            if error_fn is None
            else np.asarray(error_fn(preds, dev_labels), bool)
        )
        improved = metric > best_metric
        if improved:
            best_state, best_round, best_metric, stale = state, r, metric, 0
        else:
            stale += 1
        n_syn = 0 if synthetic is None else batching.num_rows(synthetic)
        record = dict(
            round=r,
            train_size=batching.num_rows(current),
            n_real=batching.num_rows(real),
            n_synthetic=n_syn,
            agora_dev_metric=metric,
            n_errors=int(wrong.size),
            n_new=0,
            labeler_agreement=float("nan"),
            radius=radius,
            is_best=improved,
        )
        done = r == cfg.rounds or wrong.size == 0 or (cfg.patience > 0 and stale >= cfg.patience)
        if not done:
            rng = jax.random.fold_in(jax.random.fold_in(key, 1), r)
            new, agreement = generate(
                rng,
                batching.take(agora_dev_set, wrong),
                represent_fn,
                decode_fn,
                labeler_fn,
                cfg,
                radius,
                perturb_mask_fn,
                sample_fn,
            )
            record.update(n_new=batching.num_rows(new), labeler_agreement=agreement)
            synthetic = replay(synthetic, new, cfg, r)
        history.append(record)
        if callback is not None:
            callback(r, state, current, record)
        if done:
            break
    return AgoraResult(best_state, best_round, best_metric, history, current, radius)
