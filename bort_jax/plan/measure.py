"""Measured seconds per proxy step: the real train step of a few candidates, timed on
synthetic rows of the right shapes (a step's cost does not depend on the values)."""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

from bort_jax import arch as A
from bort_jax import distill, hf, precision, proxy

# Largest training step (FLOPs) measured as is, by backend: a few seconds at most.
MEASURE_FLOPS = {"cpu": 2e10, "gpu": 2e13, "tpu": 2e13}


@dataclasses.dataclass(frozen=True)
class TeacherOutputs:
    """The teacher's shapes and what of its outputs the cache stores (hidden layers, top-k)."""

    arch: A.Arch
    spec: A.Spec
    layers: tuple[int, ...]  # stored hidden-state layers (empty: hidden KD off)
    top_k: int  # stored top-k logits per MLM slot (0: full logits or none)


def measure_shapes(cands: list[A.Arch], flops_of) -> list[A.Arch]:
    """Smallest, median and largest candidate by `flops_of` (distinct, in that order)."""
    order = sorted(cands, key=lambda c: (flops_of(c), c))
    picks = [order[0], order[len(order) // 2], order[-1]]
    return list(dict.fromkeys(picks))


def synthetic_data(
    rows: int,
    seq_len: int,
    slots: int,
    t_arch: A.Arch,
    t_spec: A.Spec,
    layers: tuple[int, ...],
    want_logits: bool,
    top_k: int,
    temperature: float,
    seed: int = 0,
) -> distill.KDData:
    """KDData of `rows` random rows with the shapes and dtypes `distill.prepare` produces."""
    rng = np.random.default_rng(seed)
    v = t_spec.vocab_size
    arrays = {
        "input_ids": rng.integers(0, v, (rows, seq_len)).astype(np.int32),
        "attention_mask": np.ones((rows, seq_len), np.int32),
        "token_type_ids": np.zeros((rows, seq_len), np.int32),
        "mlm_positions": np.sort(
            np.stack([rng.permutation(seq_len)[:slots] for _ in range(rows)]), 1
        ).astype(np.int32),
        "mlm_ids": rng.integers(0, v, (rows, slots)).astype(np.int32),
        "mlm_weights": np.ones((rows, slots), np.float32),
    }
    teacher = distill.Teacher(hf.Checkpoint(t_arch, t_spec, {}, {}, "", True), None)
    specs = distill.teacher_output_specs(teacher, arrays, want_logits, layers=layers, top_k=top_k)
    outs = {}
    for k, (shape, dt) in specs.items():
        if k == "topk_ids":  # distinct ids within a row: a random offset + 0..k-1 (mod V)
            offset = rng.integers(0, v, shape[:-1] + (1,))
            outs[k] = ((offset + np.arange(shape[-1])) % v).astype(dt)
        else:
            outs[k] = rng.standard_normal(shape).astype(dt)
    if "rest_logmass" in outs:
        outs["rest_logmass"] = np.full(outs["rest_logmass"].shape, -1.0, np.float32)
    return distill.KDData(
        arrays,
        arrays,
        outs,
        outs,
        t_arch.depth,
        t_arch.hidden,
        v,
        hidden_layers=layers,
        top_k=top_k,
        temperature=temperature if top_k else None,
    )


def time_step(
    arch: A.Arch, data: distill.KDData, spec: A.Spec, pcfg: proxy.ProxyConfig, repeats: int
) -> tuple[float, float]:
    """(median seconds of `repeats` steps, compile seconds) of the real proxy train step."""
    import jax

    from bort_jax import train

    student = distill.build_student(
        arch,
        data,
        spec,
        pcfg.kd,
        seed=pcfg.seed,
        dropout=pcfg.dropout_rate,
        options=pcfg.model,
        dtype=precision.compute_dtype(pcfg.dtype, "proxy.dtype"),
    )
    tx = train.make_optimizer(pcfg.optim, pcfg.num_steps)
    state = train.init_state(jax.tree_util.tree_map(jax.numpy.array, student.params), tx, 0)
    step = train.make_train_step(student.loss_fn, tx)
    batch = jax.device_put(distill.kd_rows(data.train, data.teacher_train))
    t0 = time.perf_counter()
    state, m = step(state, batch)
    jax.block_until_ready(m)
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        state, m = step(state, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    return sec, max(first - sec, 0.0)


def fit_seconds_model(flops: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """(c0, c1) of t(ξ) = c0 + c1·F(ξ), least squares on the measured (F, t) points.

    With one point or a non-positive slope, c0 = 0 and c1 = Σt / ΣF (proportional to FLOPs
    through the mean rate); otherwise c0 is clipped at 0.
    """
    c1 = float(np.polyfit(flops, seconds, 1)[0]) if len(flops) > 1 else 0.0
    if c1 <= 0:  # one point or a noisy slope: proportional to FLOPs through the mean rate
        return 0.0, float(seconds.sum() / flops.sum())
    return max(float(seconds.mean() - c1 * flops.mean()), 0.0), c1
