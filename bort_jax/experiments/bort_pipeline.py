"""The whole Bort pipeline in one call: extract → KD-pretrain → fine-tune → compare.

de Wynter & Perry (arXiv 2010.10499) apply the FPTAS (arXiv 2010.08512) to a source network,
pretrain the chosen shape by knowledge distillation and fine-tune it on GLUE with a small
hyperparameter grid. `run(config, workdir)` does the same on any source:

  1. extraction (`extract.extract`, config section `extract`) → the chosen ⟨D, A, H, I⟩;
  2. KD pretraining (`pretrain.pretrain`, section `pretrain`) of the chosen shape and, for
     comparison, of the smallest and the largest candidate of the grid (by parameters), each
     sliced from the source as its initialisation; all share one teacher-output cache;
  3. fine-tuning (`finetune.run_prepared`, section `finetune`) of every model — the three
     students and the source itself — on every task, over the same grid of learning rate ×
     steps. Each dev set is split once (seeded, `agora.split_dev`) into a *selection* half,
     on which the best step and the best grid point are chosen, and a *report* half, on which
     only the selected model is scored;
  4. inference latency of every model measured side by side in one process (median of
     `latency_repeats`, stored, so a rerun reports the same numbers);
  5. `report.md` / `report.json`: score per task, parameters, latency, speed-up vs the source.

Every stage writes its outputs atomically under `workdir` and is skipped when they exist, and
the long ones resume from their checkpoints, so a killed run continues where it stopped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from bort_jax import agora, extract, hf, latency, pretrain
from bort_jax import finetune as ft
from bort_jax.arch import Arch, param_count
from bort_jax.data import batching
from bort_jax.experiments import drop_dir, jsonable, stage, write_report
from bort_jax.extract_config import ExtractConfig
from bort_jax.search.space import build_space
from bort_jax.tasks import get_task
from bort_jax.tasks.loading import load_examples


@dataclasses.dataclass(frozen=True)
class Model:
    """One model of the comparison: its role(s), shape and fine-tuning initialisation."""

    name: str  # chosen | smallest | largest | source (joined with '=' when equal)
    arch: Arch
    init_dir: str


def _arch_tag(arch: Arch) -> str:
    return f"D{arch.depth}_A{arch.heads}_H{arch.hidden}_I{arch.intermediate}"


def validate(config: Any, workdir: str) -> list[str]:
    """Named errors before any work: tasks, grid, data for every task. Returns the tasks."""
    tasks = [t for t in config.tasks.split(",") if t]
    if not tasks:
        raise ValueError("config.tasks is empty; e.g. 'sst2,mrpc,rte,cola,stsb'")
    for name in ("learning_rate", "num_steps"):
        if not list(config.grid[name]):
            raise ValueError(f"config.grid.{name} is empty")
    for name in tasks:
        task = get_task(name)
        for split in ("train", task.eval_splits[0]):
            load_examples(task, split, config.data_dir, config.finetune.tfds_data_dir)
    extract.validate(config.extract, str(Path(workdir) / "extract"))
    return tasks


def pretrain_models(config: Any, workdir: Path, summary: dict[str, Any]) -> list[Model]:
    """KD-pretrain the chosen, smallest and largest candidates (each once)."""
    ext = ExtractConfig.from_config(config.extract)
    space = build_space(ext.grid)
    source_dir = ext.source_dir or hf.minilm_path()
    source = hf.load(source_dir)
    cands = space.candidates()
    size = lambda a: param_count(a, source.spec)["total"]  # noqa: E731
    roles = {
        "chosen": Arch.parse(summary["chosen"]),
        "smallest": min(cands, key=size),
        "largest": max(cands, key=size),
    }
    by_arch: dict[Arch, list[str]] = {}
    for role, arch in roles.items():
        by_arch.setdefault(arch, []).append(role)
    models = []
    for arch, names in by_arch.items():
        out = workdir / "pretrain" / _arch_tag(arch)
        if not (out / "summary.json").is_file():
            cfg = ml_collections.ConfigDict(config.pretrain.to_dict())
            cfg.arch = f"{arch.depth},{arch.heads},{arch.hidden},{arch.intermediate}"
            cfg.init_method, cfg.init = "slice", source_dir
            cfg.teacher_dir = ext.teacher_dir or source_dir
            cfg.cache_dir = cfg.cache_dir or str(workdir / "teacher_cache")
            pretrain.pretrain(cfg, str(out))
        models.append(Model("=".join(names), arch, str(out / "export")))
    models.append(Model("source", source.arch, source_dir))
    return models


def finetune_point(
    config: Any, model: Model, task: str, lr: float, steps: int, out: Path
) -> dict[str, Any]:
    """Fine-tune `model` on `task` at one grid point; select on one dev half, score the other.

    Returns {'select': metrics on the selection half at the best step, 'report': metrics of
    that model on the report half, 'best_step', 'learning_rate', 'num_steps'}.
    """
    result = stage(
        out / "result.json", lambda: _finetune_point(config, model, task, lr, steps, out / "run")
    )
    drop_dir(out / "run")  # checkpoints and best model of a finished point
    return result


def _finetune_point(
    config: Any, model: Model, task: str, lr: float, steps: int, run_dir: Path
) -> dict[str, Any]:
    cfg = ft.FinetuneConfig.from_config(
        dict(
            config.finetune.to_dict(),
            task=task,
            init=model.init_dir,
            data_dir=config.data_dir,
            learning_rate=lr,
            num_steps=steps,
            progress=False,
        )
    )
    prep = ft.prepare(cfg)
    n_dev = batching.num_rows(prep.dev)
    select_idx, report_idx = agora.split_dev(n_dev, 0.5, config.seed)
    agora.assert_disjoint(select_idx, report_idx)
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
        "num_steps": steps,
        "primary_metric": prep.task.primary_metric,
        "select_examples": int(select_idx.size),
        "report_examples": int(report_idx.size),
    }


def measure_latencies(config: Any, models: list[Model], path: Path) -> dict[str, float]:
    """Median forward seconds per model, measured side by side once and stored at `path`."""
    spec = hf.load(models[-1].init_dir).spec
    return stage(
        path,
        lambda: {
            m.name: latency.forward_latency(
                m.arch,
                spec,
                config.latency_batch,
                config.latency_seq_len,
                repeats=config.latency_repeats,
            )
            for m in models
        },
    )


def run(config: Any, workdir: str) -> dict[str, Any]:
    """The pipeline (see the module docstring); returns the report as a dict."""
    tasks = validate(config, workdir)
    root = Path(workdir)
    summary = extract.extract(config.extract, str(root / "extract"))
    models = pretrain_models(config, root, summary)
    results: dict[str, dict[str, Any]] = {}
    for model in models:
        for task in tasks:
            points = [
                finetune_point(
                    config,
                    model,
                    task,
                    float(lr),
                    int(steps),
                    root / "finetune" / model.name / task / f"lr{lr:g}_steps{steps}",
                )
                for lr in config.grid.learning_rate
                for steps in config.grid.num_steps
            ]
            metric = points[0]["primary_metric"]
            best = max(points, key=lambda p: p["select"].get(metric, -np.inf))
            results.setdefault(model.name, {})[task] = dict(best, grid=points)
    seconds = measure_latencies(config, models, root / "latency.json")
    report = jsonable(build_report(models, tasks, results, seconds, summary))
    write_report(root, "report", report, markdown(report))
    return report


def build_report(
    models: list[Model], tasks: list[str], results: dict, seconds: dict, summary: dict
) -> dict[str, Any]:
    source = next(m for m in models if m.name == "source")
    spec = hf.load(source.init_dir).spec
    rows = []
    for m in models:
        rows.append(
            {
                "model": m.name,
                "arch": str(m.arch),
                "params": param_count(m.arch, spec)["total"],
                "latency_ms": 1e3 * seconds[m.name],
                "speedup_vs_source": seconds["source"] / seconds[m.name],
                "scores": {
                    t: results[m.name][t]["report"][results[m.name][t]["primary_metric"]]
                    for t in tasks
                },
                "selected": {
                    t: {
                        "learning_rate": results[m.name][t]["learning_rate"],
                        "num_steps": results[m.name][t]["num_steps"],
                    }
                    for t in tasks
                },
            }
        )
    return {
        "chosen": summary["chosen"],
        "guarantee": summary.get("guarantee"),
        "tasks": tasks,
        "metrics": {t: get_task(t).primary_metric for t in tasks},
        "models": rows,
        "details": results,
    }


def markdown(report: dict[str, Any]) -> str:
    tasks = report["tasks"]
    head = (
        "| model | ⟨D,A,H,I⟩ | parameters | latency (ms) | speed-up vs source | "
        + " | ".join(f"{t} ({report['metrics'][t]})" for t in tasks)
        + " |"
    )
    lines = [
        f"# Bort pipeline: extraction chose {report['chosen']}",
        "",
        f"Guarantee: {report['guarantee']}",
        "",
        "Scores are on the report half of each dev set; the fine-tuning step and the grid "
        "point (learning rate × steps) were chosen on the other half.",
        "",
        head,
        "|" + "---|" * (5 + len(tasks)),
    ]
    for r in report["models"]:
        scores = " | ".join(f"{100 * r['scores'][t]:.1f}" for t in tasks)
        lines.append(
            f"| {r['model']} | {r['arch']} | {r['params']:,} | "
            f"{r['latency_ms']:.2f} | {r['speedup_vs_source']:.2f}× | {scores} |"
        )
    lines += ["", "Selected grid point per task (learning rate, steps):", ""]
    for r in report["models"]:
        picks = ", ".join(
            f"{t}: {p['learning_rate']:g} × {p['num_steps']}" for t, p in r["selected"].items()
        )
        lines.append(f"- {r['model']}: {picks}")
    return "\n".join(lines) + "\n"
