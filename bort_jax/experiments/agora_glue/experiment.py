"""The agora_glue experiment's driver: every task (the labeler, the samplers, every seed, each
a resumable stage) and the report."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

from bort_jax import compile_cache, hf, hub
from bort_jax import experiments as ex
from bort_jax.arch import check_seq_len
from bort_jax.config import to_plain
from bort_jax.experiments.agora_glue.arms import run_seed
from bort_jax.experiments.agora_glue.config import GlueConfig, student_init_dir
from bort_jax.experiments.agora_glue.data import load_task_data
from bort_jax.experiments.agora_glue.report import markdown
from bort_jax.experiments.agora_glue.samplers import (
    TextTools,
    make_sample_fn,
    masked_lm,
    nearest_token_radius,
    perturbation_examples,
    sampler_report,
    text_tools,
)
from bort_jax.experiments.agora_glue.stats import summarise_task
from bort_jax.experiments.agora_glue.student import train_labeler
from bort_jax.tasks import Task

NAME = "agora_glue"


def run_task(
    task: Task,
    ckpt: hf.Checkpoint,
    init_dir: str,
    tokenizer: Any,
    tools: TextTools,
    cfg: GlueConfig,
    workdir: Path | None,
    student_ckpt: hf.Checkpoint | None = None,
) -> dict:
    """The labeler, the masked LM (if a sampler needs one), the sampler report (if asked
    for), every seed (each a resumable stage) and the perturbation examples.

    `ckpt` (from `init_dir`) is the labeler's and the samplers' source; the students start
    from `student_ckpt` (the `student_init` checkpoint), or are sliced from `ckpt` (None).
    """
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
                    student_ckpt or ckpt,
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

    Returns the report (config, init, student_init (its directory, "" = sliced from init),
    tasks: {name: run_task record}, markdown, seconds); with a workdir it is also written to
    agora_glue.json / agora_glue.md.

    Raises (before anything is trained): ConfigError / ValueError for a bad config (a
    student_init whose shape is not student_arch or whose vocabulary is not init's), a
    max_seq_len a model cannot hold or a workdir of another config; DataNotFoundError.
    """
    t0 = time.perf_counter()
    cfg = GlueConfig.from_config(config)
    init_dir = hub.resolve(cfg.init) or hf.minilm_path()
    student_dir = student_init_dir(cfg, str(init_dir))
    work = ex.open_workdir(workdir, cfg)
    if work is not None and cfg.compilation_cache:
        compile_cache.enable(work / cfg.compilation_cache, min_compile_secs=0.2)
    ckpt = hf.load(init_dir)
    check_seq_len(cfg.max_seq_len, ckpt.spec, "max_seq_len")
    student_ckpt = None if student_dir is None else hf.load(student_dir)
    if student_ckpt is not None:
        check_seq_len(cfg.max_seq_len, student_ckpt.spec, "max_seq_len")
    tokenizer = hf.load_tokenizer(init_dir)
    tools = text_tools(ckpt, tokenizer)
    tasks = {}
    for task in cfg.task_list:
        task_dir = ex.subdir(work, task.name)
        tasks[task.name] = ex.stage(
            ex.subdir(task_dir, "task.json"),
            functools.partial(
                run_task, task, ckpt, str(init_dir), tokenizer, tools, cfg, task_dir, student_ckpt
            ),
        )
    report = ex.jsonable(
        {
            "config": to_plain(cfg),
            "init": str(init_dir),
            "student_init": student_dir or "",
            "tasks": tasks,
            "seconds": time.perf_counter() - t0,
        }
    )
    report["markdown"] = markdown(report)
    ex.write_report(work, NAME, report, report["markdown"])
    return report
