"""Shared helpers for the benchmarks: wall-clock timing, matmul peak, machine description,
flag values. FLOPs of the KD student step are `bort_jax.plan.step_flops`.

Every benchmark is a module run from the repository root, `python -m benchmarks.<name>
--flag=value` (absl flags); it prints its Markdown table and, with `--out`, writes the JSON.

All timings block on the result (`jax.block_until_ready`) and exclude compilation: callers
pass an already compiled function (`jax.jit(f).lower(*args).compile()`), and `time_fn`
additionally runs `warmup` untimed calls before the timed ones.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
import types
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from bort_jax import distill, latency, plan
from bort_jax.arch import Arch, Spec

MINILM = Arch(6, 12, 384, 1536)  # the teacher's shape: all-MiniLM-L6-v2, 30,522-token vocabulary


def flag_values(holders: Iterable[flags.FlagHolder]) -> types.SimpleNamespace:
    """The parsed values of a benchmark's flags as attributes (`args.repeats`), by flag name."""
    return types.SimpleNamespace(**{h.name: h.value for h in holders})


def command_line(module: str) -> str:
    """How this run was started: `[XLA_FLAGS=...] python -m <module> <flags>`."""
    xla = os.environ.get("XLA_FLAGS")
    env = f"XLA_FLAGS={shlex.quote(xla)} " if xla else ""
    return env + " ".join(["python", "-m", module] + [shlex.quote(a) for a in sys.argv[1:]])


def synthetic_kd(
    rows: int,
    seq_len: int,
    positions: int,
    teacher: Arch = MINILM,
    vocab: int = 30522,
    seed: int = 0,
) -> tuple[distill.KDData, dict[str, np.ndarray]]:
    """Random KD data of `rows` rows and its one batch of all rows, `{key: [rows, ...]}` as
    `distill.train_batches` yields it: `bort_jax.plan.synthetic_data` of a `teacher` with a
    `vocab`-token vocabulary, `positions` masked positions per row, hidden-state KD of all
    D_t + 1 teacher states (float16), no logit KD. Speed does not depend on the values."""
    data = plan.synthetic_data(
        rows,
        seq_len,
        positions,
        teacher,
        Spec(vocab_size=vocab),
        tuple(range(teacher.depth + 1)),
        want_logits=False,
        top_k=0,
        temperature=1.0,
        seed=seed,
    )
    return data, distill.train_batches(data, rows, seed)(0)


def time_fn(
    fn: Callable[..., Any], *args: Any, repeats: int = 5, warmup: int = 1
) -> dict[str, Any]:
    """Wall-clock seconds of `fn(*args)`, waiting for the result each time.

    `fn` should be compiled already; the `warmup` calls (at least one) run before timing.
    Returns `bort_jax.latency.time_call`'s {'median_s', 'min_s', 'mean_s', 'all'} over
    `repeats` (>= 5) timed calls plus 'others_busy', the share of the machine's CPU time other
    processes took meanwhile (None where /proc/stat is unavailable).
    """
    if repeats < 5:
        raise ValueError(f"need at least 5 timed repeats for a median, got {repeats}")
    for _ in range(max(1, warmup)):
        jax.block_until_ready(fn(*args))
    meter = BusyMeter()
    timing = latency.time_call(lambda: fn(*args), repeats=repeats, warmup=0)
    timing["others_busy"] = meter.stop()[1]
    return timing


def compile_fn(fn: Callable[..., Any], *args: Any) -> tuple[Callable[..., Any], float]:
    """AOT-compile `jax.jit(fn)` for `args`; returns (compiled, compile seconds)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def matmul_peak(
    dtype: Any = jnp.float32, n: int = 2048, repeats: int = 7, warmup: int = 2
) -> dict[str, Any]:
    """Achieved GFLOP/s of a jitted n×n @ n×n matmul of `dtype` (median of `repeats`).

    This is the practical ceiling that the model's matmul-dominated forward is compared to;
    it is measured in the same process so that thread settings and `XLA_FLAGS` match.
    """
    dtype = jnp.dtype(dtype)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    a = jax.random.normal(keys[0], (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(keys[1], (n, n), jnp.float32).astype(dtype)
    compiled, _ = compile_fn(jnp.matmul, a, b)
    timing = time_fn(compiled, a, b, repeats=repeats, warmup=warmup)
    flop = 2 * n**3
    return {
        "dtype": dtype.name,
        "n": n,
        "gflops": flop / timing["median_s"] / 1e9,
        "gflops_best": flop / timing["min_s"] / 1e9,
        "median_s": timing["median_s"],
        "min_s": timing["min_s"],
        "all": timing["all"],
        "others_busy": timing["others_busy"],
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags(
    wanted: Sequence[str] = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx_vnni", "fma"),
) -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in have]
    except OSError:
        pass
    return []


def load_average() -> list[float] | None:
    """(1, 5, 15)-minute load averages, or None where the OS does not report them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies summed over all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user/nice
    return total - idle, total


class BusyMeter:
    """CPU use of the whole machine, and of other processes, between creation and `stop()`.

    `stop()` returns (busy, others): the fraction of all CPUs' time that was busy, and the
    fraction used by processes other than this one (machine busy time minus this process's
    user+system time). During a timed loop `busy` is near 1.0 by design; `others` shows
    whether the measurement had to share the cores (0.5 on 2 cores = one core lost).
    """

    def __init__(self) -> None:
        self._own = _own_cpu_s()
        self._start = _cpu_times()

    def stop(self) -> tuple[float | None, float | None]:
        end, own = _cpu_times(), _own_cpu_s()
        if self._start is None or end is None or end[1] == self._start[1]:
            return None, None
        ticks = os.sysconf("SC_CLK_TCK")
        total_s = (end[1] - self._start[1]) / ticks
        busy_s = (end[0] - self._start[0]) / ticks
        others = max(0.0, busy_s - (own - self._own)) / total_s
        return busy_s / total_s, min(1.0, others)


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def idle_busy(seconds: float = 0.5) -> float | None:
    """CPU busy fraction of the machine over `seconds` while this process sleeps.

    0.0 = quiet machine; 0.5 on 2 cores = one core taken by another process.
    """
    meter = BusyMeter()
    time.sleep(seconds)
    return meter.stop()[0]


def wait_for_quiet(
    max_busy: float = 0.15, max_wait_s: float = 0.0, sample_s: float = 1.0
) -> float | None:
    """Sleep until `idle_busy() <= max_busy` or `max_wait_s` passed; returns the last reading."""
    deadline = time.monotonic() + max_wait_s
    busy = idle_busy(sample_s)
    while busy is not None and busy > max_busy and time.monotonic() < deadline:
        busy = idle_busy(sample_s)
    return busy


def machine_info() -> dict[str, Any]:
    """CPU model and flags, core counts, library versions, backend and device kind."""
    import flax  # local: only needed for the version string

    device = jax.devices()[0]
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "flax": flax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": load_average(),
    }


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


def write_result(res: dict[str, Any], text: str, out: str | None) -> None:
    """Print the Markdown `text`; with `out`, write `res` there as JSON and `text` beside it
    (same name, .md)."""
    print(text)
    if not out:
        return
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    with open(os.path.splitext(out)[0] + ".md", "w") as f:
        f.write(text + "\n")
