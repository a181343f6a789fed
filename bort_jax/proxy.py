"""Bounded proxy training: the error surrogate e(ξ) that drives the FPTAS.

arXiv 2010.08512 scores each candidate ξ by training it for a bounded number of SGD steps
("proxy training") and measuring its held-out error; under the AB^nC property the bounded-step
error tracks the converged one. Here a candidate is initialised (randomly, or sliced from the
source checkpoint), KD-trained for `steps` steps against the *cached* teacher outputs
(`distill.KDData`, one teacher pass for the whole search) through the one loop `train.train`,
and its held-out KD objective is returned as the error — with the hidden-state term measured at
the output layer only (MSE between the student's and the teacher's last hidden states through
the learned projection), so that e(ξ) is the same quantity for every depth: the all-layer mean
used for *training* averages over D_s + 1 matched layers and is not comparable across depths.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from bort_jax import distill, hf, train
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    steps: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    init: str = "random"        # random | slice (from the source checkpoint)
    seed: int = 0
    dropout: float = 0.0        # off: a short run should measure capacity, not regularisation
    kd: distill.KDWeights = distill.KDWeights()

    def __post_init__(self):
        if self.init not in ("random", "slice"):
            raise ValueError(f"ProxyConfig.init={self.init!r}; use 'random' or 'slice'")
        if self.steps <= 0:
            raise ValueError(f"ProxyConfig.steps must be positive, got {self.steps}")


@dataclasses.dataclass
class ProxyResult:
    arch: Arch
    error: float                  # held-out KD objective (output-layer hidden term) after `steps`
    metrics: dict[str, float]     # held-out terms (mlm, hidden, mlm_acc, total, ...)
    train_seconds: float
    steps: int


def proxy_error(arch: Arch, data: distill.KDData, spec: Spec, cfg: ProxyConfig,
                source: hf.Checkpoint | None = None, progress: bool = False) -> ProxyResult:
    """Train candidate `arch` for `cfg.steps` steps and return its held-out error.

    Deterministic for a given `cfg.seed` (data order, init, dropout all derive from it).
    """
    if cfg.init == "slice" and source is None:
        raise ValueError("ProxyConfig.init='slice' needs the source checkpoint")
    sspec = distill.student_spec(spec)
    model = Bert(arch, sspec, mlm_head=True, dropout_rate=cfg.dropout,
                 attention_dropout_rate=cfg.dropout)
    params = distill.init_student(arch, sspec, data.teacher_hidden, cfg.seed,
                                  source if cfg.init == "slice" else None)
    loss_fn = distill.make_loss_fn(model, data, cfg.kd)
    tx = train.make_optimizer(train.OptimConfig(
        learning_rate=cfg.learning_rate, total_steps=cfg.steps,
        warmup_steps=min(cfg.warmup_steps, cfg.steps), weight_decay=cfg.weight_decay,
        optimizer=cfg.optimizer))
    t0 = time.perf_counter()
    result = train.train(loss_fn, params, tx, distill.batch_fn(data, cfg.batch_size, cfg.seed),
                         cfg.steps, seed=cfg.seed, log_every=max(cfg.steps // 4, 1),
                         progress=progress, desc=f"proxy {arch}")
    seconds = time.perf_counter() - t0
    eval_fn = distill.make_eval_fn(loss_fn, distill.heldout_batches(data, cfg.batch_size))
    metrics = eval_fn(result.state.params)
    error = metrics["heldout_output_total"]
    if not np.isfinite(error):
        error = float("inf")
    return ProxyResult(arch, float(error), metrics, seconds, cfg.steps)


def config_from_dict(d: Any) -> ProxyConfig:
    """ml_collections / dict → ProxyConfig (nested 'kd' dict → KDWeights)."""
    d = dict(d)
    kd = distill.KDWeights(**dict(d.pop("kd", {})))
    names = {f.name for f in dataclasses.fields(ProxyConfig)}
    return ProxyConfig(kd=kd, **{k: v for k, v in d.items() if k in names})
