"""Measured inference cost i(ξ): forward latency of an architecture on this device.

`forward_latency`: jit once per shape, compile excluded (one warm-up call), results blocked on,
median of `repeats` timed calls. Random weights: latency does not depend on their values.

`LatencyModel` (below): a few shapes measured once, a non-negative linear model of their
latency in analytic costs fitted to them, and i(ξ) = its prediction — reproducible where raw
measurements follow machine noise (bort_jax/extract.py explains the choice and its cost).
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Median/min/mean wall time of `fn()` (blocked on its result) over `repeats` runs."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "mean_s": statistics.fmean(times),
        "all": times,
    }


def compiled_forward(
    arch: Arch, spec: Spec, batch: int, seq_len: int, dtype: Any = jnp.float32, seed: int = 0
) -> tuple[Callable[[], jax.Array], float]:
    """(zero-argument compiled forward pass of a randomly initialised `arch`, compile seconds)."""
    model = Bert(arch, spec, dtype=dtype, param_dtype=dtype)
    params = jax.jit(lambda r: init_params(model, r))(jax.random.PRNGKey(seed))
    ids = jnp.asarray(
        np.random.default_rng(seed).integers(0, spec.vocab_size, (batch, seq_len)), jnp.int32
    )
    mask = jnp.ones_like(ids)
    fwd = jax.jit(lambda p, x, m: model.apply({"params": p}, x, m)["last_hidden_state"])
    t0 = time.perf_counter()
    compiled = fwd.lower(params, ids, mask).compile()
    return (lambda: compiled(params, ids, mask)), time.perf_counter() - t0


def forward_latency(
    arch: Arch,
    spec: Spec,
    batch: int = 1,
    seq_len: int = 128,
    dtype: Any = jnp.float32,
    repeats: int = 5,
) -> float:
    """Median seconds of one forward pass of `batch` × `seq_len` tokens."""
    call, _ = compiled_forward(arch, spec, batch, seq_len, dtype)
    return time_call(call, repeats)["median_s"]


# ----------------------------------------------------------------------------- latency model
#
# A measured latency is a noisy number: on a shared machine two measurements of the same shape
# differ by tens of percent, so a search whose i(ξ) is measured per candidate visits different
# candidates on every run. `LatencyModel` measures a few calibration shapes once, fits
#     t(ξ) ≈ Σ_f c_f · x_f(ξ),   c_f ≥ 0,
# over the analytic features x below by least squares on the relative error, and predicts
# i(ξ) = t(ξ) for every candidate: a pure function of ξ and of the stored coefficients, so
# every search that reuses the stored model sees exactly the same i.

FEATURES = ("call", "layer", "matmul_flops", "softmax_elements", "weight_bytes")
MODEL_VERSION = 1


def features(arch: Arch, spec: Spec, batch: int, seq_len: int) -> dict[str, float]:
    """The analytic costs the latency model is linear in, for one forward pass.

    call: 1 (fixed dispatch cost); layer: depth (per-layer op overheads); matmul_flops:
    `arch.flops`; softmax_elements: B·D·A·L² attention probabilities (the elementwise work
    that grows with heads and L²); weight_bytes: float32 bytes of the encoder weights, read
    once per call.
    """
    from bort_jax import arch as A

    return {
        "call": 1.0,
        "layer": float(arch.depth),
        "matmul_flops": float(A.flops(arch, seq_len, batch, spec=spec)),
        "softmax_elements": float(batch * arch.depth * arch.heads * seq_len * seq_len),
        "weight_bytes": 4.0 * A.encoder_params(arch),
    }


def _nnls(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """min ‖x c − y‖ subject to c ≥ 0, exactly, by trying every support (few features).

    The optimum is the unconstrained least-squares fit on its own support, so the best
    feasible support fit is the optimum. Deterministic; ties go to the smaller support.
    """
    n = x.shape[1]
    best, best_res = np.zeros(n), float(np.sum(y * y))
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            cols = list(support)
            coef, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
            if np.any(coef < 0):
                continue
            full = np.zeros(n)
            full[cols] = coef
            res = float(np.sum((x @ full - y) ** 2))
            if res < best_res * (1 - 1e-12):
                best, best_res = full, res
    return best


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """i(ξ) = Σ_f coefficients[f] · features(ξ)[f] seconds, fitted to measured calibration shapes.

    `calibration` records, per calibration shape, (repr, measured s, fitted s); `settings` the
    measurement settings (batch, seq_len, repeats, dtype, device) the model is valid for.
    """

    coefficients: dict[str, float]
    settings: dict[str, Any]
    calibration: tuple[tuple[str, float, float], ...] = ()
    version: int = MODEL_VERSION

    def predict(self, arch: Arch, spec: Spec) -> float:
        x = features(arch, spec, self.settings["batch"], self.settings["seq_len"])
        return float(sum(self.coefficients[f] * x[f] for f in self.coefficients))

    def relative_errors(self) -> list[float]:
        """|fitted − measured| / measured on the calibration shapes (in-sample)."""
        return [abs(fit - t) / t for _, t, fit in self.calibration]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "coefficients": dict(self.coefficients),
            "settings": dict(self.settings),
            "calibration": [list(c) for c in self.calibration],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LatencyModel":
        if data.get("version") != MODEL_VERSION:
            raise ValueError(f"latency model version {data.get('version')} != {MODEL_VERSION}")
        return cls(
            {str(k): float(v) for k, v in data["coefficients"].items()},
            dict(data["settings"]),
            tuple((str(r), float(t), float(f)) for r, t, f in data["calibration"]),
        )


def fit(
    measured: Sequence[tuple[Arch, float]],
    spec: Spec,
    settings: dict[str, Any],
    names: Sequence[str] = FEATURES,
) -> LatencyModel:
    """Non-negative least squares of the measured seconds on `features`, relative error.

    Rows are divided by the measured time, so a 0.5 ms and a 50 ms shape weigh the same;
    features are scaled to unit maximum for conditioning (undone in the coefficients).
    """
    if len(measured) < 2:
        raise ValueError(f"a latency model needs >= 2 calibration shapes, got {len(measured)}")
    rows = [features(a, spec, settings["batch"], settings["seq_len"]) for a, _ in measured]
    x = np.array([[r[f] for f in names] for r in rows], np.float64)
    t = np.array([s for _, s in measured], np.float64)
    if np.any(t <= 0):
        raise ValueError(f"measured latencies must be positive, got {t.tolist()}")
    scale = np.maximum(np.abs(x).max(0), 1e-300)
    coef = _nnls(x / scale / t[:, None], np.ones_like(t)) / scale
    model = LatencyModel({f: float(c) for f, c in zip(names, coef)}, dict(settings))
    calib = tuple((repr(a), float(s), model.predict(a, spec)) for a, s in measured)
    if any(f <= 0 for _, _, f in calib):
        raise ValueError(
            "the fitted latency model predicts a non-positive time; use more calibration shapes"
        )
    return dataclasses.replace(model, calibration=calib)


def calibration_shapes(
    candidates: Sequence[Arch], spec: Spec, seq_len: int, count: int
) -> list[Arch]:
    """`count` candidates spread evenly over the range of matmul FLOPs (both ends included).

    Deterministic: sorted by (FLOPs, depth, heads, hidden, intermediate).
    """
    from bort_jax import arch as A

    ranked = sorted(
        set(candidates),
        key=lambda a: (A.flops(a, seq_len, spec=spec), a.depth, a.heads, a.hidden, a.intermediate),
    )
    if count >= len(ranked):
        return ranked
    picks = sorted({round(j * (len(ranked) - 1) / (count - 1)) for j in range(count)})
    return [ranked[j] for j in picks]


def device_name() -> str:
    """The default device, e.g. 'cpu:cpu' or 'gpu:NVIDIA H200' (a calibration is per device)."""
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def calibrate(
    shapes: Sequence[Arch],
    spec: Spec,
    batch: int,
    seq_len: int,
    repeats: int,
    dtype: Any = jnp.float32,
) -> LatencyModel:
    """Measure `forward_latency` (median of `repeats`) of each shape and `fit` the model."""
    settings = {
        "batch": batch,
        "seq_len": seq_len,
        "repeats": repeats,
        "dtype": jnp.dtype(dtype).name,
        "device": device_name(),
        "vocab_size": spec.vocab_size,
        "points": len(shapes),
    }
    measured = [(a, forward_latency(a, spec, batch, seq_len, dtype, repeats)) for a in shapes]
    return fit(measured, spec, settings)
