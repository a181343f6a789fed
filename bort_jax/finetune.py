"""Fine-tuning a BERT-family checkpoint on GLUE / SuperGLUE / RACE (Bort, arXiv 2010.10499, Sec. 5).

The head is the Bort fine-tuning head of `bort_jax.models.bert.Bert`: first-token vector ->
tanh pooler (the pretrained one when the checkpoint has it, else a fresh `head_pooler`) ->
dropout -> dense. Per task kind:

  classification    logits [B, C], softmax cross-entropy;
  regression        one output [B, 1], mean squared error (STS-B; Bort's L2Loss);
  multiple choice   every (context, choice) pair is scored with num_labels = 1, the K scores
                    [B, K] get a softmax cross-entropy over the choices (COPA, RACE).

Training runs through THE loop, `bort_jax.train.train`, on stateless batches
(`data.batching.epoch_batches`: the data position is the step, so a resume is exact). A
`DevEvaluator` scores the dev split with the task's metrics (`bort_jax.tasks.compute_metrics`)
every `eval_every` steps and keeps the parameters with the best `task.primary_metric` (ties:
the earlier step); with a workdir they are written in HF format to `workdir/best_model`
(`hf.save_classifier`) before the checkpoint of that step, and a checkpoint is written with
every evaluation, so a kill at any point loses at most `eval_every` steps and the rerun ends
with the same results. `workdir/metrics.json` summarises the run.

Batches are trimmed to the longest row rounded up to `length_bucket` tokens, so short-text
tasks (SST-2) do not pay for `max_seq_len` padding; the number of compiled shapes is at most
max_seq_len / length_bucket.

Data: `data_dir` (official GLUE/SuperGLUE file layout), else `$BORT_DATA_DIR`, else
TensorFlow Datasets by name; none of them -> `tasks.loading.DataNotFoundError`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bort_jax import checkpoint as ckpt_lib
from bort_jax import files, hf, hub, precision, sharding, train
from bort_jax.arch import Arch, check_seq_len
from bort_jax.config import from_config
from bort_jax.data import batching
from bort_jax.models.bert import (
    PLAIN,
    Bert,
    ModelOptions,
    fresh_params,
    merge_pretrained,
    slice_params,
    taken_from_pretrained,
)
from bort_jax.tasks import Task, compute_metrics, get_task
from bort_jax.tasks.encoding import INPUT_KEYS, Arrays, encode_examples, head_width, trim
from bort_jax.tasks.loading import load_examples, subsample
from bort_jax.tasks.metrics import is_better

BEST_DIR = "best_model"


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run. Empty strings / zeros mean 'not set' (see each field).

    Defaults: Bort's grid (README) has lr {1e-4, 1e-5, 9e-6}, weight decay {0, 10, 100, 350},
    warm-up ratio {0.35 .. 0.50}, batch {8, 16}; we keep lr 1e-4, wd 0, batch 16 and use a
    short warm-up (0.1) and a short max_seq_len (64) so a small model trains on a CPU in
    minutes.
    """

    task: str = "sst2"
    init: str = ""  # HF checkpoint dir; "" = the installed all-MiniLM-L6-v2
    tokenizer: str = ""  # tokenizer dir; "" = init
    arch: str = ""  # "D,A,H,I": slice init to this shape; "" = init's shape
    data_dir: str = ""  # "" = $BORT_DATA_DIR, else TFDS
    tfds_data_dir: str = ""
    max_seq_len: int = 64
    length_bucket: int = 16  # trim batches to a multiple of this; 0 = never trim
    batch_size: int = 16
    eval_batch_size: int = 64
    learning_rate: float = 1e-4
    epochs: float = 1.0  # used when num_steps is 0
    num_steps: int = 200  # > 0 overrides epochs (200: a few CPU minutes for MiniLM)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    dropout_rate: float = 0.1
    dtype: str = "auto"  # computation: bfloat16 | float32 | auto (bf16 on TPU/GPU); params fp32
    seed: int = 0  # head init, dropout, data order
    data_seed: int = 0  # which max_train_examples rows are kept
    max_train_examples: int = 0  # 0 = all
    max_eval_examples: int = 0  # 0 = all
    eval_every: int = 0  # 0 = 4 evaluations per run
    log_every: int = 50
    checkpoint_every: int = 0  # 0 = with every evaluation (a kill loses < eval_every steps)
    save_best: bool = True
    progress: bool = False
    mesh: sharding.MeshConfig = sharding.MeshConfig()  # used when there are > 1 devices
    model: ModelOptions = ModelOptions()  # layout: scan_layers, remat, vocab_multiple

    def __post_init__(self) -> None:
        positive = ("max_seq_len", "batch_size", "eval_batch_size", "log_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"config.{name} must be positive, got {getattr(self, name)}")
        non_negative = (
            "length_bucket",
            "num_steps",
            "max_train_examples",
            "max_eval_examples",
            "eval_every",
            "checkpoint_every",
            "weight_decay",
            "clip_norm",
            "epochs",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"config.{name} must be >= 0, got {getattr(self, name)}")
        if not self.num_steps and not self.epochs > 0:
            raise ValueError("config: set epochs > 0 or num_steps > 0")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"config.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"config.dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if self.learning_rate <= 0:
            raise ValueError(f"config.learning_rate must be > 0, got {self.learning_rate}")
        precision.check_dtype(self.dtype, "config.dtype")

    @classmethod
    def from_config(cls, config: Any) -> FinetuneConfig:
        """From a ConfigDict / dict / FinetuneConfig; unknown keys raise ConfigError."""
        return from_config(cls, config)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------------------ model


def build_classifier(
    checkpoint: hf.Checkpoint,
    task: Task | str,
    arch: Arch | None = None,
    *,
    dropout_rate: float = 0.1,
    seed: int = 0,
    dtype: Any = jnp.float32,
    options: ModelOptions = PLAIN,
) -> tuple[Bert, dict]:
    """Bert with the task head; encoder (+ pooler) from `checkpoint`, sliced to `arch`.

    The head (classifier, and head_pooler when the checkpoint has no pooler) is freshly
    initialised from `seed`; an MLM head in the checkpoint is dropped. `dtype` is the
    computation dtype (`precision.compute_dtype`); the parameters are float32 whatever it is.
    `options` is the model's layout (`ModelOptions`); the parameters are in that layout, the
    same values as without it (`options.to_canonical` gives the plain model's tree back).
    """
    task = get_task(task)
    target = checkpoint.arch if arch is None else arch
    body = checkpoint.params
    if target != checkpoint.arch:
        body = slice_params(body, checkpoint.arch, target)
    model = Bert(
        target,
        checkpoint.spec,
        num_labels=head_width(task),
        dropout_rate=dropout_rate,
        attention_dropout_rate=dropout_rate,
        dtype=dtype,
        **options.kwargs(),
    )
    body = options.to_model(body, target, checkpoint.spec)
    fresh = fresh_params(model, seed, skip=taken_from_pretrained(body))
    return model, merge_pretrained(fresh, body)


def task_logits(
    model: Bert, params: Any, inputs: Mapping[str, jax.Array], rng: jax.Array | None = None
) -> jax.Array:
    """Head outputs: [B, C] (classification), [B, 1] (regression), [B, K] (multiple choice).

    Multiple-choice inputs are [B, K, L]; they are scored as B·K rows and reshaped.
    Dropout is on iff `rng` is given.
    """
    ids = inputs["input_ids"]
    length = ids.shape[-1]
    flat = [inputs[k].reshape(-1, length) if k in inputs else None for k in INPUT_KEYS]
    kwargs = (
        {"deterministic": True}
        if rng is None
        else {"deterministic": False, "rngs": {"dropout": rng}}
    )
    logits = model.apply({"params": params}, *flat, **kwargs)["logits"]
    return logits.reshape(ids.shape[:2]) if ids.ndim == 3 else logits


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-row CE: logits [B, C], int labels [B] -> [B]."""
    log_z = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return log_z - picked


def squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-row squared error: outputs [B, 1], targets [B] -> [B]."""
    return (outputs[:, 0] - targets.astype(outputs.dtype)) ** 2


@functools.lru_cache(maxsize=16)
def classification_loss_fn(model: Bert, kind: str = "classification") -> train.LossFn:
    """`loss_fn(params, batch, rng) -> (loss, metrics)` for `train.train`.

    kind: 'classification' / 'multiple_choice' (CE; metrics: accuracy) or 'regression'
    (MSE; metrics: mse). batch: INPUT_KEYS + 'label'. One function per (model, kind), so
    every fine-tuning run of a model shares one compiled train step (`train.train`).
    """

    def loss_fn(params, batch, rng):
        logits = task_logits(model, params, batch, rng)
        if kind == "regression":
            loss = jnp.mean(squared_error(logits, batch["label"]))
            return loss, {"mse": loss}
        loss = jnp.mean(softmax_cross_entropy(logits, batch["label"]))
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return loss, {"accuracy": acc}

    return loss_fn


def train_batches(
    arrays: Mapping[str, np.ndarray], batch_size: int, seed: int, bucket: int = 0
) -> batching.BatchSource:
    """Stateless training batches of INPUT_KEYS + 'label' (other keys ignored), trimmed."""
    data = batching.select(arrays, INPUT_KEYS + ("label",))
    return batching.epoch_batches(
        data, batch_size, seed, transform=functools.partial(trim, bucket=bucket)
    )


# ------------------------------------------------------------------------ prediction


@functools.lru_cache(maxsize=16)
def _jitted_logits(model: Bert) -> Callable:
    return jax.jit(functools.partial(task_logits, model))


def predict(
    model: Bert,
    params: Any,
    arrays: Mapping[str, np.ndarray],
    batch_size: int = 64,
    bucket: int = 16,
) -> np.ndarray:
    """Head outputs for every row, float32 [N, C] (see `task_logits`).

    Rows are processed in order of length (so trimming to `bucket` helps) in batches of
    exactly `batch_size` (the last one padded by repetition), then put back in order.
    """
    inputs = {k: np.asarray(arrays[k]) for k in INPUT_KEYS if k in arrays}
    n = batching.num_rows(inputs)
    lengths = np.asarray(inputs["attention_mask"]).reshape(n, -1).sum(-1)
    order = np.argsort(lengths, kind="stable")
    fn = _jitted_logits(model)
    outs = []
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        padded = np.concatenate([rows, np.full(batch_size - rows.size, rows[-1])])
        out = fn(params, trim(batching.take(inputs, padded), bucket))
        outs.append(np.asarray(jax.device_get(out))[: rows.size])
    result = np.empty((n,) + outs[0].shape[1:], np.float32)
    result[order] = np.concatenate(outs)
    return result


def evaluate_task(
    model: Bert,
    params: Any,
    task: Task,
    arrays: Mapping[str, np.ndarray],
    batch_size: int = 64,
    groups: Sequence | None = None,
    bucket: int = 16,
) -> dict[str, float]:
    """`compute_metrics` of the task on labelled `arrays`."""
    logits = predict(model, params, arrays, batch_size, bucket)
    return compute_metrics(task, logits, arrays["label"], groups)


# ------------------------------------------------------------------- best-dev keeping


def host_copy(tree: Any) -> Any:
    """Numpy copies (safe against the train step donating its buffers)."""
    return jax.tree_util.tree_map(lambda x: np.array(x, copy=True), sharding.host_get(tree))


class DevEvaluator:
    """`evaluator(params, step) -> {'dev_<metric>': value}`; keeps the best dev parameters.

    After an improvement of `task.primary_metric` (strict; NaN ranks last: `is_better`),
    `on_best(self)` is called (e.g. to write `best_model`). `best_*` hold the best step,
    metrics and host parameters.
    """

    def __init__(
        self,
        model: Bert,
        task: Task,
        dev: Arrays,
        groups: Sequence | None = None,
        batch_size: int = 64,
        bucket: int = 16,
        on_best: Callable[[DevEvaluator], None] | None = None,
        options: ModelOptions = PLAIN,
    ):
        self.model, self.task, self.dev, self.groups = model, task, dev, groups
        self.options = options  # the layout of `model`'s params (a saved best is canonical)
        self.batch_size, self.bucket, self.on_best = batch_size, bucket, on_best
        self.metric = task.primary_metric
        self.best_value, self.best_step = -math.inf, -1
        self.best_metrics: dict = {}
        self.best_params: Any = None

    def __call__(self, params: Any, step: int) -> dict[str, float]:
        metrics = evaluate_task(
            self.model, params, self.task, self.dev, self.batch_size, self.groups, self.bucket
        )
        if is_better(float(metrics[self.metric]), self._best_so_far):
            self.best_value, self.best_step = float(metrics[self.metric]), step
            self.best_metrics, self.best_params = dict(metrics), host_copy(params)
            if self.on_best is not None:
                self.on_best(self)
        return {f"dev_{k}": v for k, v in metrics.items()}

    @property
    def _best_so_far(self) -> float | None:
        return None if self.best_step < 0 else self.best_value

    def restore(self, saved: Path, upto: int) -> None:
        """Take the best from a `save_classifier` directory written at a step <= `upto` (later
        ones belong to the lost part of a killed run and are recomputed)."""
        if not (saved / "config.json").is_file():
            return
        _, params, _, info = hf.load_classifier(saved)
        params = self.options.to_model(params, self.model.arch, self.model.spec)
        if info.get("step", math.inf) <= upto:
            self.best_value = float(info["dev"][self.metric])
            self.best_step = int(info["step"])
            self.best_metrics, self.best_params = dict(info["dev"]), host_copy(params)

    def restore_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Best step and metrics from the evaluation records of a resumed run's history (the
        parameters are not stored then: `best_params` stays None)."""
        for record in history:
            if record.get("eval") and f"dev_{self.metric}" in record:
                value = float(record[f"dev_{self.metric}"])
                if is_better(value, self._best_so_far):
                    self.best_value, self.best_step = value, int(record["step"])
                    self.best_metrics = {
                        k[4:]: v for k, v in record.items() if k.startswith("dev_")
                    }


# ------------------------------------------------------------------------ the driver


@dataclasses.dataclass
class Prepared:
    """Everything `finetune` needs before training: model, data, schedule."""

    config: FinetuneConfig
    task: Task
    model: Bert
    params: dict
    train: Arrays
    dev: Arrays
    dev_groups: list | None
    tokenizer_dir: str
    num_steps: int
    eval_every: int


def resolve_steps(cfg: FinetuneConfig, n_train: int) -> tuple[int, int]:
    """(num_steps, eval_every): num_steps or ceil(epochs·N/B); eval_every or 4 per run."""
    steps = cfg.num_steps or max(1, math.ceil(cfg.epochs * n_train / cfg.batch_size))
    every = cfg.eval_every or max(1, math.ceil(steps / 4))
    return steps, every


def prepare(config: Any) -> Prepared:
    """Validate the config, read and encode the data, build the model (nothing compiled).

    Raises (before any compilation): ConfigError/ValueError for a bad task name / arch /
    config value or a max_seq_len above the model's positions; DataNotFoundError for missing
    data.
    """
    cfg = FinetuneConfig.from_config(config)
    task = get_task(cfg.task)
    arch = Arch.parse(cfg.arch) if cfg.arch else None
    init_dir = hub.resolve(cfg.init) or hf.minilm_path()
    ckpt = hf.load(init_dir)
    check_seq_len(cfg.max_seq_len, ckpt.spec, "max_seq_len")
    train_ex = subsample(
        load_examples(task, "train", cfg.data_dir, cfg.tfds_data_dir),
        cfg.max_train_examples,
        cfg.data_seed,
    )
    dev_ex = subsample(
        load_examples(task, task.eval_splits[0], cfg.data_dir, cfg.tfds_data_dir),
        cfg.max_eval_examples,
        cfg.data_seed,
    )
    tokenizer_dir = hub.resolve(cfg.tokenizer) or init_dir
    tok = hf.load_tokenizer(tokenizer_dir)
    train_arrays = encode_examples(tok, task, train_ex, cfg.max_seq_len)
    dev_arrays = encode_examples(tok, task, dev_ex, cfg.max_seq_len)
    groups = [ex.group for ex in dev_ex] if "em" in task.metric_names else None
    model, params = build_classifier(
        ckpt,
        task,
        arch,
        dropout_rate=cfg.dropout_rate,
        seed=cfg.seed,
        dtype=precision.compute_dtype(cfg.dtype, "config.dtype"),
        options=cfg.model,
    )
    steps, every = resolve_steps(cfg, len(train_ex))
    return Prepared(
        cfg, task, model, params, train_arrays, dev_arrays, groups, str(tokenizer_dir), steps, every
    )


def optim_config(cfg: FinetuneConfig) -> train.OptimConfig:
    """AdamW with linear warm-up over warmup_ratio of the run, then linear decay to 0."""
    return train.OptimConfig(
        learning_rate=cfg.learning_rate,
        warmup_ratio=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        clip_norm=cfg.clip_norm or None,
    )


def train_on_arrays(
    model: Bert,
    params: Any,
    kind: str,
    arrays: Mapping[str, np.ndarray],
    cfg: FinetuneConfig,
    num_steps: int,
    *,
    workdir: str | os.PathLike | None = None,
    evaluators: Sequence[train.Evaluator] = (),
    eval_every: int = 0,
    desc: str = "finetune",
) -> train.TrainResult:
    """`train.train` on encoded `arrays` (INPUT_KEYS + 'label') with the optimiser, batch
    size, seed, bucket, logging and checkpointing of `cfg`."""
    loop = train.LoopConfig(
        num_steps=num_steps,
        seed=cfg.seed,
        log_every=cfg.log_every,
        eval_every=eval_every,
        checkpoint_every=cfg.checkpoint_every,
        progress=cfg.progress,
        desc=desc,
    )
    return train.train(
        classification_loss_fn(model, kind),
        params,
        train_batches(arrays, cfg.batch_size, cfg.seed, cfg.length_bucket),
        loop,
        optim_config(cfg),
        evaluators=evaluators,
        workdir=workdir,
    )


def fit(
    prep: Prepared,
    workdir: str | os.PathLike | None = None,
    on_best: Callable[[DevEvaluator], None] | None = None,
) -> tuple[DevEvaluator, train.TrainResult]:
    """Train `prep.model`, evaluating dev every `prep.eval_every` steps; keep the best."""
    cfg = prep.config
    dev = DevEvaluator(
        prep.model,
        prep.task,
        prep.dev,
        prep.dev_groups,
        cfg.eval_batch_size,
        cfg.length_bucket,
        on_best,
        cfg.model,
    )
    if workdir is not None:
        resumed = _latest_step(workdir)
        if resumed:
            dev.restore(Path(workdir) / BEST_DIR, resumed)
            if dev.best_step < 0:  # no best model saved (save_best=False): its metrics
                dev.restore_metrics(train._read_history(workdir, resumed))
    result = train_on_arrays(
        prep.model,
        prep.params,
        prep.task.kind,
        prep.train,
        cfg,
        prep.num_steps,
        workdir=workdir,
        evaluators=[dev],
        eval_every=prep.eval_every,
        desc=f"finetune {prep.task.name}",
    )
    return dev, result


def _latest_step(workdir: str | os.PathLike) -> int | None:
    if not (Path(workdir) / "checkpoints").is_dir():
        return None
    return ckpt_lib.manager(workdir).latest_step()


def finetune(config: Any, workdir: str | os.PathLike | None = None) -> dict:
    """Fine-tune per `config` (FinetuneConfig / ConfigDict / dict); see the module docstring.

    Returns a dict: task, num_steps, eval_every, train_examples, dev_examples, best_step,
    best (dev metrics at best_step), final (dev metrics at the last step), evals (one
    record per evaluation), train_loss (per log step), seconds, resumed_from, and the objects
    'model' and 'params' (best-dev parameters, host numpy). Everything but model/params also
    goes to workdir/metrics.json (written last: its presence marks a finished run).
    """
    return run_prepared(prepare(config), workdir)


def run_prepared(prep: Prepared, workdir: str | os.PathLike | None = None) -> dict:
    """`finetune` on an already prepared run (e.g. with `prep.dev` replaced by a subset)."""
    t0 = time.perf_counter()
    cfg = prep.config
    if workdir is not None:
        if not files.is_remote(workdir):
            os.makedirs(workdir, exist_ok=True)
        if files.read_text(files.join(workdir, "metrics.json")) is not None:
            return _reload(workdir, prep)
    save = None
    if workdir is not None and cfg.save_best:
        save = functools.partial(_save_best, Path(workdir) / BEST_DIR, prep)
    with sharding.use_mesh(cfg.mesh):
        dev, result = fit(prep, workdir, on_best=save)
    summary = summarise(prep, dev, result, time.perf_counter() - t0)
    if workdir is not None:
        files.atomic_write_json(files.join(workdir, "metrics.json"), summary)
    return dict(summary, model=prep.model, params=dev.best_params)


def _save_best(path: Path, prep: Prepared, dev: DevEvaluator) -> None:
    model = prep.model
    hf.save_classifier(
        path,
        model,
        prep.config.model.to_canonical(dev.best_params, model.arch, model.spec),
        prep.task,
        prep.tokenizer_dir,
        info={
            "step": dev.best_step,
            "dev": dev.best_metrics,
            "config": dataclasses.asdict(prep.config),
        },
    )


def _reload(workdir, prep: Prepared) -> dict:
    """A finished run: its metrics.json and (if saved) the best model."""
    summary = json.loads(files.read_text(files.join(workdir, "metrics.json")))
    params = None
    if (Path(workdir) / BEST_DIR).is_dir():
        params = hf.load_classifier(Path(workdir) / BEST_DIR)[1]
        params = host_copy(prep.config.model.to_model(params, prep.model.arch, prep.model.spec))
    return dict(summary, model=prep.model, params=params)


def summarise(prep: Prepared, dev: DevEvaluator, result: train.TrainResult, seconds: float) -> dict:
    """JSON-able record of a run (see `finetune`)."""
    evals = result.evals
    losses = [
        {"step": r["step"], "loss": r["loss"]}
        for r in result.history
        if not r.get("eval") and "loss" in r
    ]
    final = {k[4:]: v for k, v in evals[-1].items() if k.startswith("dev_")} if evals else {}
    return {
        "task": prep.task.name,
        "primary_metric": prep.task.primary_metric,
        "arch": str(prep.model.arch),
        "compute_dtype": str(jnp.dtype(prep.model.dtype)),
        "num_steps": prep.num_steps,
        "eval_every": prep.eval_every,
        "train_examples": batching.num_rows(prep.train),
        "dev_examples": batching.num_rows(prep.dev),
        "best_step": dev.best_step,
        "best": dev.best_metrics,
        "final": final,
        "evals": evals,
        "train_loss": losses,
        "resumed_from": result.resumed_from,
        "seconds": seconds,
        "config": dataclasses.asdict(prep.config),
    }
