"""`bort_jax.experiments.agora_glue.report`: the table over several agora_glue reports, built
from seed records through `agora_glue.summarise_task` and checked by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bort_jax.experiments import agora_glue

ROOT = Path(__file__).resolve().parents[1]
T2 = 4.303  # t_{0.975, 2}: three seeds


def _seed(plain: float, distill: float, budget: float, nb: float, nt: float) -> dict:
    hist = [{"n_new": 4, "labeler_agreement": 0.5, "n_synthetic": 4, "distinct_synthetic": 3}]
    arm = lambda v: {"agora": v, "agora_agora_dev": v, "history": hist}
    return {
        "plain": plain,
        "plain_best_of": None,
        "distill": distill,
        "budget": budget,
        "agora": nb,
        "plain_agora_dev": plain,
        "agora_agora_dev": nb,
        "arms": {"neighbour": arm(nb), "nearest_token": arm(nt)},
    }


def _report(task: str, train: int, seeds: list[dict], labeler: float = 0.8) -> dict:
    return {
        "config": {"n_train": train},
        "tasks": {
            task: {
                "sizes": {"train": train},
                "labeler": {"heldout": labeler},
                "seeds": seeds,
                "summary": agora_glue.summarise_task(seeds),
            }
        },
    }


# SST-2: neighbour − plain = (.04, .05, .06), − distill = (.03, .04, .05): both above zero;
# − budget = (.10, .10, .10): zero spread. nearest-token below plain on every seed.
SST2 = [
    _seed(0.70, 0.71, 0.64, 0.74, 0.69),
    _seed(0.71, 0.72, 0.66, 0.76, 0.70),
    _seed(0.72, 0.73, 0.68, 0.78, 0.71),
]
# RTE: neighbour − distill = (+.02, −.02, .00): the interval includes zero.
RTE = [
    _seed(0.50, 0.52, 0.50, 0.54, 0.50),
    _seed(0.50, 0.56, 0.50, 0.54, 0.50),
    _seed(0.50, 0.54, 0.50, 0.54, 0.50),
]


def test_excludes_zero_and_wins():
    assert agora_glue.excludes_zero((0.05, 0.02))
    assert agora_glue.excludes_zero((-0.05, 0.02))
    assert not agora_glue.excludes_zero((0.01, 0.02))
    assert not agora_glue.excludes_zero((0.05, math.nan))  # one seed: no interval
    assert agora_glue.wins(RTE, "neighbour", "distill") == 1  # ties do not count
    assert agora_glue.wins(SST2, "nearest_token", "plain") == 0


def test_table_and_target_by_hand():
    reports = [_report("sst2", 500, SST2), _report("rte", 500, RTE, labeler=0.6)]
    text = agora_glue.runs_markdown(reports, min_tasks=1)
    row = next(line for line in text.splitlines() if line.startswith("| sst2"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["sst2 (accuracy)", "500", "3", "80.0"]
    assert cells[4] == "71.0 ± 1.0"  # plain (.70, .71, .72)
    assert cells[6] == "72.0 ± 1.0"  # distill (.71, .72, .73)
    assert cells[7] == "76.0 ± 2.0" and cells[8] == "70.0 ± 1.0"  # neighbour, nearest-token
    assert cells[9] == "neighbour"
    # − plain: mean .05, sd .01 → half-width 4.303 · .01 / √3 = .0248
    assert cells[10] == f"**+5.0 ± {100 * T2 * 0.01 / math.sqrt(3):.1f}** (3/3)"
    # − distill: (.03, .04, .05) → mean .04, sd .01, above zero
    assert cells[11] == "**+4.0 ± 2.5** (3/3)"
    assert cells[12] == "**+10.0 ± 0.0** (3/3)"  # − budget, no spread
    rte = next(line for line in text.splitlines() if line.startswith("| rte"))
    assert "+0.0 ± 5.0 (1/3)" in rte  # (+.02, −.02, 0): sd .02 → 4.303·.02/√3 = .0497
    assert "**" not in rte.split("|")[12]

    rows = [r for rep in reports for r in agora_glue.task_rows(rep)]
    goal = agora_glue.target(rows, min_tasks=1)
    assert goal["neighbour @ 500"] == {"tasks": ["sst2"], "checked": ["sst2", "rte"], "met": True}
    assert goal["nearest_token @ 500"]["tasks"] == [] and not goal["nearest_token @ 500"]["met"]
    assert not agora_glue.target(rows, min_tasks=2)["neighbour @ 500"]["met"]
    assert "| neighbour @ 500 | sst2 (of rte, sst2) | yes |" in text


def test_sizes_are_separate_rows(tmp_path):
    """The same task at two training sizes: two rows, ordered by size, targets per size;
    the script reads the reports from disk and prints the same table."""
    paths = []
    for n, seeds in ((2000, RTE), (500, SST2)):
        p = tmp_path / f"r{n}" / "agora_glue.json"
        p.parent.mkdir()
        p.write_text(json.dumps(_report("sst2", n, seeds)))
        paths.append(str(p))
    text = agora_glue.runs_markdown(agora_glue.load_reports(paths))
    rows = [line for line in text.splitlines() if line.startswith("| sst2")]
    assert [r.split("|")[2].strip() for r in rows] == ["500", "2000"]
    assert "| neighbour @ 2000 | none (of sst2) | no |" in text
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "agora_rows.py"), *paths],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert out.stdout == text


def test_bad_reports_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        agora_glue.load_reports([tmp_path / "missing.json"])
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"x": 1}))
    with pytest.raises(ValueError, match="other.json"):
        agora_glue.load_reports([bad])
    empty = {"config": {}, "tasks": {"sst2": {"sizes": {}}}}  # sampler report only
    with pytest.raises(ValueError, match="no trained task"):
        agora_glue.runs_markdown([empty])


def test_sampler_report_only_markdown():
    # sampler_report.only: the report is the sampler table alone
    x = dict(changed=0.5, tokens_changed=1.25, labeler_equals_gold=0.75)
    x.update(labeler_equals_centre_label=1.0, examples=[])
    only = {"n_centres": 4, "labeler_on_centres_equals_gold": 0.5, "samplers": {"span": x}}
    md = agora_glue.markdown({"config": {}, "tasks": {"rte": {"sampler_report": only}}})
    assert (
        md.startswith("Samplers")
        and "| rte | span | 4 | 50% | 1.25 | 75.0% | 100.0% | 50.0% |" in md
    )
