"""What this machine has (free disk, host and device memory), and whether a plan fits it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bort_jax.plan.report import Plan, PlanError, gb


def nearest_existing(path: str | os.PathLike) -> Path:
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return p


def disk_free(path: str | os.PathLike) -> int:
    """Free bytes on the file system that will hold `path` (its nearest existing parent)."""
    return shutil.disk_usage(nearest_existing(path)).free


def host_memory() -> int:
    """Physical host memory in bytes (os.sysconf)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def device_memory() -> int | None:
    """The accelerator's memory limit; None on a CPU backend (device memory = host memory)."""
    import jax

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return None
    stats = dev.memory_stats() or {}
    return stats.get("bytes_limit")


def check_fits(p: Plan, *, disk_free: int, host_mem: int, device_mem: int | None) -> None:
    """PlanError naming what does not fit, and how to shrink it; None when all fits.

    device_mem None = device memory is host memory (CPU): host + device peaks share `host_mem`.
    """
    if p.disk_bytes > disk_free:
        hint = "lower config.max_sequences"
        if "mlm_logits" in p.teacher_cache_bytes:
            k = 128
            small = (
                p.n_sequences * p.max_predictions * k * (2 + 4)
                + p.n_sequences * p.max_predictions * 4
            )
            hint = f"set proxy.kd.top_k (e.g. {k} → {gb(small)}) or " + hint
        raise PlanError(
            f"teacher cache needs {gb(p.teacher_cache_total)} on disk under {p.cache_dir} "
            f"(the run {gb(p.disk_bytes)} in all); {gb(disk_free)} free: {hint}"
        )
    host = p.peak_host_bytes + (p.peak_device_bytes if device_mem is None else 0)
    parts = lambda d: ", ".join(f"{k} {gb(v)}" for k, v in d.items())  # noqa: E731
    if host > host_mem:
        on_host = f"; device on host: {parts(p.device_bytes)}" if device_mem is None else ""
        raise PlanError(
            f"peak host memory {gb(host)} ({parts(p.host_bytes)}{on_host}) exceeds the "
            f"host's {gb(host_mem)}: lower config.max_sequences, proxy.batch_size or the "
            "grid's largest shapes"
        )
    if device_mem is not None and p.peak_device_bytes > device_mem:
        raise PlanError(
            f"peak device memory {gb(p.peak_device_bytes)} ({parts(p.device_bytes)}) exceeds "
            f"the device's {gb(device_mem)}: lower proxy.batch_size or the grid's largest shapes"
        )
