"""The agora_glue experiment's config: one GLUE Agora run (`GlueConfig`) and its sections.

Every field is spelled out in configs/agora_glue.py; `GlueConfig.from_config` names an
unknown key by its dotted path.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bort_jax import experiments as ex
from bort_jax import finetune as ft
from bort_jax import hf, hub, precision
from bort_jax.agora import text
from bort_jax.arch import Arch
from bort_jax.config import ConfigError, from_config, to_plain
from bort_jax.data import mlm
from bort_jax.models.bert import ModelOptions
from bort_jax.tasks import Task, get_task


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
    """How Agora samples around an error (`bort_jax.agora.text`).

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
    (`agora.text.continuation_ids`), so no WordPiece word is split.
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
            if kind not in text.SAMPLERS:
                raise ValueError(f"sampler.kind: {kind!r} not in {text.SAMPLERS}")
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
            if kind not in text.SAMPLERS:
                raise ValueError(f"sampler_report.samplers: {kind!r} not in {text.SAMPLERS}")
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
    student_arch: str  # "D,A,H,I" sliced from init; with student_init: its shape or ""
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
    dtype: str = "auto"  # computation dtype of every fit (precision.DTYPES); params float32
    model: ModelOptions = ModelOptions()  # layout of every fit: scan_layers, remat, vocab_multiple
    student_init: str = ""  # HF checkpoint dir / hf: id the student starts from; "" = sliced

    def __post_init__(self) -> None:
        ex.parse_seeds(self.seeds)
        precision.check_dtype(self.dtype, "config.dtype")
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
        if not (self.student_arch or self.student_init):
            raise ConfigError("config.student_arch is empty: give D,A,H,I or config.student_init")
        if self.student_arch:
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


def student_init_dir(cfg: GlueConfig, labeler_dir: str) -> str | None:
    """The local directory of `cfg.student_init` (hub ids resolved), checked before any work;
    None when the student is sliced from `init`.

    Its shape, read from its config.json, must be `student_arch` when that is given; its
    vocabulary must be the labeler's (`labeler_dir`) id for id, since every row is encoded
    with the labeler's tokenizer (`mlm.vocab_disagreement`; teacher = the labeler).

    Raises:
        ConfigError: the shapes differ (both named), the vocabularies differ (the first
            difference named), or student_init has no config.json or tokenizer.
    """
    if not cfg.student_init:
        return None
    where = f"config.student_init={cfg.student_init}"
    path = Path(hub.resolve(cfg.student_init))
    if not (path / "config.json").is_file():
        raise ConfigError(f"{where}: no checkpoint (config.json) at {path}")
    arch, _ = hf.config_to_arch_spec(json.loads((path / "config.json").read_text()), str(path))
    if cfg.student_arch and Arch.parse(cfg.student_arch) != arch:
        raise ConfigError(
            f"config.student_arch={cfg.student_arch!r} is {Arch.parse(cfg.student_arch)}, but "
            f"{where} is {arch}: set student_arch to '' (the checkpoint's shape) or to {arch}"
        )
    try:
        problem = mlm.vocab_disagreement(str(path), labeler_dir)
    except FileNotFoundError as e:
        raise ConfigError(f"{where}: {e}") from e
    if problem is not None:
        raise ConfigError(
            f"{where}: its vocabulary is not the labeler's (config.init, {labeler_dir}): {problem}"
        )
    return str(path)


def stage_config(section: StageConfig, cfg: GlueConfig, seed: int) -> ft.FinetuneConfig:
    """The FinetuneConfig of a `student` / `labeler` stage plus the shared fields (max_seq_len,
    length_bucket, eval_batch_size, dtype, model)."""
    values = {k: v for k, v in to_plain(section).items() if k != "train_examples"}
    return ft.FinetuneConfig(
        **values,
        seed=seed,
        max_seq_len=cfg.max_seq_len,
        length_bucket=cfg.length_bucket,
        eval_batch_size=cfg.eval_batch_size,
        dtype=cfg.dtype,
        model=cfg.model,
    )


def labeler_limit(cfg: GlueConfig) -> int:
    """Training examples of the labeler in `subsample` terms (0 = all)."""
    n = cfg.labeler.train_examples
    return cfg.n_train if n == 0 else (0 if n == -1 else n)
