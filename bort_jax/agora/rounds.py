"""Agora's rounds: fit -> errors on the agora split -> sample + relabel -> replay -> refit.

    D_0 = D_real;   f_r = fit(D_r);   E_r = {x in agora-dev : f_r(x) != y};
    S_{r+1} = replay(S_r, sample_and_relabel(E_r));   D_{r+1} = D_real U S_{r+1},

stopping after `cfg.rounds` Agora rounds, when E_r is empty, or when the agora-dev metric has
not improved for `cfg.patience` rounds; the model with the best agora-dev metric is returned.
Replay keeps a `replay_fraction` share of the earlier synthetic points (1 = accumulate all,
0 = newest round only); `max_synthetic` caps the pool, newest points first.

The caller supplies the model (`Learner`: fit, predict, metric, which points are errors) and
how points are generated (`Generator`: labeler plus either a representation space with
decoding, `bort_jax.agora.sampling`, or a direct sampler of inputs, `bort_jax.agora.text`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np

from bort_jax.agora.config import AgoraConfig
from bort_jax.agora.datasets import (
    Dataset,
    Inputs,
    check_dataset,
    inputs_of,
    random_subset,
    with_synthetic_flag,
)
from bort_jax.agora.sampling import resample_and_relabel, sample_and_relabel, training_radius
from bort_jax.data import batching
from bort_jax.tasks.metrics import accuracy, is_better

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Learner:
    """The candidate model f of `run_agora`.

    Attributes:
        fit_fn: `(train_set, round, rng) -> model_state`; implement it with
            `bort_jax.train.train`. train_set carries the bool 'synthetic' column.
        predict_fn: `(model_state, inputs) -> labels [n]`.
        metric_fn: `(predictions, labels) -> float`, larger is better (default accuracy).
        error_fn: `(predictions, labels) -> bool [n]`, the points to sample around
            (None: predictions != labels; e.g. |p - y| > tol for regression).
    """

    fit_fn: Callable[[Dataset, int, Array], Any]
    predict_fn: Callable[[Any, Inputs], np.ndarray]
    metric_fn: Callable[[np.ndarray, np.ndarray], float] = accuracy
    error_fn: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None

    def errors(self, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Indices [e] of the misclassified rows."""
        if self.error_fn is None:
            return np.flatnonzero(preds != labels)
        return np.flatnonzero(np.asarray(self.error_fn(preds, labels), bool))


@dataclasses.dataclass(frozen=True)
class Generator:
    """How synthetic points are made around an error, and who labels them.

    Either a representation space (`sampling.sample_and_relabel`): represent_fn
    `inputs -> [n, *S]`, decode_fn `(samples [k, *S], centre input) -> inputs [k, ...]`,
    perturb_mask_fn `inputs -> bool [n, *S[:-atom_ndim]]` (False = frozen atom, optional);
    or a direct sampler (`sampling.resample_and_relabel`): sample_fn `(key, centre input) ->
    inputs [k, ...]` (e.g. `text.masked_lm_sampler`), which draws cfg.samples_per_error
    samples per centre and makes the other three unused.

    Attributes:
        labeler_fn: `inputs (dict of [k, ...]) -> labels [k]`, jittable (`Partial` for params).
    """

    labeler_fn: Callable
    represent_fn: Optional[Callable[[Inputs], np.ndarray]] = None
    decode_fn: Optional[Callable] = None
    perturb_mask_fn: Optional[Callable[[Inputs], np.ndarray]] = None
    sample_fn: Optional[Callable] = None

    def __post_init__(self) -> None:
        if self.sample_fn is None and (self.represent_fn is None or self.decode_fn is None):
            raise ValueError("a Generator needs represent_fn and decode_fn, or a sample_fn")


@dataclasses.dataclass
class AgoraResult:
    """What `run_agora` returns.

    Attributes:
        best_state: the model state with the best agora-dev metric.
        best_round: its round (0 = plain training on the original data).
        best_metric: its agora-dev metric.
        history: one record per fitted round (see `run_agora`).
        train_set: the training set of the last fitted round (real + synthetic rows).
        radius: the absolute sampling radius used (NaN with a direct sampler).
    """

    best_state: Any
    best_round: int
    best_metric: float
    history: list[dict]
    train_set: Dataset
    radius: float


def _padded_size(n: int, cap: int) -> int:
    """Smallest power of two >= n, capped at `cap` (bounds the number of compiled shapes)."""
    return min(cap, 1 << max(n - 1, 0).bit_length())


def _sample_chunk(
    rng: Array, chunk: dict, gen: Generator, cfg: AgoraConfig, radius: float, start: int
) -> tuple[dict, Array]:
    """Samples (dict of [c, k, ...]) and labels [c, k] around one chunk of c centres."""
    if gen.sample_fn is not None:
        return resample_and_relabel(rng, chunk, gen.labeler_fn, gen.sample_fn, index_offset=start)
    mask = None if gen.perturb_mask_fn is None else np.asarray(gen.perturb_mask_fn(chunk), bool)
    _, out, labels = sample_and_relabel(
        rng,
        np.asarray(gen.represent_fn(chunk), np.float32),
        gen.labeler_fn,
        gen.decode_fn,
        cfg.with_radius(radius),
        center_inputs=chunk,
        perturb_mask=mask,
        index_offset=start,
    )
    return out, labels


def generate(
    rng: Array, centers: Mapping[str, np.ndarray], gen: Generator, cfg: AgoraConfig, radius: float
) -> tuple[Dataset, float]:
    """Synthetic rows around the n rows of `centers` (a data set), and labeler agreement.

    Samples chunks of at most cfg.chunk_size centres (a short chunk is padded to a power of
    two so few shapes compile; padded rows are discarded). Returns the flattened synthetic
    data set (n * k rows, 'synthetic' = True) and the share of synthetic labels that equal
    their centre's gold label. `radius` is unused with a direct sampler (gen.sample_fn).
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
        out, labels = jax.device_get(_sample_chunk(rng, chunk, gen, cfg, radius, start))
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


def replay(old: Optional[Dataset], new: Dataset, cfg: AgoraConfig, round_: int) -> Dataset:
    """Next synthetic pool: a `replay_fraction` subset of `old`, then `new`, capped.

    With cap M = max_synthetic: if |new| >= M, a random M-subset of `new`; otherwise all of
    `new` plus at most M - |new| replayed old points. Deterministic in (cfg.seed, round_).
    """
    rng = np.random.default_rng([cfg.seed, round_])
    kept = None
    if old is not None and batching.num_rows(old):
        kept = random_subset(old, int(round(cfg.replay_fraction * batching.num_rows(old))), rng)
    cap = cfg.max_synthetic
    if cap is not None:
        if batching.num_rows(new) >= cap:
            return random_subset(new, cap, rng)
        if kept is not None:
            kept = random_subset(kept, cap - batching.num_rows(new), rng)
    if kept is not None and batching.num_rows(kept) == 0:
        kept = None
    return batching.concat(kept, new)


def run_agora(
    train_set: Mapping[str, np.ndarray],
    agora_dev_set: Mapping[str, np.ndarray],
    learner: Learner,
    generator: Generator,
    cfg: AgoraConfig,
    *,
    callback: Optional[Callable[[int, Any, Dataset, dict], None]] = None,
) -> AgoraResult:
    """Agora rounds: fit -> predict agora-dev -> errors -> sample + relabel -> replay -> refit.

    Round 0 fits `train_set` alone (plain training). Each later round r fits
    D_r = D_real U S_r, where S_r = replay(S_{r-1}, generate(errors of round r-1)).
    Stops after cfg.rounds Agora rounds, when the agora-dev set has no errors, or when the
    metric has not improved (strictly) for cfg.patience rounds. Never sees held-out data:
    pass only the agora split of `tasks.loading.split_dev`.

    Args:
        train_set: real training rows (dict of [N, ...] numpy arrays with 'label').
        agora_dev_set: the agora split of the dev set, same keys.
        learner: the model (fit, predict, metric, errors).
        generator: the labeler and the sampler around an error.
        cfg: an AgoraConfig.
        callback: `(round, model_state, train_set, record) -> None` after every round.

    Returns:
        AgoraResult. history records: round, train_size, n_real, n_synthetic,
        agora_dev_metric, n_errors, n_new (synthetic points generated after this round),
        labeler_agreement (share of new labels equal to the centre's gold label), radius,
        is_best.
    """
    check_dataset(train_set, "train_set")
    check_dataset(agora_dev_set, "agora_dev_set")
    real = with_synthetic_flag(train_set, False)
    dev_inputs, dev_labels = inputs_of(agora_dev_set), np.asarray(agora_dev_set["label"])
    radius = (
        float("nan")
        if generator.sample_fn is not None
        else training_radius(real, generator.represent_fn, cfg, generator.perturb_mask_fn)
    )
    key = jax.random.PRNGKey(cfg.seed)
    synthetic: Optional[Dataset] = None
    history: list[dict] = []
    best_state, best_round, best_metric, stale = None, -1, -math.inf, 0
    current = real
    for r in range(cfg.rounds + 1):
        current = batching.concat(real, synthetic)
        state = learner.fit_fn(current, r, jax.random.fold_in(jax.random.fold_in(key, 0), r))
        preds = np.asarray(learner.predict_fn(state, dev_inputs)).reshape(-1)
        metric = float(learner.metric_fn(preds, dev_labels))
        wrong = learner.errors(preds, dev_labels)
        improved = is_better(metric, None if best_round < 0 else best_metric)
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
            centers = batching.take(agora_dev_set, wrong)
            new, agreement = generate(rng, centers, generator, cfg, radius)
            record.update(n_new=batching.num_rows(new), labeler_agreement=agreement)
            synthetic = replay(synthetic, new, cfg, r)
        history.append(record)
        if callback is not None:
            callback(r, state, current, record)
        if done:
            break
    return AgoraResult(best_state, best_round, best_metric, history, current, radius)
