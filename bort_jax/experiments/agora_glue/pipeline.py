"""Agora as a fine-tuning option of a given model: the agora_glue experiment with the labeler
from one checkpoint and the student from another, reduced to one compact summary per task.

The Bort pipeline calls it on its chosen model (`configs/agora_glue.py:pipeline`):

    from configs import agora_glue as agora_config
    summary = agora_for_model(agora_config.get_config("pipeline"), source_dir, bort_dir,
                              data_dir, workdir / "agora")

Every number comes from the experiment's own report (`stats.summarise_task`, the held-out
half of dev); nothing is recomputed here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bort_jax.config import ConfigError, to_plain
from bort_jax.experiments.agora_glue.experiment import run
from bort_jax.tasks import get_task


def agora_for_model(
    agora_config: Any,
    init_dir: str,
    student_dir: str,
    data_dir: str,
    workdir: str | os.PathLike | None,
) -> dict:
    """Plain fine-tuning and Agora of the model in `student_dir`, labelled by `init_dir`.

    Runs `experiment.run` (resumable in `workdir`) on `agora_config` (a GlueConfig mapping,
    e.g. `configs/agora_glue.py:pipeline`) with init = `init_dir` (the labeler's checkpoint
    and the samplers' embedding source), student_init = `student_dir` (the student, unsliced:
    student_arch = '') and data_dir = `data_dir` ('' = $BORT_DATA_DIR, else TFDS).

    Returns:
        {task: `task_summary`} for every task of the config.

    Raises:
        ConfigError: a sampler-report-only config (no student is trained), a student whose
            vocabulary is not the labeler's, or any other bad config (`experiment.run`).
    """
    values = dict(to_plain(agora_config))
    if to_plain(values.get("sampler_report", {})).get("only"):
        raise ConfigError("agora_for_model needs students: sampler_report.only must be False")
    values.update(
        init=str(init_dir), student_init=str(student_dir), student_arch="", data_dir=str(data_dir)
    )
    report = run(values, workdir)
    return {name: task_summary(name, record) for name, record in report["tasks"].items()}


def task_summary(name: str, record: Mapping[str, Any]) -> dict:
    """One task of a report, compact: held-out mean and sample std over seeds of plain and
    Agora (the primary arm), their paired per-seed difference (Agora minus plain: mean, 95 %
    t-interval half-width and the interval; NaN half-width for one seed), seeds, Agora's
    wins, training rows, held-out rows, the labeler's held-out metric, the metric's name and
    the primary arm's sampler.
    """
    s = record["summary"]
    diff, half = s["ci_plain"]
    return {
        "metric": get_task(name).primary_metric,
        "n_train": record["sizes"]["train"],
        "heldout_rows": record["sizes"]["heldout"],
        "seeds": len(record["seeds"]),
        "plain": {"mean": s["plain_mean"], "std": s["plain_std"]},
        "agora": {"mean": s["agora_mean"], "std": s["agora_std"]},
        "difference": {
            "mean": diff,
            "half_width": half,
            "interval": [diff - half, diff + half],
        },
        "wins": s["wins"],
        "labeler": record["labeler"]["heldout"],
        "sampler": next(iter(s.get("arms", {})), ""),
    }
