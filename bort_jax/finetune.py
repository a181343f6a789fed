"""Fine-tuning a BERT-family checkpoint on GLUE / SuperGLUE / RACE (Bort, arXiv 2010.10499, Sec. 5).

The head is the Bort fine-tuning head of `bort_jax.models.bert.Bert`: first-token vector ->
tanh pooler (the pretrained one when the checkpoint has it, else a fresh `head_pooler`) ->
dropout -> dense. Per task kind:

  classification    logits [B, C], softmax cross-entropy;
  regression        one output [B, 1], mean squared error (STS-B; Bort's L2Loss);
  multiple choice   every (context, choice) pair is scored with num_labels = 1, the K scores
                    [B, K] get a softmax cross-entropy over the choices (COPA, RACE).

Training runs through THE loop, `bort_jax.train.train`: `batch_fn(step)` is stateless (epoch
e is a permutation seeded by (seed, e), so the data position is the step and a resume is
exact), every `eval_every` steps the dev split is scored with the task's metrics
(`bort_jax.tasks.compute_metrics`) and the parameters with the best `task.primary_metric` are
kept (ties: the earlier step) and, with a workdir, written in HF format to
`workdir/best_model` (backbone via `bort_jax.hf.save`, the task head beside it in
`classifier_head.safetensors`). `workdir/metrics.json` summarises the run.

Batches are trimmed to the longest row rounded up to `length_bucket` tokens, so short-text
tasks (SST-2) do not pay for `max_seq_len` padding; the number of compiled shapes is at most
max_seq_len / length_bucket.

Data: `data_dir` (official GLUE/SuperGLUE file layout), else `../shared/data` beside the
repository when it exists, else TensorFlow Datasets by name; none of them -> DataNotFoundError.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bort_jax import checkpoint as ckpt_lib
from bort_jax import hf, train
from bort_jax.arch import Arch
from bort_jax.models.bert import Bert, init_params, slice_params
from bort_jax.tasks import Example, Task, compute_metrics, get_task, read_split, read_tfds

Arrays = dict[str, np.ndarray]
INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
HEAD_KEYS = ("classifier", "head_pooler")
HEAD_FILE = "classifier_head.safetensors"
BEST_DIR = "best_model"


class DataNotFoundError(FileNotFoundError):
    """No files for the task under any data directory tried, and TFDS unavailable."""


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
    init: str = ""                 # HF checkpoint dir; "" = the installed all-MiniLM-L6-v2
    tokenizer: str = ""            # tokenizer dir; "" = init
    arch: str = ""                 # "D,A,H,I": slice init to this shape; "" = init's shape
    data_dir: str = ""             # "" = ../shared/data beside the repo, else TFDS
    tfds_data_dir: str = ""
    max_seq_len: int = 64
    length_bucket: int = 16        # trim batches to a multiple of this; 0 = never trim
    batch_size: int = 16
    eval_batch_size: int = 64
    learning_rate: float = 1e-4
    epochs: float = 1.0            # used when num_steps is 0
    num_steps: int = 200           # > 0 overrides epochs (200: a few CPU minutes for MiniLM)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    dropout_rate: float = 0.1
    seed: int = 0                  # head init, dropout, data order
    data_seed: int = 0             # which max_train_examples rows are kept
    max_train_examples: int = 0    # 0 = all
    max_eval_examples: int = 0     # 0 = all
    eval_every: int = 0            # 0 = 4 evaluations per run
    log_every: int = 50
    checkpoint_every: int = 0
    save_best: bool = True
    progress: bool = False
    stop_after: int = 0            # > 0: stop this call after that many steps (resume tests)

    def __post_init__(self) -> None:
        positive = ("max_seq_len", "batch_size", "eval_batch_size", "log_every")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"FinetuneConfig.{name} must be positive, "
                                 f"got {getattr(self, name)}")
        non_negative = ("length_bucket", "num_steps", "max_train_examples",
                        "max_eval_examples", "eval_every", "checkpoint_every", "stop_after",
                        "weight_decay", "clip_norm", "epochs")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"FinetuneConfig.{name} must be >= 0, "
                                 f"got {getattr(self, name)}")
        if not self.num_steps and not self.epochs > 0:
            raise ValueError("FinetuneConfig: set epochs > 0 or num_steps > 0")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"FinetuneConfig.warmup_ratio must be in [0, 1], "
                             f"got {self.warmup_ratio}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"FinetuneConfig.dropout_rate must be in [0, 1), "
                             f"got {self.dropout_rate}")
        if self.learning_rate <= 0:
            raise ValueError(f"FinetuneConfig.learning_rate must be > 0, "
                             f"got {self.learning_rate}")

    @classmethod
    def from_config(cls, config: Any) -> "FinetuneConfig":
        """From a ConfigDict / dict / FinetuneConfig; unknown keys raise ValueError."""
        if isinstance(config, cls):
            return config
        values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown fine-tuning config keys {unknown}; "
                             f"valid: {sorted(names)}")
        return cls(**values)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return dataclasses.replace(self, **changes)


def check_max_seq_len(max_seq_len: int, spec: Any) -> None:
    """ValueError if rows of `max_seq_len` tokens need more positions than the model has.

    RoBERTa numbers positions from pad_id + 1, so it has max_positions - offset usable ones.
    """
    usable = spec.max_positions - spec.position_offset
    if max_seq_len > usable:
        raise ValueError(f"max_seq_len={max_seq_len} exceeds the model's {usable} usable "
                         f"positions (max_positions={spec.max_positions})")


# ------------------------------------------------------------------------------- data


def default_data_dir() -> Optional[Path]:
    """`../shared/data` beside the repository root, if that directory exists."""
    candidate = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def load_examples(task: Task, split: str, data_dir: str = "",
                  tfds_data_dir: str = "") -> list[Example]:
    """Labelled examples of one split: from `data_dir`, ../shared/data, or TFDS (in order).

    Raises:
        DataNotFoundError: the files are not there and TFDS cannot supply them.
    """
    tried = []
    if data_dir:
        if not Path(data_dir).is_dir():
            raise DataNotFoundError(f"data_dir {data_dir} does not exist")
        roots = [Path(data_dir)]
    else:
        roots = [d for d in (default_data_dir(),) if d is not None]
    for root in roots:
        try:
            return _labelled(task, split, read_split(task, root, split))
        except FileNotFoundError as e:
            tried.append(str(e))
    if data_dir:
        raise DataNotFoundError(f"{task.name}/{split}: {tried[0]}")
    try:
        return _labelled(task, split, read_tfds(task, split, tfds_data_dir or None))
    except ImportError as e:
        where = "; ".join(tried) or "no ../shared/data directory beside the repository"
        raise DataNotFoundError(
            f"no {split} data for task {task.name!r}: {where}; and TFDS is not available "
            f"({e}). Pass --config.data_dir=<GLUE/SuperGLUE files>.") from e


def _labelled(task: Task, split: str, examples: list[Example]) -> list[Example]:
    if not examples:
        raise DataNotFoundError(f"{task.name}/{split}: the split is empty")
    if any(ex.label is None for ex in examples):
        raise ValueError(f"{task.name}/{split} has unlabelled examples; fine-tuning and "
                         "evaluation need labels")
    return examples


def subsample(examples: Sequence[Example], limit: int, seed: int) -> list[Example]:
    """`limit` examples chosen by a permutation seeded with `seed` (all when limit is 0)."""
    if not limit or limit >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:limit])
    return [examples[i] for i in keep]


def head_width(task: Task) -> int:
    """Output width of the Bert head: 1 per choice for multiple choice, else num_labels."""
    return 1 if task.is_multiple_choice else task.num_labels


def choice_text(example: Example, choice: str) -> str:
    """Second segment of a (context, choice) pair: the question (if any) then the choice."""
    return f"{example.text_b} {choice}" if example.text_b else choice


def encode_examples(tokenizer: Any, task: Task, examples: Sequence[Example],
                    max_len: int) -> Arrays:
    """Token arrays and labels of `examples`.

    Returns:
        input_ids / attention_mask / token_type_ids: int32 [N, L] ([N, K, L] for multiple
        choice, one row per choice) and 'label' [N]: int32 class/choice ids, float32 targets
        for regression (omitted when any example is unlabelled).
    """
    if task.is_multiple_choice:
        k = task.num_choices
        if any(len(ex.choices or ()) != k for ex in examples):
            raise ValueError(f"{task.name}: every example needs {k} choices")
        texts_a = [ex.text_a for ex in examples for _ in range(k)]
        texts_b = [choice_text(ex, c) for ex in examples for c in ex.choices]
        flat = hf.encode(tokenizer, texts_a, texts_b, max_len)
        arrays = {key: v.reshape(len(examples), k, max_len) for key, v in flat.items()}
    else:
        pair = any(ex.text_b is not None for ex in examples)
        arrays = hf.encode(tokenizer, [ex.text_a for ex in examples],
                           [ex.text_b or "" for ex in examples] if pair else None, max_len)
    if all(ex.label is not None for ex in examples):
        dtype = np.float32 if task.is_regression else np.int32
        arrays["label"] = np.asarray([ex.label for ex in examples], dtype)
    return arrays


def num_rows(arrays: Mapping[str, np.ndarray]) -> int:
    return int(np.shape(arrays["input_ids"])[0])


def take_rows(arrays: Mapping[str, np.ndarray], idx: np.ndarray) -> Arrays:
    return {k: np.asarray(v)[idx] for k, v in arrays.items()}


def trim(arrays: Mapping[str, np.ndarray], bucket: int) -> Arrays:
    """Drop trailing all-padding columns, keeping a multiple of `bucket` (0: unchanged).

    The token axis is the last one of every input key; 'label' and others are untouched.
    """
    if not bucket:
        return dict(arrays)
    full = np.shape(arrays["input_ids"])[-1]
    used = int(np.max(np.sum(np.asarray(arrays["attention_mask"]) != 0, axis=-1), initial=1))
    length = min(full, bucket * math.ceil(used / bucket))
    return {k: (np.asarray(v)[..., :length] if k in INPUT_KEYS else v)
            for k, v in arrays.items()}


# ------------------------------------------------------------------------------ model


def build_classifier(checkpoint: hf.Checkpoint, task: Task | str, arch: Optional[Arch] = None,
                     *, dropout_rate: float = 0.1, seed: int = 0) -> tuple[Bert, dict]:
    """Bert with the task head; encoder (+ pooler) from `checkpoint`, sliced to `arch`.

    The head (classifier, and head_pooler when the checkpoint has no pooler) is freshly
    initialised from `seed`; an MLM head in the checkpoint is dropped.
    """
    task = get_task(task)
    target = checkpoint.arch if arch is None else arch
    body = checkpoint.params
    if target != checkpoint.arch:
        body = slice_params(body, checkpoint.arch, target)
    model = Bert(target, checkpoint.spec, num_labels=head_width(task),
                 dropout_rate=dropout_rate, attention_dropout_rate=dropout_rate)
    return model, merge_pretrained(fresh_params(model, seed), body)


def fresh_params(model: Bert, seed: int = 0) -> dict:
    """Random parameters of `model` (jit-compiled init: much faster than eager for BERT)."""
    return jax.jit(init_params, static_argnums=0)(model, jax.random.PRNGKey(seed))


def merge_pretrained(fresh: dict, pretrained: Mapping[str, Any]) -> dict:
    """`fresh` with every non-head subtree replaced by the pretrained one (shapes checked)."""
    out = {}
    for name, sub in fresh.items():
        if name in HEAD_KEYS or name not in pretrained:
            out[name] = sub
            continue
        out[name] = jax.tree_util.tree_map(_checked(name), sub, pretrained[name])
    return out


def _checked(name: str) -> Callable:
    def pick(expected, got):
        if tuple(np.shape(expected)) != tuple(np.shape(got)):
            raise ValueError(f"pretrained {name} has shape {np.shape(got)}, model expects "
                             f"{np.shape(expected)}")
        return jnp.asarray(got, jnp.asarray(expected).dtype)
    return pick


def task_logits(model: Bert, params: Any, inputs: Mapping[str, jax.Array],
                rng: Optional[jax.Array] = None) -> jax.Array:
    """Head outputs: [B, C] (classification), [B, 1] (regression), [B, K] (multiple choice).

    Multiple-choice inputs are [B, K, L]; they are scored as B·K rows and reshaped.
    Dropout is on iff `rng` is given.
    """
    ids = inputs["input_ids"]
    length = ids.shape[-1]
    flat = [inputs[k].reshape(-1, length) if k in inputs else None for k in INPUT_KEYS]
    kwargs = ({"deterministic": True} if rng is None
              else {"deterministic": False, "rngs": {"dropout": rng}})
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


def classification_loss_fn(model: Bert, kind: str = "classification") -> train.LossFn:
    """`loss_fn(params, batch, rng) -> (loss, metrics)` for `train.train`.

    kind: 'classification' / 'multiple_choice' (CE; metrics: accuracy) or 'regression'
    (MSE; metrics: mse). batch: INPUT_KEYS + 'label'.
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


# ------------------------------------------------------------------------- batching


@functools.lru_cache(maxsize=64)
def _epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Rows of global step `step`: positions step·B .. step·B + B - 1 of the concatenation of
    per-epoch permutations seeded by (seed, epoch). Stateless; [B] int64."""
    pos = step * batch_size + np.arange(batch_size)
    epochs, offsets = np.divmod(pos, n)
    return np.array([_epoch_permutation(n, seed, int(e))[o] for e, o in zip(epochs, offsets)])


def make_batch_fn(arrays: Mapping[str, np.ndarray], batch_size: int, seed: int,
                  bucket: int = 0, keys: Sequence[str] = INPUT_KEYS + ("label",)
                  ) -> Callable[[int], Arrays]:
    """`batch_fn(step) -> batch` for `train.train` (rows from `batch_indices`, trimmed)."""
    data = {k: np.asarray(arrays[k]) for k in keys if k in arrays}
    n = num_rows(data)
    if n == 0:
        raise ValueError("cannot train on an empty data set")

    def batch_fn(step: int) -> Arrays:
        return trim(take_rows(data, batch_indices(step, n, batch_size, seed)), bucket)
    return batch_fn


# ------------------------------------------------------------------------ prediction


@functools.lru_cache(maxsize=16)
def _jitted_logits(model: Bert) -> Callable:
    return jax.jit(functools.partial(task_logits, model))


def predict(model: Bert, params: Any, arrays: Mapping[str, np.ndarray], batch_size: int = 64,
            bucket: int = 16) -> np.ndarray:
    """Head outputs for every row, float32 [N, C] (see `task_logits`).

    Rows are processed in order of length (so trimming to `bucket` helps) in batches of
    exactly `batch_size` (the last one padded by repetition), then put back in order.
    """
    inputs = {k: np.asarray(arrays[k]) for k in INPUT_KEYS if k in arrays}
    n = num_rows(inputs)
    lengths = np.asarray(inputs["attention_mask"]).reshape(n, -1).sum(-1)
    order = np.argsort(lengths, kind="stable")
    fn = _jitted_logits(model)
    outs = []
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        padded = np.concatenate([rows, np.full(batch_size - rows.size, rows[-1])])
        out = fn(params, trim(take_rows(inputs, padded), bucket))
        outs.append(np.asarray(jax.device_get(out))[:rows.size])
    result = np.empty((n,) + outs[0].shape[1:], np.float32)
    result[order] = np.concatenate(outs)
    return result


def evaluate_task(model: Bert, params: Any, task: Task, arrays: Mapping[str, np.ndarray],
                  batch_size: int = 64, groups: Optional[Sequence] = None,
                  bucket: int = 16) -> dict[str, float]:
    """`compute_metrics` of the task on labelled `arrays`."""
    logits = predict(model, params, arrays, batch_size, bucket)
    return compute_metrics(task, logits, arrays["label"], groups)


# ------------------------------------------------------------------- best-dev keeping


def is_better(value: float, best: float) -> bool:
    """Strictly larger and finite (ties keep the earlier step)."""
    return bool(np.isfinite(value)) and value > best


def eval_schedule(num_steps: int, eval_every: int, start: int = 0) -> list[int]:
    """Steps after which `train.train` calls eval_fn: multiples of eval_every below
    num_steps, then num_steps; only those after `start` (a resumed run)."""
    steps = list(range(eval_every, num_steps, eval_every)) if eval_every else []
    return [s for s in steps + [num_steps] if s > start]


@dataclasses.dataclass
class BestDev:
    """The best evaluation so far by `metric` (host copies of the parameters)."""

    metric: str
    value: float = -math.inf
    step: int = -1
    metrics: dict = dataclasses.field(default_factory=dict)
    params: Any = None

    def update(self, step: int, metrics: Mapping[str, float], params: Any) -> bool:
        """Record (step, metrics, params) if metrics[self.metric] improves; True if it did."""
        if not is_better(float(metrics[self.metric]), self.value):
            return False
        self.value, self.step, self.metrics = float(metrics[self.metric]), step, dict(metrics)
        self.params = host_copy(params)
        return True


def host_copy(tree: Any) -> Any:
    """Numpy copies (safe against the train step donating its buffers)."""
    return jax.tree_util.tree_map(lambda x: np.array(x, copy=True), jax.device_get(tree))


# --------------------------------------------------------------------- saving/loading


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = np.ascontiguousarray(np.asarray(v))
    return out


def _unflat(flat: Mapping[str, np.ndarray]) -> dict:
    out: dict = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def save_classifier(path: str | os.PathLike, model: Bert, params: Mapping[str, Any],
                    task: Task, tokenizer_dir: Optional[str] = None,
                    info: Optional[Mapping[str, Any]] = None) -> Path:
    """HF directory (backbone, config with a 'finetune' entry, tokenizer) + the task head.

    Written beside the target and swapped in, so a crash leaves the previous copy intact.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    staging = path.with_name(f".{path.name}.new")
    if staging.exists():
        shutil.rmtree(staging)
    extra = {"finetune": {"task": task.name, "num_labels": model.num_labels,
                          "label_names": list(task.label_names), "head_file": HEAD_FILE,
                          **dict(info or {})}}
    hf.save(staging, params, model.arch, model.spec, tokenizer_dir=tokenizer_dir,
            extra_config=extra)
    head = {k: params[k] for k in HEAD_KEYS if k in params}
    save_file(_flat(head), str(staging / HEAD_FILE))
    old = path.with_name(f".{path.name}.old")
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        path.rename(old)
    staging.rename(path)
    if old.exists():
        shutil.rmtree(old)
    return path


def load_classifier(path: str | os.PathLike) -> tuple[Bert, dict, Task, dict]:
    """Inverse of `save_classifier`: (model, params, task, finetune info)."""
    from safetensors.numpy import load_file

    ckpt = hf.load(path)
    info = ckpt.config.get("finetune")
    if info is None:
        raise ValueError(f"{path} is not a fine-tuned classifier (no 'finetune' in config)")
    task = get_task(info["task"])
    model = Bert(ckpt.arch, ckpt.spec, num_labels=int(info["num_labels"]))
    head = _unflat(load_file(str(Path(path) / info["head_file"])))
    params = merge_pretrained(fresh_params(model), ckpt.params)
    missing = set(HEAD_KEYS) & set(params) - set(head)
    if missing:
        raise ValueError(f"{path}/{info['head_file']} lacks {sorted(missing)}")
    params.update({k: jax.tree_util.tree_map(jnp.asarray, head[k]) for k in HEAD_KEYS
                   if k in params})
    return model, params, task, info


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
    dev_groups: Optional[list]
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

    Raises (before any compilation): ValueError for a bad task name / arch / config value
    or a max_seq_len above the model's positions; DataNotFoundError for missing data.
    """
    cfg = FinetuneConfig.from_config(config)
    task = get_task(cfg.task)
    arch = Arch.parse(cfg.arch) if cfg.arch else None
    init_dir = cfg.init or hf.minilm_path()
    ckpt = hf.load(init_dir)
    check_max_seq_len(cfg.max_seq_len, ckpt.spec)
    train_ex = subsample(load_examples(task, "train", cfg.data_dir, cfg.tfds_data_dir),
                         cfg.max_train_examples, cfg.data_seed)
    dev_ex = subsample(load_examples(task, task.eval_splits[0], cfg.data_dir,
                                     cfg.tfds_data_dir), cfg.max_eval_examples, cfg.data_seed)
    tokenizer_dir = cfg.tokenizer or init_dir
    tok = hf.load_tokenizer(tokenizer_dir)
    train_arrays = encode_examples(tok, task, train_ex, cfg.max_seq_len)
    dev_arrays = encode_examples(tok, task, dev_ex, cfg.max_seq_len)
    groups = [ex.group for ex in dev_ex] if "em" in task.metric_names else None
    model, params = build_classifier(ckpt, task, arch, dropout_rate=cfg.dropout_rate,
                                     seed=cfg.seed)
    steps, every = resolve_steps(cfg, len(train_ex))
    return Prepared(cfg, task, model, params, train_arrays, dev_arrays, groups,
                    str(tokenizer_dir), steps, every)


def optimizer_for(cfg: FinetuneConfig, num_steps: int) -> train.OptimConfig:
    """AdamW with linear warm-up over warmup_ratio of the run, then linear decay to 0."""
    return train.OptimConfig(learning_rate=cfg.learning_rate, total_steps=num_steps,
                             warmup_steps=int(round(cfg.warmup_ratio * num_steps)),
                             weight_decay=cfg.weight_decay, clip_norm=cfg.clip_norm or None)


def fit(prep: Prepared, workdir: Optional[str | os.PathLike] = None,
        on_best: Optional[Callable[[BestDev], None]] = None) -> tuple[BestDev, train.TrainResult]:
    """Train `prep.model` with `train.train`, evaluating dev on its schedule; keep the best."""
    cfg = prep.config
    best = BestDev(prep.task.primary_metric)
    start = _restore_best(best, workdir, prep)
    pending = eval_schedule(prep.num_steps, prep.eval_every, start)

    def eval_fn(params) -> dict[str, float]:
        step = pending.pop(0)
        metrics = evaluate_task(prep.model, params, prep.task, prep.dev, cfg.eval_batch_size,
                                prep.dev_groups, cfg.length_bucket)
        if best.update(step, metrics, params) and on_best is not None:
            on_best(best)
        return {f"dev_{k}": v for k, v in metrics.items()}

    result = train_on_arrays(prep.model, prep.params, prep.task.kind, prep.train, cfg,
                             prep.num_steps, workdir=workdir, eval_fn=eval_fn,
                             eval_every=prep.eval_every, desc=f"finetune {prep.task.name}")
    return best, result


def train_on_arrays(model: Bert, params: Any, kind: str, arrays: Mapping[str, np.ndarray],
                    cfg: FinetuneConfig, num_steps: int, *,
                    workdir: Optional[str | os.PathLike] = None,
                    eval_fn: Optional[Callable[[Any], Mapping[str, float]]] = None,
                    eval_every: int = 0, desc: str = "finetune") -> train.TrainResult:
    """`train.train` on encoded `arrays` (INPUT_KEYS + 'label'; other keys ignored) with the
    optimiser, batch size, seed, bucket, logging and checkpointing of `cfg`."""
    tx = train.make_optimizer(optimizer_for(cfg, num_steps))
    return train.train(
        classification_loss_fn(model, kind), params, tx,
        make_batch_fn(arrays, cfg.batch_size, cfg.seed, cfg.length_bucket), num_steps,
        seed=cfg.seed, workdir=workdir,
        checkpoint_every=cfg.checkpoint_every if workdir else 0, eval_fn=eval_fn,
        eval_every=eval_every, log_every=cfg.log_every, progress=cfg.progress, desc=desc,
        stop_after=cfg.stop_after or None)


def _restore_best(best: BestDev, workdir, prep: Prepared) -> int:
    """On resume: the resumed step, and `best` filled from workdir/best_model if it is
    from at or before that step (later ones belong to the lost part and are recomputed)."""
    if workdir is None:
        return 0
    directory = Path(workdir) / "checkpoints"
    if not directory.is_dir():
        return 0
    start = ckpt_lib.manager(workdir).latest_step() or 0
    saved = Path(workdir) / BEST_DIR
    if start and (saved / "config.json").is_file():
        _, params, _, info = load_classifier(saved)
        if info.get("step", math.inf) <= start:
            best.value, best.step = float(info["dev"][best.metric]), int(info["step"])
            best.metrics, best.params = dict(info["dev"]), host_copy(params)
    return start


def _finished(workdir, num_steps: int) -> bool:
    directory = Path(workdir) / "checkpoints"
    return directory.is_dir() and ckpt_lib.manager(workdir).latest_step() == num_steps


def finetune(config: Any, workdir: Optional[str | os.PathLike] = None) -> dict:
    """Fine-tune per `config` (FinetuneConfig / ConfigDict / dict); see the module docstring.

    Returns a dict: task, num_steps, eval_every, train_examples, dev_examples, best_step,
    best (dev metrics at best_step), final (dev metrics at the last step), evals (one
    record per evaluation), train_loss (per log step), seconds, complete (False when
    stopped early by stop_after), and the objects 'model' and 'params' (best-dev
    parameters, host numpy). Everything but model/params also goes to workdir/metrics.json.
    """
    t0 = time.perf_counter()
    prep = prepare(config)
    cfg = prep.config
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        if _finished(workdir, prep.num_steps) and (Path(workdir) / "metrics.json").is_file():
            return _reload(workdir, prep)
    save = None
    if workdir is not None and cfg.save_best:
        save = functools.partial(_save_best, Path(workdir) / BEST_DIR, prep)
    best, result = fit(prep, workdir, on_best=save)
    summary = summarise(prep, best, result, time.perf_counter() - t0)
    if workdir is not None:
        with open(Path(workdir) / "metrics.json", "w") as f:
            json.dump(summary, f, indent=2)
    return dict(summary, model=prep.model, params=best.params)


def _save_best(path: Path, prep: Prepared, best: BestDev) -> None:
    save_classifier(path, prep.model, best.params, prep.task, prep.tokenizer_dir,
                    info={"step": best.step, "dev": best.metrics,
                          "config": dataclasses.asdict(prep.config)})


def _reload(workdir, prep: Prepared) -> dict:
    """A finished run: its metrics.json and (if saved) the best model."""
    with open(Path(workdir) / "metrics.json") as f:
        summary = json.load(f)
    params = None
    if (Path(workdir) / BEST_DIR).is_dir():
        params = host_copy(load_classifier(Path(workdir) / BEST_DIR)[1])
    return dict(summary, model=prep.model, params=params)


def summarise(prep: Prepared, best: BestDev, result: train.TrainResult,
              seconds: float) -> dict:
    """JSON-able record of a run (see `finetune`)."""
    evals = [r for r in result.history if r.get("eval")]
    losses = [{"step": r["step"], "loss": r["loss"]} for r in result.history
              if not r.get("eval") and "loss" in r]
    final = {k[4:]: v for k, v in evals[-1].items() if k.startswith("dev_")} if evals else {}
    return {
        "task": prep.task.name, "primary_metric": prep.task.primary_metric,
        "arch": str(prep.model.arch), "num_steps": prep.num_steps,
        "eval_every": prep.eval_every, "train_examples": num_rows(prep.train),
        "dev_examples": num_rows(prep.dev), "best_step": best.step, "best": best.metrics,
        "final": final, "evals": evals, "train_loss": losses,
        "complete": int(result.state.step) == prep.num_steps,
        "resumed_from": result.resumed_from, "seconds": seconds,
        "config": dataclasses.asdict(prep.config),
    }
