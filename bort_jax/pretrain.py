"""KD pretraining of an extracted architecture (Bort, arXiv 2010.10499 Sec. 3).

`pretrain(config, workdir)` loads the teacher, prepares static-masked data and the teacher's
outputs (cached on disk), initialises the student (random, or sliced from `config.init_dir`),
trains it with `train.train` (periodic atomic checkpoints, exact resume), evaluates the held-out
KD objective every `eval_every` steps, and writes `metrics.jsonl`, `loss_curve.png`,
`summary.json` and the student in Hugging Face format (`workdir/export`).
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax

from bort_jax import distill, hf, train
from bort_jax.arch import Arch, param_count
from bort_jax.models.bert import Bert, slice_params_check


def _teacher_dir(config) -> str:
    return config.teacher_dir or hf.minilm_path()


def validate(config) -> None:
    """Named errors before any expensive work."""
    Arch.parse(config.arch)
    if config.init not in ("random", "slice"):
        raise ValueError(f"config.init={config.init!r}; use 'random' or 'slice'")
    if config.num_steps <= 0:
        raise ValueError(f"config.num_steps must be positive, got {config.num_steps}")
    for key in ("teacher_dir", "init_dir"):
        path = config.get(key)
        if path and not os.path.isdir(path):
            raise FileNotFoundError(f"config.{key}={path} does not exist")


def pretrain(config, workdir: str) -> dict[str, Any]:
    validate(config)
    os.makedirs(workdir, exist_ok=True)
    teacher_dir = _teacher_dir(config)
    teacher = distill.Teacher.load(teacher_dir)
    arch = Arch.parse(config.arch)
    kd = distill.KDWeights(**dict(config.kd))
    source = None
    if config.init == "slice":
        source = hf.load(config.init_dir) if config.init_dir else teacher.checkpoint
        slice_params_check(source.arch, arch)
    if config.get("student_tokenizer_dir"):
        from bort_jax.data import mlm
        mlm.check_vocab_compat(config.student_tokenizer_dir, teacher_dir)
    data = distill.prepare(teacher, teacher_dir, config.corpus, config.seq_len,
                           max_sequences=config.max_sequences,
                           heldout_fraction=config.heldout_fraction, seed=config.seed,
                           want_logits=kd.logit > 0,
                           cache_dir=config.cache_dir or os.path.join(workdir, "teacher_cache"))
    spec = distill.student_spec(teacher.checkpoint.spec)
    model = Bert(arch, spec, mlm_head=True, dropout_rate=config.dropout,
                 attention_dropout_rate=config.dropout)
    params = distill.init_student(arch, spec, data.teacher_hidden, config.seed, source)
    loss_fn = distill.make_loss_fn(model, data, kd)
    eval_fn = distill.make_eval_fn(loss_fn, distill.heldout_batches(data, config.batch_size))
    opt = train.OptimConfig(learning_rate=config.learning_rate, total_steps=config.num_steps,
                            warmup_steps=int(config.warmup_ratio * config.num_steps),
                            weight_decay=config.weight_decay, clip_norm=config.clip_norm)
    initial = eval_fn(params)
    result = train.train(loss_fn, params, train.make_optimizer(opt),
                         distill.batch_fn(data, config.batch_size, config.seed),
                         config.num_steps, seed=config.seed, workdir=workdir,
                         checkpoint_every=config.checkpoint_every, eval_fn=eval_fn,
                         eval_every=config.eval_every, log_every=config.log_every,
                         progress=config.progress, desc=f"pretrain {arch}")
    student = jax.device_get(result.state.params["student"])
    export = hf.save(os.path.join(workdir, "export"), student, arch, spec,
                     tokenizer_dir=teacher_dir)
    evals = [r for r in result.history if r.get("eval")]
    summary = {
        "arch": str(arch), "params": param_count(arch, spec, mlm_head=True),
        "teacher": teacher_dir, "steps": config.num_steps, "resumed_from": result.resumed_from,
        "initial_heldout": initial, "final_heldout": evals[-1] if evals else None,
        "train_seconds": result.seconds, "teacher_cache_hit": data.cache_hit,
        "train_sequences": int(data.train["input_ids"].shape[0]),
        "heldout_sequences": int(data.heldout["input_ids"].shape[0]),
        "export": str(export),
    }
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    plot_curve(result.history, initial, os.path.join(workdir, "loss_curve.png"))
    return summary


def plot_curve(history: list[dict], initial: dict, path: str) -> None:
    """Training loss and held-out KD objective against step → PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [(r["step"], r["total"]) for r in history if not r.get("eval") and "total" in r]
    ev = [(0, initial["heldout_total"])] + [(r["step"], r["heldout_total"]) for r in history
                                            if r.get("eval")]
    fig, ax = plt.subplots(figsize=(6, 4))
    if tr:
        ax.plot(*zip(*tr), label="train KD objective", alpha=0.7)
    ax.plot(*zip(*ev), "o-", label="held-out KD objective")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("KD pretraining")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
