"""Issue 11's rows across runs: one table from several `agora_glue` reports, and the target.

`agora_glue` writes one report per run (`<workdir>/agora_glue.json`); issue 11's comparison is
spread over several runs (one process per task, one per training-set size). This module reads
them and prints the compact table the README and docs/agora.md show, so every number there
comes from one command:

    python scripts/agora_rows.py runs/agora_rows/*/agora_glue.json \
        runs/agora_rows2k/*/agora_glue.json

Per (task, training-set size): the labeler's held-out metric, mean ± sample std over seeds of
plain, plain with Agora's step budget, the distillation control and every Agora arm; then the
primary arm's (the first sampler of the run) paired per-seed differences against plain,
distillation and the step budget, mean ± 95 % t-interval half-width (`agora_glue.paired_interval`),
with the seeds on which the arm is ahead. An interval that excludes zero is bold.

The target (issue 11, item 3): an arm beats both plain and the distillation control with the
paired interval above zero on at least `min_tasks` tasks; checked per arm and training size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bort_jax.experiments import agora_glue
from bort_jax.tasks import get_task

# (report key of the paired interval, seed-record key of the baseline, column name)
DIFFERENCES = (
    ("ci_plain", "plain", "plain"),
    ("ci_distill", "distill", "distill"),
    ("ci_budget", "budget", "steps"),
)
TARGET_BASELINES = ("ci_plain", "ci_distill")


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


def wins(seeds: Sequence[Mapping], kind: str, baseline: str) -> int:
    """Seeds on which arm `kind` scores strictly above `baseline` (held-out half)."""
    return sum(s["arms"][kind]["agora"] > s[baseline] for s in seeds)


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


def markdown(reports: Sequence[Mapping[str, Any]], min_tasks: int = 2) -> str:
    """The rows table (held-out half; mean ± sd over seeds, then the primary arm's paired
    differences) and the per-arm target check."""
    rows = sorted(
        (r for rep in reports for r in task_rows(rep)), key=lambda r: (r["train"], r["task"])
    )
    if not rows:
        raise ValueError("no trained task with Agora arms in the given reports")
    kinds = list(dict.fromkeys(k for r in rows for k in r["arms"]))
    pct = lambda ms: agora_glue.fmt_mean_std(*ms)
    head = ["task (metric)", "train", "seeds", "labeler", "plain", "plain, Agora's steps"]
    head += ["distill (random unlabelled)"] + [f"Agora, {k}" for k in kinds]
    head += ["arm", *(f"arm − {col}" for _, _, col in DIFFERENCES)]
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
        for ci_key, seed_key, _ in DIFFERENCES:
            if ci_key not in a:
                cells.append("not run")
                continue
            text = agora_glue.fmt_interval(a[ci_key])
            text = f"**{text}**" if excludes_zero(a[ci_key]) else text
            n = wins(r["seeds"], r["primary"], seed_key)
            cells.append(f"{text} ({n}/{len(r['seeds'])})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Held-out half of dev only; mean ± sample sd over seeds; differences are paired per "
        "seed (arm − baseline), mean ± 95 % t-interval half-width, bold = the interval "
        "excludes zero, (n/N) = seeds on which the arm is ahead.",
        "",
        f"Target (issue 11, item 3): interval above zero against plain and distillation on "
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
