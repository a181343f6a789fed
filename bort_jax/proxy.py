"""Bounded proxy training of one candidate: the error e(ξ) of the FPTAS (arXiv 2010.08512).

The paper scores each candidate ξ by a short, bounded training run and uses the resulting error
as e(ξ). Here a candidate is the student `Arch`; it is trained by knowledge distillation on the
static-masked data shared by the whole search (`distill.KDData`, one teacher pass for the whole
search) through the one loop `train.train`, and e(ξ) is one held-out quantity (`error`):

    output_total  w_mlm·CE + w_hidden·MSE_out: the KD objective with the hidden-state term at
                  the output layer only (the all-layer mean used for training is not comparable
                  across depths, see docs/fptas.md);
    mlm           the masked-LM cross-entropy CE;
    hidden_nmse   MSE_out / Var(teacher output states) = 1 − R² of the student's projected
                  output states (`distill.teacher_output_variance`);
    output_ntotal output_total with MSE_out replaced by hidden_nmse: w_mlm·CE + w_hidden·(1 − R²),
                  both terms scale-free (the raw MSE_out is in the teacher's units: ≈ 0.1 for
                  MiniLM next to CE ≈ 6, so it hardly counted).

`head_init` = 'fitted' starts every student from the MLM head fitted once on the frozen source
encoder (`mlm_head.fit_mlm_head`), sliced like the rest of the weights, so that CE measures the
encoder rather than how far a random head got in `num_steps` steps (docs/error_signal.md).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from bort_jax import distill, hf, mlm_head, precision, train
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import ModelOptions

ERRORS = {
    "output_total": "heldout_output_total",
    "mlm": "heldout_mlm",
    "hidden_nmse": "heldout_hidden_nmse",
    "output_ntotal": "heldout_output_ntotal",
}
HEAD_INITS = ("fresh", "fitted")


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """One bounded proxy-training run (hyperparameters shared by every candidate)."""

    num_steps: int = 100
    batch_size: int = 16
    init_method: str = "random"  # random | slice (from the source checkpoint)
    seed: int = 0
    dropout_rate: float = 0.0  # off: a short run should measure capacity, not regularisation
    optim: train.OptimConfig = train.OptimConfig(learning_rate=1e-3, warmup_steps=10)
    kd: distill.KDWeights = distill.KDWeights()
    model: ModelOptions = ModelOptions()  # student layout: scan_layers, remat, vocab_multiple
    error: str = "output_total"  # output_total | mlm | hidden_nmse | output_ntotal (docstring)
    head_init: str = "fresh"  # fresh | fitted: the MLM head fitted once on the source encoder
    head: mlm_head.HeadConfig = mlm_head.HeadConfig()  # fitting that head (head_init=fitted)
    proj_init: str = "random"  # random | slice: hidden-KD projections start as [I | 0]
    dtype: str = "auto"  # computation: bfloat16 | float32 | auto (bf16 on TPU/GPU); params fp32

    def __post_init__(self):
        if self.init_method not in ("random", "slice"):
            raise ValueError(f"proxy.init_method={self.init_method!r}; use 'random' or 'slice'")
        if self.error not in ERRORS:
            raise ValueError(f"proxy.error={self.error!r}; use one of {sorted(ERRORS)}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"proxy.head_init={self.head_init!r}; use one of {HEAD_INITS}")
        if self.head_init == "fitted" and self.init_method != "slice":
            raise ValueError("proxy.head_init='fitted' needs proxy.init_method='slice'")
        if self.proj_init not in ("random", "slice"):
            raise ValueError(f"proxy.proj_init={self.proj_init!r}; use 'random' or 'slice'")
        if self.error == "mlm" and not self.kd.mlm and not self.kd.logit:
            raise ValueError("proxy.error='mlm' with kd.mlm=0 and kd.logit=0 trains no MLM head")
        if self.error in ("hidden_nmse", "output_ntotal") and not self.kd.hidden:
            raise ValueError(f"proxy.error={self.error!r} needs kd.hidden > 0")
        if self.num_steps <= 0:
            raise ValueError(f"proxy.num_steps must be positive, got {self.num_steps}")
        if self.batch_size <= 0:
            raise ValueError(f"proxy.batch_size must be positive, got {self.batch_size}")
        precision.check_dtype(self.dtype, "proxy.dtype")


@dataclasses.dataclass
class ProxyResult:
    arch: Arch
    error: float  # held-out metric `ProxyConfig.error` after `num_steps`
    metrics: dict[str, float]  # held-out terms (mlm, hidden, hidden_nmse, mlm_acc, total, ...)
    train_seconds: float
    steps: int


def proxy_error(
    arch: Arch,
    data: distill.KDData,
    spec: Spec,
    cfg: ProxyConfig,
    source: hf.Checkpoint | None = None,
    progress: bool = False,
    cache_dir: str | None = None,
) -> ProxyResult:
    """Train candidate `arch` for `cfg.num_steps` steps and return its held-out error.

    `spec` is the teacher's; the student shares its vocabulary and positions. Deterministic for
    a given `cfg.seed` (data order, init, dropout all derive from it). With `head_init` =
    'fitted' the source's MLM head is fitted once per process (and stored in `cache_dir` when
    given) on the training rows of `data`.
    """
    if cfg.init_method == "slice" and source is None:
        raise ValueError("proxy.init_method='slice' needs the source checkpoint")
    if cfg.head_init == "fitted":
        source = source_with_head(source, data, cfg.head, cache_dir)
    student = distill.build_student(
        arch,
        data,
        spec,
        cfg.kd,
        seed=cfg.seed,
        dropout=cfg.dropout_rate,
        source=source if cfg.init_method == "slice" else None,
        options=cfg.model,
        proj_init=cfg.proj_init,
        dtype=precision.compute_dtype(cfg.dtype, "proxy.dtype"),
    )
    loop = train.LoopConfig(
        num_steps=cfg.num_steps,
        seed=cfg.seed,
        log_every=max(cfg.num_steps // 4, 1),
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
        result.state.params, cfg.num_steps
    )
    var = distill.teacher_output_variance(data)
    if var is not None:
        metrics["heldout_hidden_nmse"] = metrics["heldout_hidden_last"] / var
        metrics["heldout_output_ntotal"] = normalised_total(metrics, cfg.kd.hidden)
    if ERRORS[cfg.error] not in metrics:
        raise ValueError(f"proxy.error={cfg.error!r}: {ERRORS[cfg.error]} was not measured")
    error = metrics[ERRORS[cfg.error]]
    if not np.isfinite(error):
        error = float("inf")
    return ProxyResult(arch, float(error), metrics, seconds, cfg.num_steps)


def source_with_head(
    source: hf.Checkpoint, data: distill.KDData, cfg: mlm_head.HeadConfig, cache_dir: str | None
) -> hf.Checkpoint:
    """`source` with the MLM head fitted on its frozen encoder over `data.train` (cached)."""
    return mlm_head.with_head(source, mlm_head.fit_mlm_head(source, data.train, cfg, cache_dir))


def normalised_total(metrics: dict[str, float], w_hidden: float) -> float:
    """heldout output_total with the output-layer MSE replaced by its normalised form:

    output_total + w_hidden · (hidden_nmse − hidden_last)   (= w_mlm·CE [+ w_logit·KL] +
    w_hidden·(1 − R²)).
    """
    return metrics["heldout_output_total"] + w_hidden * (
        metrics["heldout_hidden_nmse"] - metrics["heldout_hidden_last"]
    )
