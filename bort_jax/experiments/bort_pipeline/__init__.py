"""The whole Bort pipeline in one call: extract → baselines → KD-pretrain → fine-tune → compare.

de Wynter & Perry (arXiv 2010.10499) apply the FPTAS (arXiv 2010.08512) to a source network,
pretrain the chosen shape by knowledge distillation and fine-tune it on GLUE with a small
hyperparameter grid. `run(config, workdir)` does the same on any source and puts beside it:

  1. extraction (`extract.extract`, config section `extract`) → the chosen ⟨D, A, H, I⟩;
  2. `roles.json` (`models`): the smallest and largest candidates, random search's pick at the
     FPTAS's number of proxy evaluations, the exhaustive W optimum (both on the extraction's
     cached proxy evaluator) and the layer-drop baseline (the source keeping every k-th layer,
     its i ≤ the chosen shape's), with the table of every candidate's p, i, e, W;
  3. every distinct (shape, init) as "sliced only" and KD-pretrained (`pretrain.pretrain`,
     section `pretrain`; one teacher-output cache; corpus "tasks" = the tasks' unlabelled
     training text, `models.task_corpus`), and the source;
  4. fine-tuning (`tuning`): per model and task a run per learning rate (seed 0, evaluated
     along it), the pick on the selection half of dev, then `seeds` at the pick; scores on
     the report half;
  5. inference latency of every shape measured side by side in one process (median of
     `latency_repeats`, stored, so a rerun reports the same numbers);
  6. with `with_agora`: the chosen shape's KD-pretrained model fine-tuned plainly and with
     Agora (`agora_glue.agora_for_model`, section `agora`; labeler = the source), stage
     `agora/` and `agora.json`;
  7. `report.md` / `report.json` (`report`): score per task (mean ± std over seeds), mean over
     tasks, parameters (total, non-embedding), latency, speed-up vs the source.

Every stage writes its outputs atomically under `workdir` and is skipped when they exist, and
the long ones resume from their checkpoints, so a killed run continues where it stopped. All
fine-tuning runs share one batch size and padded length, and compiled steps go to the
persistent compilation cache (`<workdir>/jax_cache` unless JAX_COMPILATION_CACHE_DIR is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bort_jax import compile_cache, extract, hf, latency
from bort_jax.arch import Arch
from bort_jax.experiments import agora_glue, jsonable, stage, write_report
from bort_jax.experiments.bort_pipeline import models as M
from bort_jax.experiments.bort_pipeline import tuning
from bort_jax.experiments.bort_pipeline.report import build_report, markdown
from bort_jax.tasks import get_task
from bort_jax.tasks.loading import load_examples

__all__ = ["build_report", "markdown", "measure_latencies", "run", "validate"]


def validate(config: Any, workdir: str) -> list[str]:
    """Named errors before any work: tasks, grid, seeds, data for every task. Returns the tasks."""
    tasks = [t for t in config.tasks.split(",") if t]
    if not tasks:
        raise ValueError("config.tasks is empty; e.g. 'sst2,mrpc,rte,cola,stsb'")
    if config.calibration_task and config.calibration_task not in tasks:
        raise ValueError(
            f"config.calibration_task={config.calibration_task!r} is not one of config.tasks "
            f"{tasks} ('' = none)"
        )
    for name in ("learning_rate", "num_steps"):
        if not list(config.grid[name]):
            raise ValueError(f"config.grid.{name} is empty")
    seeds = [int(s) for s in config.seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"config.seeds must be distinct ints, got {list(config.seeds)}")
    for name in tasks:
        task = get_task(name)
        for split in ("train", task.eval_splits[0]):
            load_examples(task, split, config.data_dir, config.finetune.tfds_data_dir)
    extract.validate(config.extract, str(Path(workdir) / "extract"))
    if config.with_agora:  # named errors for the agora section before any work
        agora_glue.GlueConfig.from_config(config.agora)
    return tasks


def measure_latencies(config: Any, archs: list[Arch], spec, path: Path) -> dict[str, float]:
    """Median forward seconds per distinct shape, measured side by side once, stored."""
    unique = list(dict.fromkeys(archs))
    return stage(
        path,
        lambda: {
            str(a): latency.forward_latency(
                a,
                spec,
                config.latency_batch,
                config.latency_seq_len,
                repeats=config.latency_repeats,
            )
            for a in unique
        },
    )


def run_agora(config: Any, root: Path, models: list[M.Model]) -> dict[str, Any]:
    """Plain vs Agora fine-tuning of the chosen shape's KD-pretrained model (stage)."""
    chosen = next(m for m in models if m.variant == "kd" and "chosen" in m.roles)
    return {
        "model": chosen.key,
        "tasks": stage(
            root / "agora.json",
            lambda: agora_glue.agora_for_model(
                config.agora, M.source_dir(config), chosen.init_dir, config.data_dir, root / "agora"
            ),
        ),
    }


def run(config: Any, workdir: str) -> dict[str, Any]:
    """The pipeline (see the module docstring); returns the report as a dict."""
    tasks = validate(config, workdir)
    root = Path(workdir)
    compile_cache.enable(root / "jax_cache")
    # a finished extraction is not searched again (delete extract/summary.json to re-search,
    # e.g. after changing config.extract.objective; its proxy evaluations stay cached)
    summary = stage(
        root / "extract" / "summary.json",
        lambda: extract.extract(config.extract, str(root / "extract")),
    )
    roles = M.roles_stage(config, root, summary)
    models = M.build_models(config, root, roles)
    results = {m.key: {t: tuning.tune(config, root, m, t) for t in tasks} for m in models}
    agora = run_agora(config, root, models) if config.with_agora else None
    spec = hf.load(M.source_dir(config)).spec
    seconds = measure_latencies(
        config, [models[-1].arch] + [m.arch for m in models], spec, root / "latency.json"
    )
    report = build_report(
        models, tasks, results, seconds, roles, summary, spec, config.calibration_task
    )
    if agora is not None:
        report["agora"] = agora
    report = jsonable(report)
    write_report(root, "report", report, markdown(report))
    return report
