"""Measured inference cost i(ξ): median forward latency of an architecture on this device.

jit once per shape, compile excluded (one warm-up call), results blocked on, median of
`repeats` timed calls. Random weights: latency does not depend on their values.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

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
    return {"median_s": statistics.median(times), "min_s": min(times),
            "mean_s": statistics.fmean(times), "all": times}


def compiled_forward(arch: Arch, spec: Spec, batch: int, seq_len: int,
                     dtype: Any = jnp.float32, seed: int = 0
                     ) -> tuple[Callable[[], jax.Array], float]:
    """(zero-argument compiled forward pass of a randomly initialised `arch`, compile seconds)."""
    model = Bert(arch, spec, dtype=dtype, param_dtype=dtype)
    params = jax.jit(lambda r: init_params(model, r))(jax.random.PRNGKey(seed))
    ids = jnp.asarray(np.random.default_rng(seed).integers(
        0, spec.vocab_size, (batch, seq_len)), jnp.int32)
    mask = jnp.ones_like(ids)
    fwd = jax.jit(lambda p, x, m: model.apply({"params": p}, x, m)["last_hidden_state"])
    t0 = time.perf_counter()
    compiled = fwd.lower(params, ids, mask).compile()
    return (lambda: compiled(params, ids, mask)), time.perf_counter() - t0


def forward_latency(arch: Arch, spec: Spec, batch: int = 1, seq_len: int = 128,
                    dtype: Any = jnp.float32, repeats: int = 5) -> float:
    """Median seconds of one forward pass of `batch` × `seq_len` tokens."""
    call, _ = compiled_forward(arch, spec, batch, seq_len, dtype)
    return time_call(call, repeats)["median_s"]
