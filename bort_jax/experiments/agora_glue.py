"""Agora (de Wynter 2020, arXiv 2010.07990) vs plain fine-tuning on GLUE SST-2 and RTE.

Setting (scarce data): a small student (all-MiniLM-L6-v2 sliced to `student_arch`) is
fine-tuned on `n_train` training examples. The dev split is cut once, by `split_seed`, into
an *agora* half (Agora's evaluation set E: its errors seed the synthetic points, and it
selects the best round) and a *held-out* half that only the report sees
(`bort_jax.agora.split_dev`, disjointness asserted). The labeler is the full MiniLM
fine-tuned once per task (best step chosen on the agora half) on `labeler.train_examples`
training examples: 0 = the student's `n_train` examples, -1 = the whole training split,
N = N examples. Both subsets come from the same `data_seed` permutation
(`tasks.loading.subsample`), so the student's examples are a subset of a larger labeler set
(asserted); the dev split is never part of either.

For every seed:
  plain   = Agora's round 0: the student fitted on the real examples only;
  agora   = the student of the Agora round with the best agora-half metric;
both scored on the held-out half. Every round restarts from the same initial student and
trains the same number of steps on real + synthetic rows. Synthetic rows: each token
embedding (MiniLM's table) of a misclassified agora-half example is moved uniformly inside a
ball of radius `agora.radius` x the mean nearest-neighbour distance of the training tokens,
decoded to the nearest token, and labelled by the labeler (`bort_jax.agora`).

Controls: `control_restarts` (best of R + 1 plain fits on the agora half: as many fits as
Agora, no synthetic data) and `control_distill` (the student on its real rows plus the
labeler's pseudo-labels of random unlabeled training-split sentences outside the student's
and, where enough remain, the labeler's set; as many rows as Agora's largest synthetic pool)
and `control_budget` (one plain fit of (rounds fitted) x student.num_steps steps: Agora's
total step budget). `selection` picks the reported Agora round: the best on the agora half
(optimistic) or a fixed round. `sampler.kind` picks how Agora samples around an error
(nearest-token decoding, masked-LM resampling, span replacement or nearest real neighbours
from the unlabelled pool, `bort_jax.agora_text`); a comma-separated list runs one Agora arm
per sampler on the same seeds, sharing the plain fit and the controls (`seed<s>.json`
'arms'). `sampler_report` compares samplers without training students (`sampler_report`).

Workdir (resumable, see `bort_jax.experiments`):
    config.json
    <task>/labeler/              fine-tuning workdir of the labeler (`finetune.run_prepared`;
                                 metrics.json and best_model/ are kept, checkpoints dropped)
    <task>/seed<s>/<stage>/      student fits (round0, <sampler>/round<r>, restart<j>,
                                 distill, budget) with checkpoints; deleted once
                                 <task>/seed<s>.json exists
    <task>/seed<s>.json          one finished seed
    <task>/task.json             one finished task
    agora_glue.json, agora_glue.md   the report (written last)

    python scripts/agora_glue.py --config=configs/agora_glue.py --workdir=runs/agora_glue
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bort_jax import agora, agora_text, compile_cache, distill, hf, mlm_head
from bort_jax import experiments as ex
from bort_jax import finetune as ft
from bort_jax.arch import Arch, check_seq_len
from bort_jax.config import ConfigError, from_config, to_plain
from bort_jax.data import batching
from bort_jax.models.bert import Bert
from bort_jax.tasks import Task, compute_metrics, get_task
from bort_jax.tasks.encoding import Arrays, encode_examples
from bort_jax.tasks.loading import load_examples, subsample

NAME = "agora_glue"


# ------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """Optimisation of one fine-tuning stage; names and meaning as in `FinetuneConfig`."""

    num_steps: int
    batch_size: int
    learning_rate: float
    warmup_ratio: float
    weight_decay: float
    clip_norm: float
    dropout_rate: float
    log_every: int
    checkpoint_every: int  # 0 = only at the end of each fit


@dataclasses.dataclass(frozen=True)
class LabelerConfig(StageConfig):
    """The labeler's stage, its agora-half evaluations and its training data size."""

    eval_every: int  # 0 = only at the end
    train_examples: int  # 0 = the student's n_train, -1 = all, N = N examples

    def __post_init__(self) -> None:
        if self.train_examples < -1:
            raise ValueError(
                f"labeler.train_examples must be -1, 0 or positive, got {self.train_examples}"
            )


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """How Agora samples around an error (`bort_jax.agora_text`).

    kind: comma-separated samplers, each run as its own Agora arm on the same seeds (the
    first is the primary one: its pool size and step budget size the controls):
    'nearest_token' (perturbed token embeddings decoded to the nearest token, radius
    from config.agora), 'masked_lm' (mask_count tokens resampled from a masked LM at
    `temperature`, `top_k`; 0 = no filter), 'span' (a span_length window replaced by one of
    a real training row) or 'neighbour' (k of the `neighbours` nearest rows of the unlabelled
    pool, the distill control's `distill_pool_size` training-split sentences, in the source
    checkpoint's sentence-embedding space). The masked LM is `init` with its MLM head, or,
    when it has none (all-MiniLM-L6-v2), with a head fitted once per task on the frozen
    encoder over the labeler's training rows plus `head_rows` unlabelled training-split
    sentences (`mlm_head.fit_mlm_head`, head_steps AdamW steps; gold labels unused, dev
    never seen).
    whole_word: the masked LM resamples whole one-piece words into whole-word ids only
    (`agora_text.continuation_ids`), so no WordPiece word is split.
    """

    kind: str = "nearest_token"
    mask_count: int = 2
    temperature: float = 1.0
    top_k: int = 50
    span_length: int = 3
    head_steps: int = 300
    head_rows: int = 0
    whole_word: bool = True
    neighbours: int = 16

    def __post_init__(self) -> None:
        if not self.kinds or len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"sampler.kind={self.kind!r}: give distinct samplers")
        for kind in self.kinds:
            if kind not in agora_text.SAMPLERS:
                raise ValueError(f"sampler.kind: {kind!r} not in {agora_text.SAMPLERS}")
        for name in ("mask_count", "span_length", "head_steps", "neighbours"):
            if getattr(self, name) < 1:
                raise ValueError(f"sampler.{name} must be >= 1, got {getattr(self, name)}")
        if self.head_rows < 0:
            raise ValueError(f"sampler.head_rows must be >= 0, got {self.head_rows}")
        if not self.temperature > 0 or self.top_k < 0:
            raise ValueError("sampler.temperature must be > 0 and sampler.top_k >= 0")

    @property
    def kinds(self) -> list[str]:
        """The Agora arms, primary first."""
        return ex.parse_list(self.kind)


@dataclasses.dataclass(frozen=True)
class SamplerReportConfig:
    """The per-task sampler comparison (`sampler_report`): `samplers` (comma-separated
    kinds, "" = skip) on the first `n_centres` agora-half rows; `only` skips the students."""

    samplers: str = ""
    n_centres: int = 32
    only: bool = False

    def __post_init__(self) -> None:
        for kind in ex.parse_list(self.samplers):
            if kind not in agora_text.SAMPLERS:
                raise ValueError(f"sampler_report.samplers: {kind!r} not in {agora_text.SAMPLERS}")
        if self.n_centres < 1:
            raise ValueError(f"sampler_report.n_centres must be >= 1, got {self.n_centres}")
        if self.only and not self.samplers:
            raise ValueError("sampler_report.only needs sampler_report.samplers")


SELECTIONS = ("agora_half", "fixed")


@dataclasses.dataclass(frozen=True)
class GlueConfig:
    """One GLUE Agora experiment (see configs/agora_glue.py for every field)."""

    tasks: str  # comma-separated classification tasks
    init: str  # HF checkpoint dir; "" = the installed all-MiniLM-L6-v2
    data_dir: str  # GLUE file layout; "" = $BORT_DATA_DIR, else TFDS
    n_train: int
    data_seed: int
    max_dev_examples: int  # 0 = the whole dev split
    split_seed: int
    agora_fraction: float
    seeds: str
    max_seq_len: int
    length_bucket: int
    eval_batch_size: int
    student_arch: str  # "D,A,H,I" sliced from init
    n_examples: int  # perturbed sentences shown in the report
    control_restarts: bool
    control_distill: bool
    distill_pool_size: int
    compilation_cache: str  # JAX persistent cache dir (relative: in the workdir); "" off
    student: StageConfig
    labeler: LabelerConfig
    agora: dict  # AgoraConfig fields but seed; max_synthetic 0 = no cap
    sampler: SamplerConfig = SamplerConfig()
    sampler_report: SamplerReportConfig = SamplerReportConfig()
    selection: str = "agora_half"  # reported round: best on the agora half, or fixed_round
    fixed_round: int = -1  # selection 'fixed': this round (-1 = the last fitted round)
    control_budget: bool = False  # also: one plain fit with Agora's total step budget

    def __post_init__(self) -> None:
        ex.parse_seeds(self.seeds)
        if self.selection not in SELECTIONS:
            raise ConfigError(f"config.selection={self.selection!r} not in {SELECTIONS}")
        if self.fixed_round < -1:
            raise ConfigError(f"config.fixed_round must be >= -1, got {self.fixed_round}")
        for task in self.task_list:
            if task.kind != "classification":
                raise ConfigError(
                    f"config.tasks: {task.name} is a {task.kind} task; "
                    "agora_glue handles classification"
                )
        Arch.parse(self.student_arch)
        acfg = ex.agora_config(self.agora, 0)
        if "neighbour" in self.samplers_used and not (
            acfg.samples_per_error <= self.sampler.neighbours <= self.distill_pool_size
        ):
            raise ConfigError(
                "the neighbour sampler needs agora.samples_per_error <= sampler.neighbours "
                f"<= distill_pool_size, got {acfg.samples_per_error}, "
                f"{self.sampler.neighbours}, {self.distill_pool_size}"
            )

    @property
    def samplers_used(self) -> list[str]:
        """Every sampler kind the run needs: the Agora arms and the sampler report's."""
        return self.sampler.kinds + ex.parse_list(self.sampler_report.samplers)

    @property
    def task_list(self) -> list[Task]:
        names = ex.parse_list(self.tasks)
        if not names:
            raise ConfigError("config.tasks is empty")
        return [get_task(t) for t in names]

    @classmethod
    def from_config(cls, config: Any) -> GlueConfig:
        return from_config(cls, config)


def stage_config(section: StageConfig, cfg: GlueConfig, seed: int) -> ft.FinetuneConfig:
    """The FinetuneConfig of a `student` / `labeler` stage plus the shared fields."""
    values = {k: v for k, v in to_plain(section).items() if k != "train_examples"}
    return ft.FinetuneConfig(
        **values,
        seed=seed,
        max_seq_len=cfg.max_seq_len,
        length_bucket=cfg.length_bucket,
        eval_batch_size=cfg.eval_batch_size,
    )


def labeler_limit(cfg: GlueConfig) -> int:
    """Training examples of the labeler in `subsample` terms (0 = all)."""
    n = cfg.labeler.train_examples
    return cfg.n_train if n == 0 else (0 if n == -1 else n)


# -------------------------------------------------------------------------------- data


@dataclasses.dataclass
class TaskData:
    """Encoded splits of one task. agora_idx / heldout_idx index the (capped) dev split;
    train_idx / labeler_train_idx index the training split (student / labeler rows)."""

    task: Task
    train: Arrays
    agora_dev: Arrays
    heldout: Arrays
    agora_idx: np.ndarray
    heldout_idx: np.ndarray
    train_idx: np.ndarray
    labeler_train_idx: np.ndarray
    labeler_train: Arrays | None = None  # None = the student's `train`
    distill_pool: Arrays | None = None  # unlabeled-text control (gold labels unused)
    head_text: Arrays | None = None  # extra unlabeled rows for the sampler's MLM head

    @property
    def labeler_rows(self) -> Arrays:
        return self.train if self.labeler_train is None else self.labeler_train

    def sizes(self) -> dict[str, int]:
        return {
            "train": batching.num_rows(self.train),
            "labeler_train": batching.num_rows(self.labeler_rows),
            "dev": len(self.agora_idx) + len(self.heldout_idx),
            "agora_dev": len(self.agora_idx),
            "heldout": len(self.heldout_idx),
        }


def subsample_indices(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices [min(limit, n)] that `tasks.loading.subsample` keeps out of n items."""
    return np.asarray(subsample(range(n), limit, seed), np.int64)


def distill_pool_indices(
    n: int, train_idx: np.ndarray, labeler_idx: np.ndarray, size: int, seed: int
) -> np.ndarray:
    """Up to `size` training-split rows outside the student's set, preferring rows the
    labeler was not trained on either (random order, seeded)."""
    outside = np.setdiff1d(np.arange(n), np.union1d(train_idx, labeler_idx))
    if len(outside) < size:
        outside = np.setdiff1d(np.arange(n), train_idx)
    return np.random.default_rng(seed + 1).permutation(outside)[:size]


def load_task_data(task: Task, cfg: GlueConfig, tokenizer: Any) -> TaskData:
    """Scarce training subset (student), the labeler's training subset (same permutation, so
    a larger one contains the student's), dev split into disjoint agora / held-out halves."""
    all_train = load_examples(task, "train", cfg.data_dir)
    train_idx = subsample_indices(len(all_train), cfg.n_train, cfg.data_seed)
    lab_idx = subsample_indices(len(all_train), labeler_limit(cfg), cfg.data_seed)
    if len(lab_idx) >= len(train_idx):
        assert set(train_idx.tolist()) <= set(lab_idx.tolist()), (
            "the student's training rows must be a subset of the labeler's"
        )
    dev_ex = subsample(
        load_examples(task, task.eval_splits[0], cfg.data_dir), cfg.max_dev_examples, cfg.data_seed
    )
    agora_idx, heldout_idx = agora.split_dev(len(dev_ex), cfg.agora_fraction, cfg.split_seed)
    agora.assert_disjoint(agora_idx, heldout_idx)
    assert len(agora_idx) + len(heldout_idx) == len(dev_ex)
    encode = functools.partial(encode_examples, tokenizer, task, max_len=cfg.max_seq_len)
    rows = lambda idx: encode([all_train[i] for i in idx])
    dev = encode(dev_ex)
    pool = None
    if cfg.control_distill or "neighbour" in cfg.samplers_used:
        # the unlabelled pool: the distill control and the neighbour sampler share its rows
        pool = rows(
            distill_pool_indices(
                len(all_train), train_idx, lab_idx, cfg.distill_pool_size, cfg.data_seed
            )
        )
    head_text = None
    if cfg.sampler.head_rows:  # the masked-LM sampler's head (also in the sampler report)
        head_text = rows(
            distill_pool_indices(
                len(all_train), train_idx, lab_idx, cfg.sampler.head_rows, cfg.data_seed + 7
            )
        )
    return TaskData(
        task,
        rows(train_idx),
        batching.take(dev, agora_idx),
        batching.take(dev, heldout_idx),
        agora_idx,
        heldout_idx,
        train_idx,
        lab_idx,
        None if np.array_equal(lab_idx, train_idx) else rows(lab_idx),
        pool,
        head_text,
    )


def row_keys(arrays: Arrays) -> list[bytes]:
    """Content key of every row: its input_ids and token types as bytes."""
    ids = np.asarray(arrays["input_ids"], np.int32)
    types = np.asarray(arrays.get("token_type_ids", np.zeros_like(ids)), np.int32)
    return [a.tobytes() + b.tobytes() for a, b in zip(ids, types)]


def count_in(arrays: Arrays, keys: set[bytes], mask: np.ndarray | None = None) -> int:
    """Rows of `arrays` (where `mask`) whose content key is in `keys`."""
    rows = row_keys(arrays)
    mask = np.ones(len(rows), bool) if mask is None else np.asarray(mask, bool)
    return int(sum(r in keys for r, m in zip(rows, mask) if m))


# ------------------------------------------------------------------------------ models


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
    model, params = ft.build_classifier(ckpt, data.task, dropout_rate=lcfg.dropout_rate)
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


@dataclasses.dataclass(frozen=True)
class TextTools:
    """Token-embedding representation, nearest-token decoding and the perturbation mask
    over a checkpoint's embedding table [V, E] (special ids from `hf.special_ids`)."""

    table: np.ndarray
    special: tuple[int, ...]
    represent_fn: Callable
    decode_fn: Callable
    perturb_mask_fn: Callable
    continuation: tuple[int, ...] = ()  # WordPiece "##" ids (whole-word masked-LM sampling)


def text_tools(ckpt: hf.Checkpoint, tokenizer: Any) -> TextTools:
    """`TextTools` over the word embeddings of `ckpt` and the special ids of `tokenizer`."""
    table = np.asarray(ckpt.params["embeddings"]["word_embeddings"]["embedding"], np.float32)
    special = tuple(sorted(set(hf.special_ids(tokenizer).values())))
    return TextTools(
        table,
        special,
        agora.token_embedding_represent(table),
        agora.text_decode_fn(table, special),
        agora.text_perturb_mask(special),
        tuple(int(i) for i in agora_text.continuation_ids(tokenizer)),
    )


@functools.lru_cache(maxsize=None)
def labeler_logits_fn(model: Bert) -> Callable:
    """One function object per model, so the jitted sampler is compiled once."""
    return functools.partial(ft.task_logits, model)


def labeler_fn(labeler: Labeler) -> Any:
    """`inputs -> argmax labels`, jittable, labeler params traced (not baked in)."""
    return agora.argmax_labeler(labeler_logits_fn(labeler.model), labeler.params)


# ---------------------------------------------------------------------------- samplers


def masked_lm(
    ckpt: hf.Checkpoint, tokenizer: Any, data: TaskData, cfg: GlueConfig, cache_dir: Path | None
) -> tuple[Bert, Any]:
    """The masked LM of the 'masked_lm' sampler: `ckpt` with its own MLM head, or (none, as
    all-MiniLM-L6-v2) with a head fitted on the frozen encoder over static-masked labeler
    training rows (`mlm_head.fit_mlm_head`, cached in `cache_dir`). Training-split text only:
    neither dev half reaches the head."""
    if not ckpt.has_mlm_head:
        ids = np.asarray(data.labeler_rows["input_ids"])
        if data.head_text is not None:
            ids = np.concatenate([ids, np.asarray(data.head_text["input_ids"])])
        rows = distill.static_mask(ids, tokenizer, ckpt.spec.vocab_size, seed=cfg.data_seed)
        head = mlm_head.fit_mlm_head(
            ckpt,
            rows,
            mlm_head.HeadConfig(num_steps=cfg.sampler.head_steps),
            None if cache_dir is None else str(cache_dir),
        )
        ckpt = mlm_head.with_head(ckpt, head)
    return Bert(ckpt.arch, ckpt.spec, mlm_head=True), ckpt.params


def neighbour_sample_fn(ckpt: hf.Checkpoint, data: TaskData, cfg: GlueConfig) -> Any:
    """The 'neighbour' sampler over the unlabelled pool (`data.distill_pool`, gold labels
    unused) in `ckpt`'s frozen sentence-embedding space (masked mean, unit norm: what
    all-MiniLM-L6-v2 was trained for); the pool is embedded once here."""
    if data.distill_pool is None:
        raise ValueError("the neighbour sampler needs the unlabelled pool (distill_pool_size)")
    embed = agora_text.bert_embed_fn(Bert(ckpt.arch, ckpt.spec), ckpt.params)
    pool = agora.inputs_of(data.distill_pool)
    emb = agora_text.embed_rows(embed, pool, cfg.eval_batch_size)
    k = int(cfg.agora["samples_per_error"])
    return agora_text.neighbour_sampler(pool, emb, embed, k, cfg.sampler.neighbours)


def make_sample_fn(
    kind: str,
    cfg: GlueConfig,
    tools: TextTools,
    data: TaskData,
    mlm: tuple[Bert, Any] | None,
    mask_id: int,
    ckpt: hf.Checkpoint | None = None,
) -> Any:
    """`sample_fn` of `agora.run_agora` for a sampler kind (None = nearest-token decoding);
    'neighbour' needs the source checkpoint `ckpt`."""
    k, sc = int(cfg.agora["samples_per_error"]), cfg.sampler
    if kind == "nearest_token":
        return None
    if kind == "neighbour":
        if ckpt is None:
            raise ValueError("the neighbour sampler needs the source checkpoint")
        return neighbour_sample_fn(ckpt, data, cfg)
    if kind == "masked_lm":
        if mlm is None:
            raise ValueError("the masked_lm sampler needs a masked LM")
        vocab = tools.table.shape[0]
        return agora_text.masked_lm_sampler(
            agora_text.bert_mlm_fn(*mlm),
            tools.special,
            mask_id,
            vocab,
            k,
            sc.mask_count,
            sc.temperature,
            min(sc.top_k, vocab),
            continuation_ids=tools.continuation if sc.whole_word else (),
        )
    return agora_text.span_sampler(agora.inputs_of(data.train), tools.special, k, sc.span_length)


def nearest_token_radius(data: TaskData, tools: TextTools, cfg: GlueConfig, seed: int) -> float:
    """Absolute radius of the nearest-token sampler, as `run_agora` resolves it for `seed`."""
    acfg = ex.agora_config(cfg.agora, seed)
    rows = agora.inputs_of(data.train)
    n = batching.num_rows(data.train)
    if n > acfg.nn_max_points:
        pick = np.random.default_rng(acfg.seed).choice(n, acfg.nn_max_points, replace=False)
        rows = batching.take(rows, np.sort(pick))
    atoms = agora.reference_atoms(
        tools.represent_fn(rows), 1, tools.perturb_mask_fn(rows), acfg.nn_max_points, acfg.seed
    )
    return agora.resolve_radius(acfg, atoms)


def sampler_report(
    data: TaskData,
    labeler: Labeler,
    tools: TextTools,
    cfg: GlueConfig,
    sample_fns: Mapping[str, Any],
    radius: float,
    tokenizer: Any,
) -> dict:
    """Per sampler, one sampling round (rng PRNGKey(0), k = agora.samples_per_error) around
    the first `sampler_report.n_centres` agora-half rows: share of samples whose text changed,
    mean changed tokens, labeler = the centre's gold label, labeler = its own label of the
    centre, and the first `n_examples` decoded samples. sample_fns: {kind: sample_fn or None
    (nearest-token, at `radius`)}. Also the labeler's accuracy on the centres themselves."""
    n = min(cfg.sampler_report.n_centres, batching.num_rows(data.agora_dev))
    centers = batching.take(agora.inputs_of(data.agora_dev), np.arange(n))
    gold = np.asarray(data.agora_dev["label"])[:n]
    on_centres = predict_labels(labeler.model, labeler.params, centers, cfg)
    acfg, rng, lab = ex.agora_config(cfg.agora, 0), jax.random.PRNGKey(0), labeler_fn(labeler)
    out: dict[str, Any] = {
        "n_centres": n,
        "labeler_on_centres_equals_gold": float(np.mean(on_centres == gold)),
        "samplers": {},
    }
    for kind, fn in sample_fns.items():
        if fn is None:
            _, samples, labels = agora.sample_and_relabel(
                rng,
                tools.represent_fn(centers),
                lab,
                tools.decode_fn,
                acfg,
                radius=radius,
                center_inputs=centers,
                perturb_mask=tools.perturb_mask_fn(centers),
            )
        else:
            samples, labels = agora.resample_and_relabel(rng, centers, lab, fn)
        ids, labels = np.asarray(samples["input_ids"]), np.asarray(labels)
        rec = agora_text.sample_summary(centers["input_ids"], ids, labels, gold)
        rec["labeler_equals_centre_label"] = float(np.mean(labels == on_centres[:, None]))
        rec["examples"] = [
            {
                "original": tokenizer.decode(centers["input_ids"][i].tolist()),
                "sample": tokenizer.decode(ids[i, 0].tolist()),
                "gold": int(gold[i]),
                "labeler": int(labels[i, 0]),
            }
            for i in range(min(cfg.n_examples, n))
        ]
        out["samplers"][kind] = rec
    return out


# ------------------------------------------------------------------------------ a seed


def run_seed(
    data: TaskData,
    ckpt: hf.Checkpoint,
    labeler: Labeler,
    tools: TextTools,
    cfg: GlueConfig,
    seed: int,
    workdir: Path | None,
    sample_fns: Mapping[str, Any] | None = None,
) -> dict:
    """Plain (round 0) and, per Agora arm, the `selected_round`'s held-out metric of one
    seed, with histories and the controls.

    sample_fns: {sampler kind: `run_agora` sample_fn (None = nearest-token decoding)}, in
    order; the first is the primary arm (its keys are the record's top level, its largest
    synthetic pool sizes the distill control and its fits the budget control). Every arm
    shares the round-0 fit. Student fits resume from `workdir/<kind>/round<r>` checkpoints.
    """
    t0 = time.perf_counter()
    sample_fns = dict(sample_fns or {"nearest_token": None})
    task = data.task
    scfg = stage_config(cfg.student, cfg, seed)
    model, params = ft.build_classifier(
        ckpt, task, Arch.parse(cfg.student_arch), dropout_rate=scfg.dropout_rate, seed=seed
    )
    init = ft.host_copy(params)
    score = metric_fn(task)
    heldout_keys = set(row_keys(data.heldout))
    n_real = batching.num_rows(data.train)
    round0: dict[str, Any] = {}  # the plain fit, shared by every arm

    def arm(kind: str, sample_fn: Any) -> dict:
        def fit_fn(rows: Arrays, round_: int, rng: jax.Array) -> Any:
            if round_ == 0 and "params" in round0:
                return round0["params"]
            out = fit_student(
                model,
                init,
                task.kind,
                rows,
                scfg,
                ex.subdir(workdir, "round0" if round_ == 0 else f"{kind}/round{round_}"),
                f"student {kind} r{round_}",
            )
            if round_ == 0:
                round0["params"] = out
            return out

        def callback(round_: int, state: Any, train_set: Arrays, record: dict) -> None:
            synthetic = np.asarray(train_set["synthetic"], bool)
            assert int((~synthetic).sum()) == n_real, "real training rows changed"
            record["heldout_metric"], record["heldout_loss"] = score_rows(
                model, state, data.heldout, task, cfg
            )
            record["heldout_rows_in_train_real"] = count_in(train_set, heldout_keys, ~synthetic)
            record["heldout_rows_in_train_synthetic"] = count_in(train_set, heldout_keys, synthetic)
            record["distinct_synthetic"] = len(
                {key for key, m in zip(row_keys(train_set), synthetic) if m}
            )
            record["seconds"] = time.perf_counter() - t0
            ex.log(
                f"[{task.name} seed {seed} {kind}] round {round_}: agora-dev "
                f"{record['agora_dev_metric']:.3f} held-out {record['heldout_metric']:.3f} "
                f"errors {record['n_errors']} new {record['n_new']} "
                f"({record['seconds']:.0f} s)"
            )

        result = agora.run_agora(
            data.train,
            data.agora_dev,
            fit_fn,
            lambda state, inputs: predict_labels(model, state, inputs, cfg),
            tools.represent_fn,
            tools.decode_fn,
            labeler_fn(labeler),
            ex.agora_config(cfg.agora, seed),
            metric_fn=score,
            perturb_mask_fn=tools.perturb_mask_fn,
            callback=callback,
            sample_fn=sample_fn,
        )
        history = ex.jsonable(result.history)
        chosen = selected_round(history, result.best_round, cfg)
        return {
            "agora": history[chosen]["heldout_metric"],
            "agora_agora_dev": history[chosen]["agora_dev_metric"],
            "best_round": result.best_round,
            "selected_round": chosen,
            "radius": result.radius,
            "final_train_size": batching.num_rows(result.train_set),
            "history": history,
        }

    arms = {kind: arm(kind, fn) for kind, fn in sample_fns.items()}
    primary = arms[next(iter(arms))]
    history = primary["history"]
    fit = functools.partial(fit_student, model, init, task.kind)
    control = (
        restarts_control(data, fit, model, scfg, history[0], len(history) - 1, cfg, workdir)
        if cfg.control_restarts
        else None
    )
    distill = (
        distill_control(
            data, fit, model, scfg, labeler, cfg, max(r["n_synthetic"] for r in history), workdir
        )
        if cfg.control_distill
        else None
    )
    budget = None
    if cfg.control_budget:  # one plain fit as long as all of the primary arm's fits
        bcfg = scfg.replace(num_steps=scfg.num_steps * len(history))
        params = fit(data.train, bcfg, ex.subdir(workdir, "budget"), "budget")
        budget = dev_scores(data, model, params, cfg)
        budget["num_steps"] = bcfg.num_steps
    if distill is not None:
        ex.log(
            f"[{task.name} seed {seed}] distill control: {distill['n_extra']} pseudo-"
            f"labelled rows (labeler = gold {distill['labeler_equals_gold']}), agora-dev "
            f"{distill['agora_dev']:.3f} held-out {distill['heldout']:.3f}"
        )
    return {
        "seed": seed,
        "plain": history[0]["heldout_metric"],
        "plain_best_of": None if control is None else control["heldout"],
        "control": control,
        "distill": None if distill is None else distill["heldout"],
        "budget": None if budget is None else budget["heldout"],
        "budget_control": budget,
        "distill_control": distill,
        **primary,
        "plain_agora_dev": history[0]["agora_dev_metric"],
        "arms": arms,
        "seconds": time.perf_counter() - t0,
    }


def selected_round(history: list[dict], best_round: int, cfg: GlueConfig) -> int:
    """The reported Agora round: 'agora_half' = the best on the agora half (which Agora also
    sampled from, so its agora-half score is optimistic); 'fixed' = `fixed_round` (-1 or
    beyond the fitted rounds: the last fitted round), chosen without looking at any score."""
    if cfg.selection == "agora_half":
        return best_round
    last = len(history) - 1
    return last if cfg.fixed_round < 0 else min(cfg.fixed_round, last)


def restarts_control(
    data: TaskData,
    fit: Callable,
    model: Bert,
    scfg: ft.FinetuneConfig,
    round0: Mapping[str, Any],
    extra: int,
    cfg: GlueConfig,
    workdir: Path | None,
) -> dict:
    """Same number of fits as Agora, no synthetic data: round 0 plus `extra` plain fits
    with other training seeds (data order, dropout); the best on the agora half (first
    maximum) is scored on the held-out half. Separates 'selection over several fits' from
    'synthetic data'."""
    runs = [
        {
            "train_seed": scfg.seed,
            "agora_dev": round0["agora_dev_metric"],
            "heldout": round0["heldout_metric"],
            "heldout_loss": round0["heldout_loss"],
        }
    ]
    for j in range(1, extra + 1):
        rcfg = scfg.replace(seed=scfg.seed + 1000 * j)
        params = fit(data.train, rcfg, ex.subdir(workdir, f"restart{j}"), f"restart {j}")
        runs.append({"train_seed": rcfg.seed, **dev_scores(data, model, params, cfg)})
    best = int(np.argmax([r["agora_dev"] for r in runs]))
    return {"runs": runs, "best": best, "heldout": runs[best]["heldout"]}


def distill_control(
    data: TaskData,
    fit: Callable,
    model: Bert,
    scfg: ft.FinetuneConfig,
    labeler: Labeler,
    cfg: GlueConfig,
    n_extra: int,
    workdir: Path | None,
) -> dict:
    """The student trained (same init, steps, seed) on its real rows plus `n_extra` random
    unlabeled training-split sentences labelled by the labeler (Agora's largest synthetic
    pool size): what the labeler's knowledge gives without Agora's targeted sampling."""
    pick = np.random.default_rng(scfg.seed).permutation(batching.num_rows(data.distill_pool))[
        :n_extra
    ]
    rows = batching.take(data.distill_pool, pick)
    gold = rows["label"]
    rows["label"] = labeler.pool_labels[pick].astype(gold.dtype)
    params = fit(batching.concat(data.train, rows), scfg, ex.subdir(workdir, "distill"), "distill")
    return {
        "n_extra": int(len(pick)),
        "labeler_equals_gold": float(np.mean(rows["label"] == gold)) if len(pick) else None,
        **dev_scores(data, model, params, cfg),
    }


def perturbation_examples(
    data: TaskData,
    labeler: Labeler,
    tools: TextTools,
    cfg: GlueConfig,
    radius: float,
    tokenizer: Any,
) -> dict:
    """Share of perturbable tokens changed by one sampling round over the first 16 agora-half
    rows (`agora.token_change_rate`), and the first `n_examples` decoded samples."""
    n = min(16, batching.num_rows(data.agora_dev))
    centers = batching.take(agora.inputs_of(data.agora_dev), np.arange(n))
    acfg, rng = ex.agora_config(cfg.agora, 0), jax.random.PRNGKey(0)
    rate = agora.token_change_rate(rng, tools.table, centers, tools.special, radius, acfg)
    _, out, labels = agora.sample_and_relabel(
        rng,
        tools.represent_fn(centers),
        labeler_fn(labeler),
        tools.decode_fn,
        acfg,
        radius=radius,
        center_inputs=centers,
        perturb_mask=tools.perturb_mask_fn(centers),
    )
    ids = np.asarray(out["input_ids"])
    examples = [
        {
            "original": tokenizer.decode(centers["input_ids"][i].tolist()),
            "sample": tokenizer.decode(ids[i, 0].tolist()),
            "gold": int(data.agora_dev["label"][i]),
            "labeler": int(labels[i, 0]),
        }
        for i in range(min(cfg.n_examples, n))
    ]
    return {"radius": radius, "token_change_rate": rate, "examples": examples}


# ------------------------------------------------------------------------------ report


# two-sided 95 % quantiles t_{0.975, df} of Student's t, df = 1..30 (beyond: 1.96)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def paired_interval(differences: list[float]) -> tuple[float, float]:
    """Mean and 95 % t-interval half-width of per-seed paired differences d_s:
    t_{0.975, n-1} * std(d, ddof=1) / sqrt(n); NaN half-width for one seed."""
    d = np.asarray(differences, np.float64)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else float("nan")), float("nan")
    t = _T975[len(d) - 2] if len(d) - 1 <= len(_T975) else 1.96
    return float(d.mean()), float(t * d.std(ddof=1) / np.sqrt(len(d)))


# (seed-record key, report name) of the baselines Agora is paired against
BASELINES = (
    ("plain", "plain"),
    ("plain_best_of", "best_of"),
    ("distill", "distill"),
    ("budget", "budget"),
)


def paired_intervals(agora_metric: list[float], seeds: list[dict]) -> dict:
    """'ci_<name>': `paired_interval` of agora_metric[s] - seed[key] for every baseline that
    ran on every seed (`BASELINES`)."""
    return {
        f"ci_{name}": paired_interval([a - s[key] for a, s in zip(agora_metric, seeds)])
        for key, name in BASELINES
        if all(s.get(key) is not None for s in seeds)
    }


def summarise_task(seeds: list[dict]) -> dict:
    """Means and sample stds over seeds of plain, Agora, their difference and the controls;
    paired per-seed differences (Agora minus each baseline, held-out half) with 95 %
    t-intervals ('ci_<baseline>': [mean, half-width]); and the selection gap, agora-half
    minus held-out metric of the reported model, for plain and Agora."""
    plain = ex.mean_std([s["plain"] for s in seeds])
    ag = ex.mean_std([s["agora"] for s in seeds])
    delta = ex.mean_std([s["agora"] - s["plain"] for s in seeds])
    out = {
        "plain_mean": plain[0],
        "plain_std": plain[1],
        "agora_mean": ag[0],
        "agora_std": ag[1],
        "delta_mean": delta[0],
        "delta_std": delta[1],
        "wins": sum(s["agora"] > s["plain"] for s in seeds),
        "ties": sum(s["agora"] == s["plain"] for s in seeds),
    }
    out.update(paired_intervals([s["agora"] for s in seeds], seeds))
    for key, name in BASELINES[1:]:
        if all(s.get(key) is not None for s in seeds):
            out[f"{name}_mean"], out[f"{name}_std"] = ex.mean_std([s[key] for s in seeds])
    out["gap_plain"] = float(np.mean([s["plain_agora_dev"] - s["plain"] for s in seeds]))
    out["gap_agora"] = float(np.mean([s["agora_agora_dev"] - s["agora"] for s in seeds]))
    if all("arms" in s for s in seeds):
        out["arms"] = {kind: arm_summary(seeds, kind) for kind in seeds[0]["arms"]}
    return out


def arm_summary(seeds: list[dict], kind: str) -> dict:
    """One Agora arm over seeds: held-out mean/std, paired 95 % intervals against plain and
    each control that ran ('ci_<baseline>'), the selection gap, the labeler's agreement with
    the centres' gold labels over every generated point, and the final pool's distinct rows.
    """
    arms = [s["arms"][kind] for s in seeds]
    mean, std = ex.mean_std([a["agora"] for a in arms])
    out = {"agora_mean": mean, "agora_std": std}
    out.update(paired_intervals([a["agora"] for a in arms], seeds))
    out["gap"] = float(np.mean([a["agora_agora_dev"] - a["agora"] for a in arms]))
    new = [(r["n_new"], r["labeler_agreement"]) for a in arms for r in a["history"] if r["n_new"]]
    total = sum(n for n, _ in new)
    out["labeler_agreement"] = sum(n * g for n, g in new) / total if total else float("nan")
    last = [a["history"][-1] for a in arms]
    out["synthetic"] = float(np.mean([r["n_synthetic"] for r in last]))
    out["distinct_synthetic"] = float(np.mean([r.get("distinct_synthetic", 0) for r in last]))
    return out


def fmt_mean_std(mean: float, std: float) -> str:
    """A fraction's mean ± sd in percentage points: '71.0 ± 1.0'."""
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def fmt_interval(ci: Sequence[float]) -> str:
    """A paired difference (mean, half-width) in signed percentage points: '+5.0 ± 2.5'."""
    return f"{100 * ci[0]:+.1f} ± {100 * ci[1]:.1f}"


def markdown(report: Mapping[str, Any]) -> str:
    """Main table, paired intervals, controls, per-round history, perturbation examples
    and the sampler report."""
    pct = fmt_mean_std
    trained = {n: t for n, t in report["tasks"].items() if "seeds" in t}
    if not trained:  # sampler_report.only
        return "\n".join(sampler_markdown(report)[1:]) + "\n"
    lines = [
        "| task | train | dev (agora / held-out) | labeler train | labeler held-out "
        "| plain held-out | plain best-of-(R+1) held-out | Agora held-out "
        "| Δ (Agora − plain) | Agora wins | reported round (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in trained.items():
        s, z = t["summary"], t["sizes"]
        rounds = np.mean([x["selected_round"] for x in t["seeds"]])
        best_of = pct(s["best_of_mean"], s["best_of_std"]) if "best_of_mean" in s else "not run"
        lines.append(
            f"| {name} | {z['train']} | {z['dev']} ({z['agora_dev']} / {z['heldout']}) | "
            f"{z['labeler_train']} | {100 * t['labeler']['heldout']:.1f} | "
            f"{pct(s['plain_mean'], s['plain_std'])} | "
            f"{best_of} | {pct(s['agora_mean'], s['agora_std'])} | "
            f"{pct(s['delta_mean'], s['delta_std'])} | {s['wins']}/{len(t['seeds'])} | "
            f"{rounds:.1f} |"
        )
    ci = fmt_interval
    lines += [
        "",
        "Paired per-seed differences on the held-out half (Agora minus baseline; mean ± 95 % "
        "t-interval half-width) and the selection gap (agora-half minus held-out metric of "
        "the reported model; positive = the agora half flatters it):",
        "",
        "| task | selection | seeds | − plain | − best-of-(R+1) | − distill "
        "| − plain, Agora's steps | gap plain | gap Agora |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in trained.items():
        s = t["summary"]
        keys = ("ci_plain", "ci_best_of", "ci_distill", "ci_budget")
        cells = [ci(s[k]) if k in s else "not run" for k in keys]
        lines.append(
            f"| {name} | {report['config']['selection']} | {len(t['seeds'])} | "
            f"{' | '.join(cells)} | "
            f"{100 * s['gap_plain']:+.1f} | {100 * s['gap_agora']:+.1f} |"
        )
    armed = [(n, t) for n, t in trained.items() if "arms" in t["summary"]]
    if armed:
        lines += [
            "",
            "Agora arms (one per sampler, same seeds and controls; paired differences on the "
            "held-out half, mean ± 95 % half-width):",
            "",
            "| task | sampler | Agora held-out | − plain | − best-of-(R+1) | − distill "
            "| − plain, Agora's steps | labeler = gold on new | synthetic rows (distinct) "
            "| gap |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, t in armed:
            for kind, a in t["summary"]["arms"].items():
                keys = ("ci_plain", "ci_best_of", "ci_distill", "ci_budget")
                cells = [ci(a[k]) if k in a else "not run" for k in keys]
                agree = a["labeler_agreement"]
                lines.append(
                    f"| {name} | {kind} | {pct(a['agora_mean'], a['agora_std'])} | "
                    f"{' | '.join(cells)} | "
                    f"{'-' if agree != agree else f'{100 * agree:.1f}%'} | "
                    f"{a['synthetic']:.0f} ({a['distinct_synthetic']:.0f}) | "
                    f"{100 * a['gap']:+.1f} |"
                )
    distilled = [(n, t) for n, t in trained.items() if "distill_mean" in t["summary"]]
    if distilled:
        lines += [
            "",
            "Control: student on real rows + labeler pseudo-labels of random "
            "unlabeled training-split text (as many rows as Agora's largest synthetic "
            "pool):",
            "",
            "| task | extra rows (mean) | labeler = gold on them | held-out |",
            "|---|---:|---:|---:|",
        ]
        for name, t in distilled:
            d = [x["distill_control"] for x in t["seeds"]]
            agree = np.mean(
                [x["labeler_equals_gold"] for x in d if x["labeler_equals_gold"] is not None]
                or [np.nan]
            )
            lines.append(
                f"| {name} | {np.mean([x['n_extra'] for x in d]):.0f} | "
                f"{100 * agree:.1f} | "
                f"{pct(t['summary']['distill_mean'], t['summary']['distill_std'])} |"
            )
    lines += [
        "",
        "Per round (agora-dev selects; held-out is reported only):",
        "",
        "| task | seed | round | train rows | synthetic | agora-dev | held-out | errors "
        "| new points | labeler = gold on new | held-out rows in train |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in trained.items():
        for s in t["seeds"]:
            for r in s["history"]:
                agree = r["labeler_agreement"]
                lines.append(
                    f"| {name} | {s['seed']} | {r['round']}{'*' if r['is_best'] else ''} | "
                    f"{r['train_size']} | {r['n_synthetic']} | "
                    f"{100 * r['agora_dev_metric']:.1f} | {100 * r['heldout_metric']:.1f} | "
                    f"{r['n_errors']} | {r['n_new']} | "
                    f"{'-' if agree != agree else f'{100 * agree:.0f}%'} | "
                    f"{r['heldout_rows_in_train_real']} + "
                    f"{r['heldout_rows_in_train_synthetic']} |"
                )
    lines += [
        "",
        "(* = improved the agora-dev metric; held-out rows in train = exact "
        "content matches among real + synthetic rows.)",
        "",
    ]
    for name, t in trained.items():
        p = t["perturbation"]
        lines.append(
            f"{name}: nearest-token radius {p['radius']:.3f}, "
            f"{100 * p['token_change_rate']:.1f}% of perturbable tokens changed."
        )
        for e in p["examples"]:
            lines.append(
                f"- `{e['original']}` → `{e['sample']}` (gold {e['gold']}, labeler {e['labeler']})"
            )
    lines += sampler_markdown(report)
    return "\n".join(lines) + "\n"


def sampler_markdown(report: Mapping[str, Any]) -> list[str]:
    """The sampler report of every task that has one (empty list otherwise)."""
    tasks = [(n, t["sampler_report"]) for n, t in report["tasks"].items() if "sampler_report" in t]
    if not tasks:
        return []
    lines = [
        "",
        "Samplers (one round around the first agora-half rows; labeler = gold is over samples):",
        "",
        "| task | sampler | centres | text changed | tokens changed | labeler = gold "
        "| labeler = its centre label | labeler = gold on centres |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in tasks:
        for kind, x in r["samplers"].items():
            lines.append(
                f"| {name} | {kind} | {r['n_centres']} | {100 * x['changed']:.0f}% | "
                f"{x['tokens_changed']:.2f} | {100 * x['labeler_equals_gold']:.1f}% | "
                f"{100 * x['labeler_equals_centre_label']:.1f}% | "
                f"{100 * r['labeler_on_centres_equals_gold']:.1f}% |"
            )
    lines.append("")
    for name, r in tasks:
        for kind, x in r["samplers"].items():
            for e in x["examples"]:
                lines.append(
                    f"- {name} {kind}: `{e['original']}` → `{e['sample']}` "
                    f"(gold {e['gold']}, labeler {e['labeler']})"
                )
    return lines


# ------------------------------------------------------------------------------ driver


def run_task(
    task: Task,
    ckpt: hf.Checkpoint,
    init_dir: str,
    tokenizer: Any,
    tools: TextTools,
    cfg: GlueConfig,
    workdir: Path | None,
) -> dict:
    """The labeler, the masked LM (if a sampler needs one), the sampler report (if asked
    for), every seed (each a resumable stage) and the perturbation examples."""
    t0 = time.perf_counter()
    data = load_task_data(task, cfg, tokenizer)
    ex.log(f"[{task.name}] sizes {data.sizes()}")
    labeler = train_labeler(ckpt, init_dir, data, cfg, ex.subdir(workdir, "labeler"))
    ex.drop_dir(ex.subdir(workdir, "labeler", "checkpoints"))  # finished: best_model stays
    ex.log(
        f"[{task.name}] labeler agora-dev {labeler.record['agora_dev']:.3f} held-out "
        f"{labeler.record['heldout']:.3f} ({labeler.record['seconds']:.0f} s)"
    )
    kinds = ex.parse_list(cfg.sampler_report.samplers)
    mlm = None
    if "masked_lm" in cfg.samplers_used:
        mlm = masked_lm(ckpt, tokenizer, data, cfg, ex.subdir(workdir, "mlm_head"))
    mask_id = hf.special_ids(tokenizer)["mask"]
    make = functools.cache(
        functools.partial(make_sample_fn, cfg=cfg, tools=tools, data=data, mlm=mlm, ckpt=ckpt)
    )
    record: dict[str, Any] = {
        "sizes": data.sizes(),
        "agora_idx": data.agora_idx,
        "heldout_idx": data.heldout_idx,
        "train_idx": data.train_idx,
        "labeler_train_idx": data.labeler_train_idx,
        "labeler": labeler.record,
    }
    if kinds:
        record["sampler_report"] = sampler_report(
            data,
            labeler,
            tools,
            cfg,
            {kind: make(kind, mask_id=mask_id) for kind in kinds},
            nearest_token_radius(data, tools, cfg, ex.parse_seeds(cfg.seeds)[0]),
            tokenizer,
        )
    if cfg.sampler_report.only:
        return {**record, "seconds": time.perf_counter() - t0}
    sample_fns = {kind: make(kind, mask_id=mask_id) for kind in cfg.sampler.kinds}
    results = []
    for seed in ex.parse_seeds(cfg.seeds):
        results.append(
            ex.stage(
                ex.subdir(workdir, f"seed{seed}.json"),
                functools.partial(
                    run_seed,
                    data,
                    ckpt,
                    labeler,
                    tools,
                    cfg,
                    seed,
                    ex.subdir(workdir, f"seed{seed}"),
                    sample_fns,
                ),
            )
        )
        ex.drop_dir(ex.subdir(workdir, f"seed{seed}"))
    radius = nearest_token_radius(data, tools, cfg, ex.parse_seeds(cfg.seeds)[0])
    pert = perturbation_examples(data, labeler, tools, cfg, radius, tokenizer)
    return {
        **record,
        "seeds": results,
        "summary": summarise_task(results),
        "perturbation": pert,
        "seconds": time.perf_counter() - t0,
    }


def run(config: Any, workdir: str | os.PathLike | None = None) -> dict:
    """Every task and seed; resumable in `workdir` (see the module docstring).

    Returns the report (config, init, tasks: {name: run_task record}, markdown, seconds);
    with a workdir it is also written to agora_glue.json / agora_glue.md.

    Raises (before anything is trained): ConfigError / ValueError for a bad config, a
    max_seq_len the model cannot hold or a workdir of another config; DataNotFoundError.
    """
    t0 = time.perf_counter()
    cfg = GlueConfig.from_config(config)
    work = ex.open_workdir(workdir, cfg)
    if work is not None and cfg.compilation_cache:
        compile_cache.enable(work / cfg.compilation_cache, min_compile_secs=0.2)
    init_dir = cfg.init or hf.minilm_path()
    ckpt = hf.load(init_dir)
    check_seq_len(cfg.max_seq_len, ckpt.spec, "max_seq_len")
    tokenizer = hf.load_tokenizer(init_dir)
    tools = text_tools(ckpt, tokenizer)
    tasks = {}
    for task in cfg.task_list:
        task_dir = ex.subdir(work, task.name)
        tasks[task.name] = ex.stage(
            ex.subdir(task_dir, "task.json"),
            functools.partial(run_task, task, ckpt, str(init_dir), tokenizer, tools, cfg, task_dir),
        )
    report = ex.jsonable(
        {
            "config": to_plain(cfg),
            "init": str(init_dir),
            "tasks": tasks,
            "seconds": time.perf_counter() - t0,
        }
    )
    report["markdown"] = markdown(report)
    ex.write_report(work, NAME, report, report["markdown"])
    return report
