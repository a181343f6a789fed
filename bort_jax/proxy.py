"""Bounded proxy training of one candidate: the error e(ξ) of the FPTAS (arXiv 2010.08512).

The paper scores each candidate ξ by a short, bounded training run and uses the resulting error
as e(ξ). Here a candidate is the student `Arch`; it is trained by knowledge distillation on the
static-masked data shared by the whole search (`distill.KDData`, one teacher pass for the whole
search) through the one loop `train.train`, and e(ξ) is the held-out KD objective with the
hidden-state term taken at the output layer only (`metrics['output_total']`; the all-layer mean
used for training is not comparable across depths, see docs/fptas.md).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from bort_jax import distill, hf, train
from bort_jax.arch import Arch, Spec


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """One bounded proxy-training run (hyperparameters shared by every candidate)."""

    steps: int = 100
    batch_size: int = 16
    init: str = "random"  # random | slice (from the source checkpoint)
    seed: int = 0
    dropout: float = 0.0  # off: a short run should measure capacity, not regularisation
    optim: train.OptimConfig = train.OptimConfig(learning_rate=1e-3, warmup_steps=10)
    kd: distill.KDWeights = distill.KDWeights()
    scan_layers: bool = False  # student layers through nn.scan: one compiled layer body

    def __post_init__(self):
        if self.init not in ("random", "slice"):
            raise ValueError(f"proxy.init={self.init!r}; use 'random' or 'slice'")
        if self.steps <= 0:
            raise ValueError(f"proxy.steps must be positive, got {self.steps}")
        if self.batch_size <= 0:
            raise ValueError(f"proxy.batch_size must be positive, got {self.batch_size}")


@dataclasses.dataclass
class ProxyResult:
    arch: Arch
    error: float  # held-out KD objective (output-layer hidden term) after `steps`
    metrics: dict[str, float]  # held-out terms (mlm, hidden, mlm_acc, total, ...)
    train_seconds: float
    steps: int


def proxy_error(
    arch: Arch,
    data: distill.KDData,
    spec: Spec,
    cfg: ProxyConfig,
    source: hf.Checkpoint | None = None,
    progress: bool = False,
) -> ProxyResult:
    """Train candidate `arch` for `cfg.steps` steps and return its held-out error.

    `spec` is the teacher's; the student shares its vocabulary and positions. Deterministic for
    a given `cfg.seed` (data order, init, dropout all derive from it).
    """
    if cfg.init == "slice" and source is None:
        raise ValueError("proxy.init='slice' needs the source checkpoint")
    student = distill.build_student(
        arch,
        data,
        spec,
        cfg.kd,
        seed=cfg.seed,
        dropout=cfg.dropout,
        source=source if cfg.init == "slice" else None,
        scan_layers=cfg.scan_layers,
    )
    loop = train.LoopConfig(
        num_steps=cfg.steps,
        seed=cfg.seed,
        log_every=max(cfg.steps // 4, 1),
        progress=progress,
        desc=f"proxy {arch}",
    )
    t0 = time.perf_counter()
    result = train.train(
        student.loss_fn,
        student.params,
        distill.train_batches(data, cfg.batch_size, cfg.seed),
        loop,
        cfg.optim,
    )
    seconds = time.perf_counter() - t0
    metrics = distill.HeldoutEvaluator(student.loss_fn, data, cfg.batch_size)(
        result.state.params, cfg.steps
    )
    error = metrics["heldout_output_total"]
    if not np.isfinite(error):
        error = float("inf")
    return ProxyResult(arch, float(error), metrics, seconds, cfg.steps)
