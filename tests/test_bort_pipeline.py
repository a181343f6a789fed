"""The whole pipeline (bort_jax/experiments/bort_pipeline/) on its smoke config, cut to a
two-candidate grid at the source's width and the fixture GLUE slices: extract → baselines →
sliced / KD-pretrained students → fine-tune (grid + 2 seeds) → report; every report number
is checked against the stage files it comes from; `scripts/bort.py` killed at its stage
boundaries and rerun gives the uninterrupted report."""

import json
from pathlib import Path

import _pipeline_config
import jax
import numpy as np
import pytest
from _kill import run_to_end, stall_and_kill

from bort_jax import arch as A
from bort_jax import extract, hf
from bort_jax import finetune as ft
from bort_jax.experiments import bort_pipeline
from bort_jax.experiments.bort_pipeline import costs, tuning
from bort_jax.experiments.bort_pipeline import models as M
from bort_jax.experiments.bort_pipeline import report as report_mod
from bort_jax.extract_config import ExtractConfig
from bort_jax.search import fptas as F
from bort_jax.search.random_search import RandomOptions, random_search
from configs import bort

# one module fixture runs the whole pipeline (extraction, 3 pretrainings, 2 seeds of ~7 models
# on 2 tasks); on a loaded 2-core machine that exceeds the suite's per-test limit
pytestmark = pytest.mark.timeout(2400)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bort.py"
CLOCK = {"latency_ms", "speedup_vs_source", "seconds", "train_seconds"}  # measured, not computed


@pytest.fixture(scope="module")
def config(task_data_dir):
    c = _pipeline_config.get_config()
    assert c.data_dir == str(task_data_dir)
    return c


@pytest.fixture(scope="module")
def source(config):
    """The pipeline's source and teacher: MiniLM sliced to D4/A4/H128/I512."""
    return hf.load(config.extract.source_dir)


@pytest.fixture(scope="module")
def run(config, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bort")
    return workdir, bort_pipeline.run(config, str(workdir))


def _model(report, key):
    return next(r for r in report["models"] if r["key"] == key)


def _stage(workdir: Path, key: str, task: str, lr: float, seed: int) -> dict:
    return json.loads(
        (workdir / "finetune" / key / task / f"lr{lr:g}_seed{seed}" / "result.json").read_text()
    )


@pytest.mark.slow
def test_rows_come_from_stage_files(run, config, source):
    workdir, report = run
    lat = json.loads((workdir / "latency.json").read_text())
    source_row = _model(report, "source")
    assert source_row["arch"] == str(source.arch) == "D4/A4/H128/I512"
    assert report["tasks"] == ["sst2", "stsb"]
    for row in report["models"]:
        arch = A.Arch.parse(row["arch"])
        total = A.param_count(arch, source.spec)["total"]
        assert row["params"] == total
        assert row["params_non_embedding"] == total - A.embedding_params(arch, source.spec)
        assert row["latency_ms"] == pytest.approx(1e3 * lat[row["arch"]])
        assert row["speedup_vs_source"] == pytest.approx(
            source_row["latency_ms"] / row["latency_ms"]
        )
        means = []
        for task in report["tasks"]:
            metric = report["metrics"][task]
            grid = [_stage(workdir, row["key"], task, lr, 0) for lr in config.grid.learning_rate]
            best = max(grid, key=lambda p: p["select"][metric])
            assert row["selected"][task]["learning_rate"] == best["learning_rate"]
            assert row["selected"][task]["best_step"] == best["best_step"]
            assert best["best_step"] in (2, 4)  # evaluated at every grid step count
            runs = [_stage(workdir, row["key"], task, best["learning_rate"], s) for s in (0, 1)]
            values = [r["report"][metric] for r in runs]
            assert row["scores"][task] == pytest.approx(np.mean(values))
            means.append(np.mean(values))
            for r in runs:  # the two halves partition the dev set
                assert r["select_examples"] + r["report_examples"] == min(
                    65, config.finetune.max_eval_examples or 65
                )
        assert row["mean_over_tasks"] == pytest.approx(np.mean(means))
        held = [m for t, m in zip(report["tasks"], means) if t != config.calibration_task]
        assert report["held_out_tasks"] == ["stsb"]
        assert row["mean_held_out"] == pytest.approx(np.mean(held))
    md = (workdir / "report.md").read_text()
    assert f"{100 * source_row['scores']['sst2']:.1f} ± " in md
    assert json.loads((workdir / "report.json").read_text())["models"] == report["models"]


@pytest.mark.slow
def test_every_role_sliced_and_pretrained(run):
    _, report = run
    variants = {}
    for row in report["models"]:
        for role in row["roles"]:
            variants.setdefault(role, set()).add(row["variant"])
    for role in M.ROLES:
        # a role of the source's own shape: its sliced-only model is the source itself
        sliced = "source" if role in _model(report, "source")["roles"] else "sliced"
        assert variants[role] == {sliced, "kd"}, role
    assert variants["source"] == {"source"}


@pytest.mark.slow
def test_seeds_aggregate_by_hand(run, config):
    workdir, report = run
    row = _model(report, "source")
    lr = row["selected"]["stsb"]["learning_rate"]
    values = [
        _stage(workdir, "source", "stsb", lr, s)["report"][report["metrics"]["stsb"]]
        for s in (0, 1)
    ]
    mean = sum(values) / 2
    std = (sum((v - mean) ** 2 for v in values) / 1) ** 0.5
    assert row["scores"]["stsb"] == pytest.approx(mean)
    assert row["spread"]["stsb"] == pytest.approx(std)
    detail = report["details"]["source"]["stsb"]["score"]
    assert detail["values"] == pytest.approx(values)
    assert (detail["min"], detail["max"]) == (min(values), max(values))


@pytest.mark.slow
def test_baselines_are_the_searches_picks_on_the_cached_table(run, config, source):
    workdir, report = run
    roles = json.loads((workdir / "roles.json").read_text())
    table = {r["arch"]: r for r in roles["table"]}
    cands = [A.Arch.parse(r["arch"]) for r in roles["table"]]
    p = lambda a: table[str(a)]["p"]  # noqa: E731
    i = lambda a: table[str(a)]["i"]  # noqa: E731
    e = lambda a: table[str(a)]["e"]  # noqa: E731
    objective = ExtractConfig.from_config(config.extract).objective.coefficient()
    summary = json.loads((workdir / "extract" / "summary.json").read_text())
    n = summary["n_evaluations"]
    rnd = random_search(cands, p, i, e, RandomOptions(n=n, seed=config.seed, objective=objective))
    assert roles["random"] == str(rnd.chosen) and roles["random_search"]["n"] == n
    exh = F.exhaustive(cands, p, i, e, objective=objective)
    assert roles["exhaustive"] == str(exh.chosen)
    assert roles["chosen"] == summary["chosen"]
    size = {a: A.param_count(A.Arch.parse(a), source.spec)["total"] for a in table}
    assert roles["smallest"] == min(size, key=size.get)
    assert roles["largest"] == max(size, key=size.get)
    # the e-values are the extraction cache's (nothing re-evaluated a cached candidate)
    cache = extract.CandidateCache(workdir / "extract" / "candidates" / summary["config_hash"])
    for row in roles["table"]:
        assert cache.get(row["key"]) == pytest.approx(row["e"])
    assert roles["exhaustive_search"]["e_calls"] == len(cands) - summary["n_evaluations"]
    assert report["picks"]["random"] == roles["random"]


@pytest.mark.slow
def test_layer_drop_is_no_slower_than_chosen_and_keeps_source_layers(run, config, source):
    workdir, _ = run
    roles = json.loads((workdir / "roles.json").read_text())
    ld = roles["layerdrop"]
    seq = config.extract.latency_seq_len
    flops = lambda a: A.flops(A.Arch.parse(a), seq, spec=source.spec)  # noqa: E731
    assert ld["meets"] and flops(ld["arch"]) <= flops(roles["chosen"])
    # k is the smallest such k: keeping every (k-1)-th layer would be slower than chosen
    if ld["k"] > 1:
        more = A.Arch.parse(ld["source"]).depth
        deeper = len(range(0, more, ld["k"] - 1))
        assert deeper > len(ld["keep"])
        a = A.Arch.parse(ld["arch"])
        assert A.flops(
            A.Arch(deeper, a.heads, a.hidden, a.intermediate), seq, spec=source.spec
        ) > flops(roles["chosen"])
    dropped = hf.load(workdir / "layerdrop_init")
    assert dropped.arch == A.Arch.parse(ld["arch"])
    for j, k in enumerate(ld["keep"]):
        a, b = dropped.params[f"layer_{j}"], source.params[f"layer_{k}"]
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_same_shape_and_init_share_runs(run, source):
    workdir, report = run
    roles = json.loads((workdir / "roles.json").read_text())
    pairs = {(roles[r], "source") for r in M.SEARCH_ROLES} | {
        (roles["layerdrop"]["arch"], "layerdrop")
    }
    merged = (str(source.arch), "source") in pairs  # sliced to the source's shape = source
    assert len(report["models"]) == 2 * len(pairs) + 1 - merged
    assert len({r["key"] for r in report["models"]}) == len(report["models"])
    assert len(list((workdir / "pretrain").iterdir())) == len(pairs)
    assert len(list((workdir / "finetune").iterdir())) == len(report["models"])
    # two candidates, five search roles: the search roles collapse onto at most two shapes
    assert len({a for a, b in pairs if b == "source"}) <= 2


def test_students_dedupe_by_shape_and_init():
    d2 = "D2/A12/H384/I1536"
    roles = {
        "chosen": d2,
        "smallest": "D1/A12/H384/I1536",
        "largest": d2,
        "random": d2,
        "exhaustive": "D1/A12/H384/I1536",
        "layerdrop": {"arch": d2},
    }
    got = {(s.arch, s.base): s.roles for s in M.students(roles)}
    assert got == {
        (A.Arch.parse(d2), "source"): ("chosen", "largest", "random"),
        (A.Arch.parse("D1/A12/H384/I1536"), "source"): ("smallest", "exhaustive"),
        (A.Arch.parse(d2), "layerdrop"): ("layerdrop",),
    }


def test_search_comparison_by_hand():
    # four candidates, W 4, 3, 2, 1; the FPTAS picked W = 3 after n = 2 evaluations
    table = [{"arch": a, "w": w} for a, w in (("a", 1.0), ("b", 4.0), ("c", 2.0), ("d", 3.0))]
    roles = {"table": table, "chosen": "d", "random_search": {"n": 2}}
    c = report_mod.search_comparison(roles)
    assert c["fptas_w_over_opt"] == pytest.approx(0.75)
    # best of 2 of {1,2,3,4}: pairs' maxima 2,3,4,3,4,4 → mean 20/6; / OPT 4
    assert c["random_expected_w_over_opt"] == pytest.approx(20 / 24)
    # P(best ≥ 3) = 1 − P(both from {1, 2}) = 1 − 1/6
    assert c["random_p_reach_fptas"] == pytest.approx(5 / 6)
    # E[best of 1] = 2.5 < 3 ≤ E[best of 2] = 10/3
    assert c["random_budget_to_match_fptas"] == 2
    assert len(c["random_w_over_opt"]) == 5
    assert set(c["random_w_over_opt"]) <= {0.5, 0.75, 1.0}


def test_calibration_task_must_be_a_task(config, tmp_path):
    bad = _pipeline_config.get_config()
    bad.calibration_task = "cola"
    with pytest.raises(ValueError, match="calibration_task"):
        bort_pipeline.run(bad, str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_task_corpus_is_the_unlabelled_training_text(config, tmp_path):
    from bort_jax.data import text
    from bort_jax.tasks import get_task
    from bort_jax.tasks.loading import load_examples

    path = tmp_path / "tasks.txt"
    assert M.task_corpus(config, path) == str(path)
    docs = list(text.read_text_files(path))
    want = []
    for name in config.tasks.split(","):
        for ex in load_examples(get_task(name), "train", config.data_dir):
            want.append(" ".join(f"{ex.text_a} {ex.text_b or ''}".split()))
    assert sorted(docs) == sorted(want)  # every example once, labels dropped
    assert docs != want  # shuffled
    again = tmp_path / "again.txt"
    M.task_corpus(config, again)
    assert again.read_text() == path.read_text()  # same seed, same order


def test_schedule_and_aggregate():
    class C:
        class grid:
            num_steps = [200, 1000]

    assert tuning.schedule(C) == (1000, 200)
    runs = [
        {"primary_metric": "acc", "seed": s, "report": {"acc": v}}
        for s, v in enumerate([0.5, 0.7, 0.6])
    ]
    agg = tuning.aggregate(runs)
    assert agg["mean"] == pytest.approx(0.6) and agg["std"] == pytest.approx(0.1)
    assert agg["seeds"] == [0, 1, 2]


@pytest.mark.slow
def test_rerun_reuses_every_stage(run, config, monkeypatch):
    workdir, report = run

    def no_work(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(ft, "run_prepared", no_work)
    monkeypatch.setattr(M.pretrain, "pretrain", no_work)
    monkeypatch.setattr(M.extract, "build_problem", no_work)
    again = bort_pipeline.run(config, str(workdir))
    assert again == report


@pytest.mark.slow
def test_agora_option_runs_on_the_chosen_kd_model(run, config, monkeypatch):
    """with_agora: agora_for_model on the chosen shape's KD-pretrained export, labelled by the
    source; its summary lands in report.json and report.md (Agora itself: test_agora_glue*)."""
    workdir, report = run
    calls = []
    summary = {
        "sst2": {
            "metric": "accuracy",
            "n_train": 500,
            "seeds": 3,
            "plain": {"mean": 0.70, "std": 0.01},
            "agora": {"mean": 0.75, "std": 0.02},
            "difference": {"mean": 0.05, "half_width": 0.03, "interval": [0.02, 0.08]},
        }
    }

    def fake(agora_config, init_dir, student_dir, data_dir, out):
        calls.append((init_dir, student_dir, data_dir, Path(out)))
        return summary

    monkeypatch.setattr(bort_pipeline.agora_glue, "agora_for_model", fake)
    monkeypatch.setattr(ft, "run_prepared", lambda *a, **k: pytest.fail("fine-tuning re-ran"))
    cfg = _pipeline_config.get_config()
    cfg.with_agora = True
    try:
        again = bort_pipeline.run(cfg, str(workdir))
    finally:  # the module's workdir as the other tests expect it
        (workdir / "agora.json").unlink(missing_ok=True)
        bort_pipeline.write_report(workdir, "report", report, bort_pipeline.markdown(report))
    rows = report["models"]
    key = next(r["key"] for r in rows if r["variant"] == "kd" and "chosen" in r["roles"])
    export = workdir / "pretrain" / key.removeprefix("kd_") / "export"
    assert calls == [(M.source_dir(cfg), str(export), cfg.data_dir, workdir / "agora")]
    assert again["agora"] == {"model": key, "tasks": summary}
    assert "| sst2 | accuracy | 500 | 3 | 70.0 ± 1.0 | 75.0 ± 2.0 | +5.0 ± 3.0 |" in (
        bort_pipeline.markdown(again)
    )


def test_bad_task_named_before_work(config, tmp_path):
    bad = bort.get_config("smoke")
    bad.data_dir = config.data_dir
    bad.tasks = "sst2,qqq"
    with pytest.raises(ValueError, match="qqq"):
        bort_pipeline.run(bad, str(tmp_path))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_costs_count_runs_and_read_progress(run, config):
    workdir, report = run
    default = bort.get_config()
    counts = costs.plan(default, 6)
    assert counts["models"] == 13 and counts["runs_per_model_task"] == 4
    assert counts["finetune_runs"] == 13 * 5 * 4 and counts["steps_per_run"] == 100
    assert counts["evals_per_run"] == 2
    done = costs.progress(config, workdir)
    n_runs = len(report["models"]) * len(report["tasks"]) * 2  # 1 learning rate + 1 seed
    on_disk = list(workdir.glob("finetune/*/*/*/result.json"))
    assert done["finetune_runs_done"] == n_runs == len(on_disk)
    assert done["finished"] and done["projected_remaining_s"] == pytest.approx(0.0, abs=1e-6)


def _without_clock(tree):
    """`tree` without the fields a clock measures (at any depth)."""
    if isinstance(tree, dict):
        return {k: _without_clock(v) for k, v in tree.items() if k not in CLOCK}
    if isinstance(tree, list):
        return [_without_clock(v) for v in tree]
    return tree


@pytest.mark.slow
def test_script_killed_at_three_points_resumes_to_the_same_report(run, tmp_path):
    """`scripts/bort.py` on a one-task, one-seed variant of the config, SIGKILLed at the
    pipeline's own stage boundaries: (1) the first KD pretraining done, before its
    summary.json; (2) the first fine-tuning run done, before its result.json; (3) everything
    done, before report.json. Rerun, it reports what an uninterrupted run does (in this
    process, after the module's run: the compiled programs are shared), clock readings
    (latencies, seconds) aside. (Kills inside a checkpoint save and while the teacher
    outputs stream into the cache: test_train.py and test_kill_resume.py.)"""
    config = f"--config={Path(_pipeline_config.__file__).resolve()}:kill"
    ref = bort_pipeline.run(_pipeline_config.get_config("kill"), str(tmp_path / "ref"))
    assert ref["tasks"] == ["stsb"] and ref["seeds"] == [0]
    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    args = [str(SCRIPT), config, f"--workdir={workdir}"]
    for point in (
        f"write:{workdir}/pretrain/*/summary.json",
        f"write:{workdir}/finetune/*/*/*/result.json",
        f"write:{workdir}/report.json",
    ):
        stall_and_kill(args, point, marker)
        assert not (workdir / "report.json").exists(), point
    run_to_end(args)
    again = json.loads((workdir / "report.json").read_text())
    want = json.loads((tmp_path / "ref" / "report.json").read_text())
    assert _without_clock(again) == _without_clock(want)
