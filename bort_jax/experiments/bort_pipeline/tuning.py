"""Fine-tuning one model on one task: the grid on seed 0, then the seeds at its pick.

Each dev set is split once (seeded by `config.seed`, `tasks.loading.split_dev`) into a
*selection* half and a *report* half. One run per learning rate (seed 0) trains for
max(grid.num_steps) steps and is evaluated on the selection half every gcd(grid.num_steps)
steps, so every step count of the grid is one evaluation along that run (a separate run per
step count would repeat its first steps); the best step of each run and the best learning rate
are chosen on the selection half. The other seeds (`config.seeds`) run the same procedure at
the chosen learning rate. Only the model each run selected is scored on the report half; the
task's score is the mean ± sample standard deviation over the seeds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from bort_jax import finetune as ft
from bort_jax import hf, hub
from bort_jax.arch import Arch
from bort_jax.data import batching
from bort_jax.experiments import drop_dir, mean_std, stage
from bort_jax.experiments.bort_pipeline.models import Model
from bort_jax.tasks.loading import assert_disjoint, split_dev


def schedule(config: Any) -> tuple[int, int]:
    """(steps per run, evaluation interval): max and gcd of grid.num_steps."""
    steps = [int(s) for s in config.grid.num_steps]
    return max(steps), reduce(math.gcd, steps)


def run_point(config: Any, model: Model, task: str, lr: float, seed: int, out: Path) -> dict:
    """One fine-tuning run (stage `out/result.json`); its checkpoints are dropped when done."""
    result = stage(out / "result.json", lambda: _run(config, model, task, lr, seed, out / "run"))
    drop_dir(out / "run")
    return result


def _run(config: Any, model: Model, task: str, lr: float, seed: int, run_dir: Path) -> dict:
    t0 = time.perf_counter()
    num_steps, every = schedule(config)
    cfg = ft.FinetuneConfig.from_config(
        dict(
            config.finetune.to_dict(),
            task=task,
            init=model.init_dir,
            arch=model.arch_arg,
            data_dir=config.data_dir,
            learning_rate=lr,
            num_steps=num_steps,
            eval_every=every,
            seed=seed,
            progress=False,
        )
    )
    prep = _prepare(cfg)
    select_idx, report_idx = split_dev(batching.num_rows(prep.dev), 0.5, config.seed)
    assert_disjoint(select_idx, report_idx)
    on_select = dataclasses.replace(prep, dev=batching.take(prep.dev, select_idx), dev_groups=None)
    run = ft.run_prepared(on_select, run_dir)
    report = ft.evaluate_task(
        prep.model,
        run["params"],
        prep.task,
        batching.take(prep.dev, report_idx),
        cfg.eval_batch_size,
        bucket=cfg.length_bucket,
    )
    return {
        "select": run["best"],
        "report": report,
        "best_step": run["best_step"],
        "learning_rate": lr,
        "seed": seed,
        "num_steps": num_steps,
        "eval_every": every,
        "evals": run.get("evals", []),
        "train_seconds": run.get("seconds"),
        "seconds": time.perf_counter() - t0,
        "primary_metric": prep.task.primary_metric,
        "select_examples": int(select_idx.size),
        "report_examples": int(report_idx.size),
    }


_DATA: dict[tuple, ft.Prepared] = {}  # per task and data settings (and vocabulary)
_CKPT: dict[str, Any] = {}  # the checkpoint of the model being tuned


def _vocab_digest(init_dir: str) -> str:
    for name in ("tokenizer.json", "vocab.txt"):
        path = Path(init_dir) / name
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()
    return init_dir


def _prepare(cfg: ft.FinetuneConfig) -> ft.Prepared:
    """`ft.prepare` reading and tokenising each task once (every model speaks the source's
    vocabulary) and loading each checkpoint once: the runs differ in model, learning rate and
    seed (the head's init) only."""
    init = hub.resolve(cfg.init) or hf.minilm_path()
    data_key = dataclasses.astuple(
        cfg.replace(init="", arch="", learning_rate=1.0, seed=0, tokenizer=_vocab_digest(init))
    )
    if data_key not in _DATA:
        _DATA[data_key] = ft.prepare(cfg)
    if init not in _CKPT:
        _CKPT.clear()  # models are tuned one after the other: keep one in memory
        _CKPT[init] = hf.load(init)
    arch = Arch.parse(cfg.arch) if cfg.arch else None
    model, params = ft.build_classifier(
        _CKPT[init], cfg.task, arch, dropout_rate=cfg.dropout_rate, seed=cfg.seed
    )
    return dataclasses.replace(
        _DATA[data_key], config=cfg, model=model, params=params, tokenizer_dir=cfg.tokenizer or init
    )


def point_dir(root: Path, model: Model, task: str, lr: float, seed: int) -> Path:
    return root / "finetune" / model.key / task / f"lr{lr:g}_seed{seed}"


def select(points: list[dict]) -> dict:
    """The grid point with the best selection-half score (the first one on ties)."""
    metric = points[0]["primary_metric"]
    return max(points, key=lambda p: p["select"].get(metric, -np.inf))


def aggregate(runs: list[dict]) -> dict:
    """Report-half scores of the seeds' runs: values, mean, sample std, min, max."""
    metric = runs[0]["primary_metric"]
    values = [float(r["report"][metric]) for r in runs]
    mean, std = mean_std(values)
    return {
        "seeds": [int(r["seed"]) for r in runs],
        "values": values,
        "mean": mean,
        "std": std,
        "min": min(values),
        "max": max(values),
    }


def tune(config: Any, root: Path, model: Model, task: str) -> dict:
    """Grid (seed 0) → pick → the other seeds at the pick; see the module docstring."""
    seeds = [int(s) for s in config.seeds]
    points = [
        run_point(
            config, model, task, float(lr), seeds[0], point_dir(root, model, task, lr, seeds[0])
        )
        for lr in config.grid.learning_rate
    ]
    best = select(points)
    lr = best["learning_rate"]
    runs = [best] + [
        run_point(config, model, task, lr, s, point_dir(root, model, task, lr, s))
        for s in seeds[1:]
    ]
    return {
        "primary_metric": best["primary_metric"],
        "selected": {"learning_rate": lr, "best_step": best["best_step"]},
        "grid": points,
        "runs": runs,
        "score": aggregate(runs),
    }
