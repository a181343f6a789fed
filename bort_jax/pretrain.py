"""KD pretraining of an extracted architecture (Bort, arXiv 2010.10499 Sec. 3).

`pretrain(config, workdir)` loads the teacher, prepares static-masked data and the teacher's
outputs (cached on disk), initialises the student (`init_method`: random, or sliced from the
checkpoint `config.init`, else from the teacher), trains it with `train.train` (periodic
atomic checkpoints, exact resume), evaluates the held-out KD objective every `eval_every`
steps, and writes `metrics.jsonl`, `loss_curve.png`, `summary.json` and the student in Hugging
Face format (`workdir/export`). The student computes in `config.dtype` ('auto': bfloat16 on
TPU/GPU, float32 on CPU; `bort_jax.precision`); its parameters and optimizer state are float32.
`config.model` (`models.bert.ModelOptions`) is the layout it trains in (scanned layers,
remat, padded vocabulary); the export is canonical whatever it is.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any

from bort_jax import distill, files, hf, hub, precision, sharding, train
from bort_jax.arch import Arch, param_count
from bort_jax.config import from_config
from bort_jax.data import mlm
from bort_jax.models.bert import ModelOptions, slice_params_check


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """KD pretraining of one student (configs/pretrain_bort.py spells out every field)."""

    arch: Arch = Arch(2, 12, 384, 768)
    teacher_dir: str = ""  # HF directory; '' = installed all-MiniLM-L6-v2
    student_tokenizer_dir: str = ""  # if set, must agree with the teacher's vocabulary
    init_method: str = "slice"  # slice (from `init`, else the teacher) | random
    init: str = ""  # HF checkpoint directory to slice from; '' = the teacher
    corpus: str = "embedded"  # embedded | path | tfds:NAME[:SPLIT]
    max_seq_len: int = 64
    max_sequences: int = 2048
    heldout_fraction: float = 0.05
    cache_dir: str = ""  # '' = <workdir>/teacher_cache
    seed: int = 0
    batch_size: int = 16
    num_steps: int = 400
    dropout_rate: float = 0.1
    dtype: str = "auto"  # computation: bfloat16 | float32 | auto (bf16 on TPU/GPU); params fp32
    optim: train.OptimConfig = train.OptimConfig(learning_rate=5e-4, warmup_ratio=0.05)
    kd: distill.KDWeights = distill.KDWeights()
    checkpoint_every: int = 100
    eval_every: int = 100
    log_every: int = 20
    progress: bool = True
    mesh: sharding.MeshConfig = sharding.MeshConfig()  # used when there are > 1 devices
    model: ModelOptions = ModelOptions()  # student layout: scan_layers, remat, vocab_multiple

    def __post_init__(self):
        if self.init_method not in ("random", "slice"):
            raise ValueError(f"config.init_method={self.init_method!r}; use 'random' or 'slice'")
        precision.check_dtype(self.dtype, "config.dtype")
        for name in ("num_steps", "batch_size", "max_seq_len", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"config.{name} must be positive, got {getattr(self, name)}")


def validate(config: Any) -> PretrainConfig:
    """The config as a `PretrainConfig`; named errors before any expensive work."""
    cfg = from_config(PretrainConfig, config)
    for key in ("teacher_dir", "init", "student_tokenizer_dir"):
        path = getattr(cfg, key)
        if path and not os.path.isdir(hub.resolve(path)):
            raise FileNotFoundError(f"config.{key}={path} does not exist")
    return cfg


def pretrain(config: Any, workdir: str) -> dict[str, Any]:
    """KD-pretrain `config.arch`; resumable from `workdir` (see the module docstring)."""
    cfg = validate(config)
    if not files.is_remote(workdir):
        os.makedirs(workdir, exist_ok=True)
    teacher_dir = hub.resolve(cfg.teacher_dir) or hf.minilm_path()
    teacher = distill.Teacher.load(teacher_dir)
    source = None
    if cfg.init_method == "slice":
        source = hf.load(cfg.init) if cfg.init else teacher.checkpoint
        slice_params_check(source.arch, cfg.arch)
    if cfg.student_tokenizer_dir:
        mlm.check_vocab_compat(hub.resolve(cfg.student_tokenizer_dir), teacher_dir)
    data = distill.prepare(
        teacher,
        teacher_dir,
        cfg.corpus,
        cfg.max_seq_len,
        max_sequences=cfg.max_sequences,
        heldout_fraction=cfg.heldout_fraction,
        seed=cfg.seed,
        cache_dir=cfg.cache_dir or os.path.join(workdir, "teacher_cache"),
        student_depths=(cfg.arch.depth,),
        kd=cfg.kd,
    )
    student = distill.build_student(
        cfg.arch,
        data,
        teacher.checkpoint.spec,
        cfg.kd,
        seed=cfg.seed,
        dropout=cfg.dropout_rate,
        source=source,
        options=cfg.model,
        dtype=precision.compute_dtype(cfg.dtype, "config.dtype"),
    )
    heldout = distill.HeldoutEvaluator(student.loss_fn, data, cfg.batch_size)
    initial = heldout(student.params, 0)
    loop = train.LoopConfig(
        num_steps=cfg.num_steps,
        seed=cfg.seed,
        log_every=cfg.log_every,
        eval_every=cfg.eval_every,
        checkpoint_every=cfg.checkpoint_every,
        progress=cfg.progress,
        desc=f"pretrain {cfg.arch}",
    )
    with sharding.use_mesh(cfg.mesh):
        result = train.train(
            student.loss_fn,
            student.params,
            distill.train_batches(data, cfg.batch_size, cfg.seed),
            loop,
            cfg.optim,
            evaluators=[heldout],
            workdir=workdir,
        )
    # the export is canonical whatever the training layout: unrolled layers, V vocabulary rows
    params = cfg.model.to_canonical(
        sharding.host_get(result.state.params["student"]), cfg.arch, student.spec
    )
    export = hf.save(
        os.path.join(workdir, "export"), params, cfg.arch, student.spec, tokenizer_dir=teacher_dir
    )
    evals = result.evals
    summary = {
        "arch": str(cfg.arch),
        "compute_dtype": str(student.model.dtype),
        "params": param_count(cfg.arch, student.spec, mlm_head=True),
        "teacher": teacher_dir,
        "steps": cfg.num_steps,
        "resumed_from": result.resumed_from,
        "initial_heldout": initial,
        "final_heldout": evals[-1] if evals else None,
        "train_seconds": result.seconds,
        "teacher_cache_hit": data.cache_hit,
        "train_sequences": int(data.train["input_ids"].shape[0]),
        "heldout_sequences": int(data.heldout["input_ids"].shape[0]),
        "export": str(export),
    }
    plot_curve(result.history, initial, os.path.join(workdir, "loss_curve.png"))
    files.atomic_write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def plot_curve(history: list[dict], initial: dict, path: str) -> None:
    """Training loss and held-out KD objective against step → PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [(r["step"], r["total"]) for r in history if not r.get("eval") and "total" in r]
    ev = [(0, initial["heldout_total"])] + [
        (r["step"], r["heldout_total"]) for r in history if r.get("eval")
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    if tr:
        ax.plot(*zip(*tr), label="train KD objective", alpha=0.7)
    ax.plot(*zip(*ev), "o-", label="held-out KD objective")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("KD pretraining")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    files.atomic_write_bytes(path, buf.getvalue())
