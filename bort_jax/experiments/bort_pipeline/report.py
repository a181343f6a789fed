"""`report.json` / `report.md` of the pipeline, computed only from its stage files."""

from __future__ import annotations

from typing import Any

import numpy as np

from bort_jax.arch import Arch, Spec, embedding_params, param_count
from bort_jax.experiments.bort_pipeline.models import Model
from bort_jax.search import random_search as R
from bort_jax.tasks import get_task

RANDOM_SEEDS = tuple(range(5))  # random-search draws simulated on the table (item: ≥ 5 seeds)


def search_comparison(roles: dict[str, Any]) -> dict[str, Any]:
    """FPTAS vs random search vs exhaustive on the table of every candidate's W.

    W/OPT of the FPTAS's pick; random search at the FPTAS's number of evaluations n: its
    exact expected W/OPT and P(reaching the FPTAS's W) (order statistics of the table,
    `search.random_search`), the W/OPT of `RANDOM_SEEDS` simulated draws, and the budget at
    which its expected best first reaches the FPTAS's W (None: never, even with all of Ξ).
    """
    w = {row["arch"]: row["w"] for row in roles["table"]}
    values = list(w.values())
    opt, n = max(values), int(roles["random_search"]["n"])
    chosen = w[roles["chosen"]]
    return {
        "n_candidates": len(values),
        "fptas_evaluations": n,
        "fptas_w_over_opt": chosen / opt,
        "random_expected_w_over_opt": R.expected_ratio(values, n),
        "random_p_reach_fptas": R.prob_reach(values, n, chosen),
        "random_seeds": list(RANDOM_SEEDS),
        "random_w_over_opt": [b / opt for b in R.simulate_best(values, n, RANDOM_SEEDS)],
        "random_budget_to_match_fptas": R.budget_to_match(values, chosen),
    }


VARIANT_NAMES = {"sliced": "sliced only", "kd": "KD-pretrained", "source": "source"}


def build_report(
    models: list[Model],
    tasks: list[str],
    results: dict[str, dict[str, dict]],
    seconds: dict[str, float],
    roles: dict[str, Any],
    summary: dict[str, Any],
    spec: Spec,
    calibration_task: str = "",
) -> dict[str, Any]:
    """One row per model: shape, parameters, latency, speed-up, per-task mean ± std, mean
    over tasks and over the tasks other than `calibration_task` (the one the objective's
    constants were calibrated on)."""
    held_out = [t for t in tasks if t != calibration_task]
    src_latency = seconds[str(next(m for m in models if m.variant == "source").arch)]
    rows = []
    for m in models:
        total = param_count(m.arch, spec)["total"]
        per_task = {t: results[m.key][t]["score"] for t in tasks}
        rows.append(
            {
                "model": m.name,
                "key": m.key,
                "roles": list(m.roles),
                "variant": m.variant,
                "arch": str(m.arch),
                "params": total,
                "params_non_embedding": total - embedding_params(m.arch, spec),
                "latency_ms": 1e3 * seconds[str(m.arch)],
                "speedup_vs_source": src_latency / seconds[str(m.arch)],
                "scores": {t: per_task[t]["mean"] for t in tasks},
                "spread": {t: per_task[t]["std"] for t in tasks},
                "mean_over_tasks": float(np.mean([per_task[t]["mean"] for t in tasks])),
                "mean_held_out": (
                    float(np.mean([per_task[t]["mean"] for t in held_out])) if held_out else None
                ),
                "selected": {t: results[m.key][t]["selected"] for t in tasks},
            }
        )
    return {
        "chosen": summary["chosen"],
        "guarantee": summary.get("guarantee"),
        "tasks": tasks,
        "calibration_task": calibration_task,
        "held_out_tasks": held_out,
        "metrics": {t: get_task(t).primary_metric for t in tasks},
        "seeds": sorted(
            {s for m in models for t in tasks for s in results[m.key][t]["score"]["seeds"]}
        ),
        "search": {
            k: roles[k] for k in ("random_search", "exhaustive_search", "fptas", "layerdrop")
        },
        "picks": {k: roles[k] for k in ("chosen", "smallest", "largest", "random", "exhaustive")},
        "search_comparison": search_comparison(roles),
        "table": roles["table"],
        "models": rows,
        "details": results,
    }


def agora_lines(agora: dict[str, Any]) -> list[str]:
    """The Agora option's table: plain vs Agora fine-tuning of one model, per task (×100)."""
    lines = [
        f"Agora on {agora['model']} (neighbour sampler, labeler = the source; held-out half "
        "of dev, mean ± std over seeds; difference: paired mean, 95 % t-interval):",
        "",
        "| task | metric | training examples | seeds | plain | Agora | Agora − plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, t in agora["tasks"].items():
        d = t["difference"]
        lines.append(
            f"| {task} | {t['metric']} | {t['n_train']} | {t['seeds']} | "
            f"{100 * t['plain']['mean']:.1f} ± {100 * t['plain']['std']:.1f} | "
            f"{100 * t['agora']['mean']:.1f} ± {100 * t['agora']['std']:.1f} | "
            f"{100 * d['mean']:+.1f} ± {100 * d['half_width']:.1f} |"
        )
    return lines


def _comparison_line(c: dict[str, Any]) -> str:
    budget = c["random_budget_to_match_fptas"]
    return (
        f"Search at equal budget ({c['fptas_evaluations']} of {c['n_candidates']} proxy "
        f"evaluations): FPTAS W/OPT {c['fptas_w_over_opt']:.3f}; random search expected "
        f"{c['random_expected_w_over_opt']:.3f} (exact), seeds {c['random_seeds']}: "
        + ", ".join(f"{v:.3f}" for v in c["random_w_over_opt"])
        + f"; P(random reaches the FPTAS's W) {c['random_p_reach_fptas']:.2f}; random search "
        + (
            "never reaches it in expectation"
            if budget is None
            else f"needs {budget} evaluations to reach it in expectation"
        )
        + "."
    )


def _arch(text: str) -> str:
    a = Arch.parse(text)
    return f"⟨{a.depth}, {a.heads}, {a.hidden}, {a.intermediate}⟩"


def markdown(report: dict[str, Any]) -> str:
    tasks = report["tasks"]
    s, ld = report["search"], report["search"]["layerdrop"]
    head = (
        "| model | init | ⟨D,A,H,I⟩ | params | non-emb. params | latency (ms) | speed-up | "
        + " | ".join(f"{t} ({report['metrics'][t]})" for t in tasks)
        + " | mean | mean held out |"
    )
    lines = [
        f"# Bort pipeline: extraction chose {_arch(report['chosen'])}",
        "",
        f"Guarantee: {report['guarantee']}",
        "",
        "Picks: "
        + ", ".join(f"{k} {_arch(v)}" for k, v in report["picks"].items())
        + f", layerdrop {_arch(ld['arch'])} (keep every {ld['k']}-th of {_arch(ld['source'])}: "
        f"layers {ld['keep']}; i = {ld['i']:.4g} vs chosen {ld['i_chosen']:.4g}"
        + ("" if ld["meets"] else ", NOT ≤ chosen: one layer is the least it can keep")
        + ").",
        "",
        f"Random search: {s['random_search']['n']} proxy evaluations (the FPTAS's count), seed "
        f"{s['random_search']['seed']}, {s['random_search']['cache_hits']} from the cache. "
        f"Exhaustive: {s['exhaustive_search']['n']} candidates, "
        f"{s['exhaustive_search']['e_calls']} newly evaluated.",
        "",
        _comparison_line(report["search_comparison"]),
        "",
        f"Calibration task: {report['calibration_task'] or 'none'} (the objective's constants "
        "were fitted on it); 'mean held out' averages the other tasks.",
        "",
        "Scores (×100) are on the report half of each dev set: mean ± sample std over seeds "
        f"{report['seeds']}. The learning rate was chosen with seed 0 and the step along each run "
        "on the selection half. Latency: batch 1 × 128 tokens on this CPU, measured side by side.",
        "",
        head,
        "|" + "---|" * (9 + len(tasks)),
    ]
    for r in report["models"]:
        scores = " | ".join(
            f"{100 * r['scores'][t]:.1f} ± {100 * r['spread'][t]:.1f}" for t in tasks
        )
        lines.append(
            f"| {'='.join(r['roles'])} | {VARIANT_NAMES[r['variant']]} | {_arch(r['arch'])} | "
            f"{r['params']:,} | {r['params_non_embedding']:,} | {r['latency_ms']:.2f} | "
            f"{r['speedup_vs_source']:.2f}× | {scores} | {100 * r['mean_over_tasks']:.1f} | "
            + ("–" if r["mean_held_out"] is None else f"{100 * r['mean_held_out']:.1f}")
            + " |"
        )
    if "agora" in report:
        lines += [""] + agora_lines(report["agora"])
    lines += ["", "Selected learning rate × best step per task (seed 0):", ""]
    for r in report["models"]:
        picks = ", ".join(
            f"{t}: {p['learning_rate']:g} × {p['best_step']}" for t, p in r["selected"].items()
        )
        lines.append(f"- {r['model']}: {picks}")
    lines += ["", "Search table (every candidate; e from the cached proxy evaluator):", ""]
    lines += ["| candidate | p | i | e | W / OPT |", "|---|---|---|---|---|"]
    opt = max(row["w"] for row in report["table"])
    for row in report["table"]:
        lines.append(
            f"| {_arch(row['arch'])} | {row['p']:,.0f} | {row['i']:.4g} | {row['e']:.4f} | "
            f"{row['w'] / opt:.4f} |"
        )
    return "\n".join(lines) + "\n"
