"""How much work a pipeline run is, how much of it is done, and how long the rest will take.

    python -m bort_jax.experiments.bort_pipeline.costs WORKDIR [--variant=smoke]

`plan(config, n_students)` counts the runs; `progress(config, workdir)` reads the stage files
(`finetune/*/*/*/result.json` with their wall seconds, `pretrain/*/summary.json`) and projects
the remaining time from the measured per-run seconds: per model from its own finished runs,
else from the mean of the finished runs of the same kind (student / source).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bort_jax.experiments.bort_pipeline.models import ROLES, students
from bort_jax.experiments.bort_pipeline.tuning import schedule


def plan(config: Any, n_students: int) -> dict[str, int]:
    """Counts: students (≤ 6 roles), fine-tuned models (an upper bound: a student of the
    source's shape has no separate sliced model), runs per (model, task), runs, steps."""
    tasks = [t for t in config.tasks.split(",") if t]
    per_task = len(config.grid.learning_rate) + len(config.seeds) - 1
    models = 2 * n_students + 1
    steps, every = schedule(config)
    return {
        "students": n_students,
        "models": models,
        "tasks": len(tasks),
        "runs_per_model_task": per_task,
        "finetune_runs": models * len(tasks) * per_task,
        "steps_per_run": steps,
        "evals_per_run": steps // every,
        "finetune_steps": models * len(tasks) * per_task * steps,
        "pretrain_steps": n_students * int(config.pretrain.num_steps),
    }


def progress(config: Any, workdir: str | Path) -> dict[str, Any]:
    root = Path(workdir)
    roles_path = root / "roles.json"
    n_students = len(ROLES)  # upper bound until the roles are known
    if roles_path.is_file():
        n_students = len(students(json.loads(roles_path.read_text())))
    counts = plan(config, n_students)
    done: dict[str, list[float]] = {}
    for path in root.glob("finetune/*/*/*/result.json"):
        seconds = json.loads(path.read_text()).get("seconds")
        if seconds is not None:
            done.setdefault(path.parts[-4], []).append(float(seconds))
    pretrained = [
        float(json.loads(p.read_text()).get("train_seconds") or 0.0)
        for p in root.glob("pretrain/*/summary.json")
    ]
    per_model = counts["tasks"] * counts["runs_per_model_task"]
    student_runs = [s for k, v in done.items() if k != "source" for s in v]
    default = float(np.mean(student_runs)) if student_runs else None
    source_mean = float(np.mean(done["source"])) if "source" in done else default
    remaining = 0.0
    for secs in done.values():
        remaining += (per_model - len(secs)) * float(np.mean(secs))
    untouched_students = counts["models"] - 1 - len([k for k in done if k != "source"])
    if default is not None:
        remaining += untouched_students * per_model * default
    if "source" not in done and source_mean is not None:
        remaining += per_model * source_mean
    pretrain_left = n_students - len(pretrained)
    if pretrained:
        remaining += pretrain_left * float(np.mean(pretrained))
    return {
        **counts,
        "finetune_runs_done": sum(len(v) for v in done.values()),
        "finetune_seconds_done": sum(sum(v) for v in done.values()),
        "seconds_per_run": {k: float(np.mean(v)) for k, v in done.items()},
        "pretrained": len(pretrained),
        "pretrain_seconds_done": sum(pretrained),
        "projected_remaining_s": remaining if default is not None else None,
        "finished": (root / "report.json").is_file(),
    }


def main(argv: list[str]) -> None:
    from configs import bort

    workdir = argv[1]
    variant = next((a.split("=", 1)[1] for a in argv[2:] if a.startswith("--variant=")), None)
    print(json.dumps(progress(bort.get_config(variant), workdir), indent=2))


if __name__ == "__main__":
    main(sys.argv)
