"""The agora_glue experiment's models: the student's fits and scores, and the labeler (the
full checkpoint fine-tuned once per task, best step on the agora half)."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bort_jax import agora, hf, precision
from bort_jax import finetune as ft
from bort_jax.data import batching
from bort_jax.experiments.agora_glue.config import GlueConfig, stage_config
from bort_jax.experiments.agora_glue.data import TaskData, count_in, row_keys
from bort_jax.models.bert import Bert
from bort_jax.tasks import Task, compute_metrics
from bort_jax.tasks.encoding import Arrays


def metric_fn(task: Task) -> Callable[[np.ndarray, np.ndarray], float]:
    """`(predicted ids [N], gold [N]) -> task.primary_metric`."""
    return lambda pred, gold: compute_metrics(task, pred, gold)[task.primary_metric]


def predict_labels(model: Bert, params: Any, inputs: Arrays, cfg: GlueConfig) -> np.ndarray:
    """Argmax class ids [N]."""
    return np.argmax(
        ft.predict(model, params, inputs, cfg.eval_batch_size, cfg.length_bucket), axis=-1
    )


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy of logits [N, C] against int labels [N] (float64)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(-np.mean(np.take_along_axis(log_p, np.asarray(labels)[:, None], -1)))


def score_rows(
    model: Bert, params: Any, rows: Arrays, task: Task, cfg: GlueConfig
) -> tuple[float, float]:
    """(task.primary_metric, mean cross-entropy) of labelled `rows` under `params`."""
    logits = ft.predict(model, params, rows, cfg.eval_batch_size, cfg.length_bucket)
    return (
        metric_fn(task)(np.argmax(logits, -1), rows["label"]),
        cross_entropy(logits, rows["label"]),
    )


def dev_scores(data: TaskData, model: Bert, params: Any, cfg: GlueConfig) -> dict:
    """Metric and cross-entropy on the agora half ('agora_dev', 'agora_dev_loss') and the
    held-out half ('heldout', 'heldout_loss')."""
    out = {}
    for name, rows in (("agora_dev", data.agora_dev), ("heldout", data.heldout)):
        out[name], out[f"{name}_loss"] = score_rows(model, params, rows, data.task, cfg)
    return out


def fit_student(
    model: Bert,
    init: Any,
    kind: str,
    rows: Arrays,
    scfg: ft.FinetuneConfig,
    workdir: Path | None,
    desc: str,
) -> Any:
    """One student fit from `init` (resumes from `workdir`'s checkpoints); host params."""
    result = ft.train_on_arrays(
        model, init, kind, rows, scfg, scfg.num_steps, workdir=workdir, desc=desc
    )
    return ft.host_copy(result.state.params)


@dataclasses.dataclass
class Labeler:
    """The fine-tuned labeler: model, best params on the agora half, and its record."""

    model: Bert
    params: Any
    record: dict
    pool_labels: np.ndarray | None


def train_labeler(
    ckpt: hf.Checkpoint, init_dir: str, data: TaskData, cfg: GlueConfig, workdir: Path | None
) -> Labeler:
    """The full checkpoint fine-tuned on the labeler's rows, best step on the agora half
    (`finetune.run_prepared`: with a workdir it resumes from its checkpoints, and a finished
    labeler is reloaded from `workdir/best_model` instead of retrained)."""
    t0 = time.perf_counter()
    lcfg = stage_config(cfg.labeler, cfg, seed=0)
    model, params = ft.build_classifier(
        ckpt,
        data.task,
        dropout_rate=lcfg.dropout_rate,
        dtype=precision.compute_dtype(lcfg.dtype, "config.dtype"),
        options=lcfg.model,
    )
    steps, _ = ft.resolve_steps(lcfg, batching.num_rows(data.labeler_rows))
    prep = ft.Prepared(
        config=lcfg,
        task=data.task,
        model=model,
        params=params,
        train=data.labeler_rows,
        dev=data.agora_dev,
        dev_groups=None,
        tokenizer_dir=init_dir,
        num_steps=steps,
        eval_every=lcfg.eval_every or steps,
    )
    out = ft.run_prepared(prep, workdir)
    best = out["params"]
    record = {
        "best_step": out["best_step"],
        **dev_scores(data, model, best, cfg),
        "heldout_rows_in_train": count_in(data.labeler_rows, set(row_keys(data.heldout))),
    }
    pool = (
        None if data.distill_pool is None else predict_labels(model, best, data.distill_pool, cfg)
    )
    record["seconds"] = time.perf_counter() - t0
    return Labeler(model, best, record, pool)


@functools.lru_cache(maxsize=None)
def labeler_logits_fn(model: Bert) -> Callable:
    """One function object per model, so the jitted sampler is compiled once."""
    return functools.partial(ft.task_logits, model)


def labeler_fn(labeler: Labeler) -> Any:
    """`inputs -> argmax labels`, jittable, labeler params traced (not baked in)."""
    return agora.argmax_labeler(labeler_logits_fn(labeler.model), labeler.params)
