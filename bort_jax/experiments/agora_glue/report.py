"""The agora_glue experiment's reports: the Markdown of one run (`markdown`) and one table
over several finished runs (`runs_markdown`: tasks and training-set sizes run as separate
processes), so every number in the docs comes from one command:

    python scripts/agora_rows.py runs/agora_controls/*/agora_glue.json \
        runs/agora_controls2k/*/agora_glue.json

The multi-run table, per (task, training-set size): the labeler's held-out metric, mean ±
sample std over seeds of plain, plain with Agora's step budget, the distillation control and
every Agora arm; then the primary arm's (the first sampler of the run) paired per-seed
differences against plain, distillation and the step budget, mean ± 95 % t-interval
half-width (`stats.paired_interval`), with the seeds on which the arm is ahead. An interval
that excludes zero is bold. The target: an arm beats both plain and the distillation control
with the paired interval above zero on at least `min_tasks` tasks; checked per arm and
training size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bort_jax.experiments.agora_glue.stats import BASELINES, baseline
from bort_jax.tasks import get_task

# the primary arm's paired differences in the multi-run table, and the target's baselines
RUNS_DIFFERENCES = tuple(baseline(n) for n in ("plain", "distill", "budget"))
TARGET_BASELINES = tuple(baseline(n).ci for n in ("plain", "distill"))

# ----------------------------------------------------------------------------- one run


def fmt_mean_std(mean: float, std: float) -> str:
    """A fraction's mean ± sd in percentage points: '71.0 ± 1.0'."""
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def fmt_interval(ci: Sequence[float]) -> str:
    """A paired difference (mean, half-width) in signed percentage points: '+5.0 ± 2.5'."""
    return f"{100 * ci[0]:+.1f} ± {100 * ci[1]:.1f}"


DIFFERENCE_HEADS = " | ".join(f"− {b.column}" for b in BASELINES)


def interval_cells(summary: Mapping[str, Any]) -> list[str]:
    """The paired interval against every baseline (`BASELINES` order), or 'not run'."""
    return [fmt_interval(summary[b.ci]) if b.ci in summary else "not run" for b in BASELINES]


def example_text(e: Mapping[str, Any]) -> str:
    """One decoded sample: '`original` → `sample` (gold g, labeler l)'."""
    return f"`{e['original']}` → `{e['sample']}` (gold {e['gold']}, labeler {e['labeler']})"


Tasks = Mapping[str, Mapping[str, Any]]  # task name -> its record in a report


def _pct_rate(x: float, digits: int) -> str:
    """A share as a percentage with `digits` decimals, '-' for NaN (no new points)."""
    return "-" if x != x else f"{100 * x:.{digits}f}%"


def main_table(trained: Tasks) -> list[str]:
    """Sizes, labeler, and mean ± sd over seeds of plain, best-of and Agora per task."""
    pct = fmt_mean_std
    lines = [
        "| task | train | dev (agora / held-out) | labeler train | labeler held-out "
        "| plain held-out | plain best-of-(R+1) held-out | Agora held-out "
        "| Δ (Agora − plain) | Agora wins | reported round (mean) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in trained.items():
        s, z = t["summary"], t["sizes"]
        rounds = np.mean([x["selected_round"] for x in t["seeds"]])
        best_of = pct(s["best_of_mean"], s["best_of_std"]) if "best_of_mean" in s else "not run"
        lines.append(
            f"| {name} | {z['train']} | {z['dev']} ({z['agora_dev']} / {z['heldout']}) | "
            f"{z['labeler_train']} | {100 * t['labeler']['heldout']:.1f} | "
            f"{pct(s['plain_mean'], s['plain_std'])} | "
            f"{best_of} | {pct(s['agora_mean'], s['agora_std'])} | "
            f"{pct(s['delta_mean'], s['delta_std'])} | {s['wins']}/{len(t['seeds'])} | "
            f"{rounds:.1f} |"
        )
    return lines


def paired_table(trained: Tasks, selection: str) -> list[str]:
    """The primary arm's paired intervals against every baseline, and the selection gaps."""
    lines = [
        "",
        "Paired per-seed differences on the held-out half (Agora minus baseline; mean ± 95 % "
        "t-interval half-width) and the selection gap (agora-half minus held-out metric of "
        "the reported model; positive = the agora half flatters it):",
        "",
        f"| task | selection | seeds | {DIFFERENCE_HEADS} | gap plain | gap Agora |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in trained.items():
        s = t["summary"]
        lines.append(
            f"| {name} | {selection} | {len(t['seeds'])} | "
            f"{' | '.join(interval_cells(s))} | "
            f"{100 * s['gap_plain']:+.1f} | {100 * s['gap_agora']:+.1f} |"
        )
    return lines


def arms_table(trained: Tasks) -> list[str]:
    """Every Agora arm's held-out mean ± sd, paired intervals, labeler agreement, pool size
    and selection gap (empty without arms)."""
    armed = [(n, t) for n, t in trained.items() if "arms" in t["summary"]]
    if not armed:
        return []
    lines = [
        "",
        "Agora arms (one per sampler, same seeds and controls; paired differences on the "
        "held-out half, mean ± 95 % half-width):",
        "",
        f"| task | sampler | Agora held-out | {DIFFERENCE_HEADS} | labeler = gold on new "
        "| synthetic rows (distinct) | gap |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in armed:
        for kind, a in t["summary"]["arms"].items():
            lines.append(
                f"| {name} | {kind} | {fmt_mean_std(a['agora_mean'], a['agora_std'])} | "
                f"{' | '.join(interval_cells(a))} | "
                f"{_pct_rate(a['labeler_agreement'], 1)} | "
                f"{a['synthetic']:.0f} ({a['distinct_synthetic']:.0f}) | "
                f"{100 * a['gap']:+.1f} |"
            )
    return lines


def distill_table(trained: Tasks) -> list[str]:
    """The pseudo-label control per task (empty where it did not run)."""
    distilled = [(n, t) for n, t in trained.items() if "distill_mean" in t["summary"]]
    if not distilled:
        return []
    lines = [
        "",
        "Control: student on real rows + labeler pseudo-labels of random "
        "unlabeled training-split text (as many rows as Agora's largest synthetic "
        "pool):",
        "",
        "| task | extra rows (mean) | labeler = gold on them | held-out |",
        "|---|---:|---:|---:|",
    ]
    for name, t in distilled:
        d = [x["distill_control"] for x in t["seeds"]]
        agree = np.mean(
            [x["labeler_equals_gold"] for x in d if x["labeler_equals_gold"] is not None]
            or [np.nan]
        )
        lines.append(
            f"| {name} | {np.mean([x['n_extra'] for x in d]):.0f} | "
            f"{100 * agree:.1f} | "
            f"{fmt_mean_std(t['summary']['distill_mean'], t['summary']['distill_std'])} |"
        )
    return lines


def rounds_table(trained: Tasks) -> list[str]:
    """The primary arm's per-round history of every seed."""
    lines = [
        "",
        "Per round (agora-dev selects; held-out is reported only):",
        "",
        "| task | seed | round | train rows | synthetic | agora-dev | held-out | errors "
        "| new points | labeler = gold on new | held-out rows in train |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in trained.items():
        for s in t["seeds"]:
            for r in s["history"]:
                lines.append(
                    f"| {name} | {s['seed']} | {r['round']}{'*' if r['is_best'] else ''} | "
                    f"{r['train_size']} | {r['n_synthetic']} | "
                    f"{100 * r['agora_dev_metric']:.1f} | {100 * r['heldout_metric']:.1f} | "
                    f"{r['n_errors']} | {r['n_new']} | "
                    f"{_pct_rate(r['labeler_agreement'], 0)} | "
                    f"{r['heldout_rows_in_train_real']} + "
                    f"{r['heldout_rows_in_train_synthetic']} |"
                )
    return lines + [
        "",
        "(* = improved the agora-dev metric; held-out rows in train = exact "
        "content matches among real + synthetic rows.)",
        "",
    ]


def perturbation_lines(trained: Tasks) -> list[str]:
    """The nearest-token radius, its token change rate and decoded samples per task."""
    lines = []
    for name, t in trained.items():
        p = t["perturbation"]
        lines.append(
            f"{name}: nearest-token radius {p['radius']:.3f}, "
            f"{100 * p['token_change_rate']:.1f}% of perturbable tokens changed."
        )
        lines += [f"- {example_text(e)}" for e in p["examples"]]
    return lines


def markdown(report: Mapping[str, Any]) -> str:
    """Main table, paired intervals, arms, controls, per-round history, perturbation
    examples and the sampler report of one run."""
    trained = {n: t for n, t in report["tasks"].items() if "seeds" in t}
    if not trained:  # sampler_report.only
        return "\n".join(sampler_markdown(report)[1:]) + "\n"
    lines = main_table(trained) + paired_table(trained, report["config"]["selection"])
    lines += arms_table(trained) + distill_table(trained) + rounds_table(trained)
    lines += perturbation_lines(trained) + sampler_markdown(report)
    return "\n".join(lines) + "\n"


def sampler_markdown(report: Mapping[str, Any]) -> list[str]:
    """The sampler report of every task that has one (empty list otherwise)."""
    tasks = [(n, t["sampler_report"]) for n, t in report["tasks"].items() if "sampler_report" in t]
    if not tasks:
        return []
    lines = [
        "",
        "Samplers (one round around the first agora-half rows; labeler = gold is over samples):",
        "",
        "| task | sampler | centres | text changed | tokens changed | labeler = gold "
        "| labeler = its centre label | labeler = gold on centres |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in tasks:
        for kind, x in r["samplers"].items():
            lines.append(
                f"| {name} | {kind} | {r['n_centres']} | {100 * x['changed']:.0f}% | "
                f"{x['tokens_changed']:.2f} | {100 * x['labeler_equals_gold']:.1f}% | "
                f"{100 * x['labeler_equals_centre_label']:.1f}% | "
                f"{100 * r['labeler_on_centres_equals_gold']:.1f}% |"
            )
    lines.append("")
    for name, r in tasks:
        for kind, x in r["samplers"].items():
            for e in x["examples"]:
                lines.append(f"- {name} {kind}: {example_text(e)}")
    return lines


# ---------------------------------------------------------------------- several runs


def load_reports(paths: Sequence[str | Path]) -> list[dict]:
    """The JSON reports at `paths`; a missing or unfinished one is an error naming the file."""
    reports = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise FileNotFoundError(f"no agora_glue report at {path} (has that run finished?)")
        report = json.loads(path.read_text())
        if "tasks" not in report or "config" not in report:
            raise ValueError(f"{path} is not an agora_glue report (no 'tasks' / 'config')")
        reports.append(report)
    return reports


def excludes_zero(ci: Sequence[float]) -> bool:
    """Whether the interval mean ± half-width lies entirely on one side of zero."""
    mean, half = ci
    return half == half and abs(mean) > half


def wins(seeds: Sequence[Mapping], kind: str, key: str) -> int:
    """Seeds on which arm `kind` scores strictly above the baseline whose seed-record key is
    `key` (held-out half)."""
    return sum(s["arms"][kind]["agora"] > s[key] for s in seeds)


def task_rows(report: Mapping[str, Any]) -> list[dict]:
    """One row per trained task of a report: sizes, labeler, baselines and arm summaries."""
    rows = []
    for name, t in report["tasks"].items():
        if "seeds" not in t or "arms" not in t["summary"]:
            continue
        s = t["summary"]
        rows.append(
            {
                "task": name,
                "metric": get_task(name).primary_metric,
                "train": t["sizes"]["train"],
                "seeds": t["seeds"],
                "labeler": t["labeler"]["heldout"],
                "baselines": {
                    key: (s[f"{key}_mean"], s[f"{key}_std"])
                    for key in ("plain", "budget", "distill")
                    if f"{key}_mean" in s
                },
                "arms": s["arms"],
                "primary": next(iter(s["arms"])),
            }
        )
    return rows


def target(rows: Sequence[Mapping], min_tasks: int = 2) -> dict:
    """Per (arm, training size): the tasks on which the arm's paired intervals against plain
    and distillation both lie above zero, and whether there are at least `min_tasks`."""
    out: dict[str, dict] = {}
    for r in rows:
        for kind, a in r["arms"].items():
            entry = out.setdefault(f"{kind} @ {r['train']}", {"tasks": [], "checked": []})
            entry["checked"].append(r["task"])
            if all(k in a and a[k][0] - a[k][1] > 0 for k in TARGET_BASELINES):
                entry["tasks"].append(r["task"])
    for entry in out.values():
        entry["met"] = len(entry["tasks"]) >= min_tasks
    return out


def runs_markdown(reports: Sequence[Mapping[str, Any]], min_tasks: int = 2) -> str:
    """The rows table (held-out half; mean ± sd over seeds, then the primary arm's paired
    differences) and the per-arm target check."""
    rows = sorted(
        (r for rep in reports for r in task_rows(rep)), key=lambda r: (r["train"], r["task"])
    )
    if not rows:
        raise ValueError("no trained task with Agora arms in the given reports")
    kinds = list(dict.fromkeys(k for r in rows for k in r["arms"]))
    pct = lambda ms: fmt_mean_std(*ms)
    head = ["task (metric)", "train", "seeds", "labeler", "plain", "plain, Agora's steps"]
    head += ["distill (random unlabelled)"] + [f"Agora, {k}" for k in kinds]
    head += ["arm", *(f"arm − {b.short}" for b in RUNS_DIFFERENCES)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        b, arms = r["baselines"], r["arms"]
        cells = [
            f"{r['task']} ({r['metric']})",
            str(r["train"]),
            str(len(r["seeds"])),
            f"{100 * r['labeler']:.1f}",
            *(pct(b[k]) if k in b else "not run" for k in ("plain", "budget", "distill")),
            *(
                pct((arms[k]["agora_mean"], arms[k]["agora_std"])) if k in arms else "not run"
                for k in kinds
            ),
            r["primary"],
        ]
        a = arms[r["primary"]]
        for b in RUNS_DIFFERENCES:
            if b.ci not in a:
                cells.append("not run")
                continue
            text = fmt_interval(a[b.ci])
            text = f"**{text}**" if excludes_zero(a[b.ci]) else text
            n = wins(r["seeds"], r["primary"], b.key)
            cells.append(f"{text} ({n}/{len(r['seeds'])})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Held-out half of dev only; mean ± sample sd over seeds; differences are paired per "
        "seed (arm − baseline), mean ± 95 % t-interval half-width, bold = the interval "
        "excludes zero, (n/N) = seeds on which the arm is ahead.",
        "",
        f"Target: interval above zero against plain and distillation on "
        f"at least {min_tasks} tasks.",
        "",
        "| arm @ train | tasks meeting it | met |",
        "|---|---|---|",
    ]
    for key, entry in target(rows, min_tasks).items():
        met = ", ".join(entry["tasks"]) or "none"
        lines.append(
            f"| {key} | {met} (of {', '.join(entry['checked'])}) | "
            f"{'yes' if entry['met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"
