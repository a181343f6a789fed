"""bort_jax.search.budget (T(ε, s) of Eq. R) and bort_jax.experiments.eps_budget.

The budget is checked against hand-computed step counts; the experiment's smoke config runs
once end to end (module fixture: 4 candidates, steps 2 and 4) and its rank statistics, W
agreement and FPTAS counts are recomputed here from the stored stage files with scipy and the
W formula written out, and a rerun in the same workdir must reproduce the report from those
files without training anything.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _kill import run_to_end, stall_and_kill
from scipy import stats

from bort_jax import experiments as ex
from bort_jax import extract, proxy
from bort_jax.config import ConfigError
from bort_jax.experiments import eps_budget
from bort_jax.extract_config import ExtractConfig
from bort_jax.search.budget import (
    ProxyBudget,
    kappa_for,
    resolve_config,
    resolve_steps,
    step_budget,
)
from configs import default
from configs import eps_budget as eps_budget_config

ROOT = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------ budget


def test_reference_point_scales_as_one_over_eps():
    b = ProxyBudget(mode="eps", steps_ref=40, eps_ref=0.1)
    assert [resolve_steps(b, e, 1) for e in (0.4, 0.2, 0.1, 0.05)] == [10, 20, 40, 80]
    # 40 * 0.1 / 0.15 = 26.67 -> 27; 40 * 0.1 / 0.3 = 13.33 -> 14; 40 * 0.1 / 0.01 = 400
    assert [resolve_steps(b, e, 1) for e in (0.15, 0.3, 0.01)] == [27, 14, 400]


def test_reference_point_reproduces_itself_despite_binary_rounding():
    # 3 * 0.1 = 0.30000000000000004: a plain ceil(kappa / eps) would give 4 at the reference
    b = ProxyBudget(mode="eps", steps_ref=3, eps_ref=0.1)
    assert [resolve_steps(b, e, 1) for e in (0.1, 0.05, 0.2, 0.3)] == [3, 6, 2, 1]


def test_s_enters_as_s_to_the_three_halves():
    b = ProxyBudget(mode="eps", steps_ref=40, eps_ref=0.1, s_ref=1.0)
    assert resolve_steps(b, 0.1, 4) == 5  # 40 / 4^1.5 = 5
    assert resolve_steps(b, 0.1, 2) == 15  # 40 / 2^1.5 = 14.14 -> 15
    k = ProxyBudget(mode="eps", kappa=4.0)  # the same budget given as kappa
    assert [resolve_steps(k, e, s) for e, s in ((0.1, 1), (0.05, 1), (0.1, 4))] == [40, 80, 5]


def test_clipping_and_fixed_mode():
    b = ProxyBudget(mode="eps", steps_ref=40, eps_ref=0.1, min_steps=15, max_steps=60)
    assert [resolve_steps(b, e, 1) for e in (0.4, 0.2, 0.1, 0.05)] == [15, 20, 40, 60]
    assert resolve_steps(ProxyBudget(), 0.05, 1, steps=40) == 40  # fixed: proxy.num_steps
    assert resolve_steps(ProxyBudget(mode="fixed", steps_ref=10), 0.4, 1, steps=7) == 7


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(mode="adaptive"), "proxy_budget.mode"),
        (dict(mode="eps", kappa=-1.0), "proxy_budget.kappa"),
        (dict(mode="eps", steps_ref=-5), "proxy_budget.steps_ref"),
        (dict(mode="eps", steps_ref=40, eps_ref=1.5), "proxy_budget.eps_ref"),
        (dict(mode="eps", steps_ref=40, s_ref=0.0), "proxy_budget.s_ref"),
        (dict(mode="eps", steps_ref=40, min_steps=0), "proxy_budget.min_steps"),
        (dict(mode="eps", steps_ref=40, min_steps=10, max_steps=5), "proxy_budget.max_steps"),
        (dict(mode="eps"), "proxy_budget.kappa"),  # neither kappa nor steps_ref
        (dict(mode="eps", kappa=4.0, steps_ref=40), "proxy_budget.steps_ref"),  # both
    ],
)
def test_bad_budget_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        ProxyBudget(**kwargs)


@pytest.mark.parametrize(
    "eps, s, steps, field",
    [(0.0, 1, None, "eps"), (1.0, 1, None, "eps"), (0.1, 0, None, "s"), (0.1, 1, 0, "proxy")],
)
def test_bad_resolve_arguments_name_the_field(eps, s, steps, field):
    mode = "fixed" if field == "proxy" else "eps"
    b = ProxyBudget(mode=mode, steps_ref=40 if mode == "eps" else 0)
    with pytest.raises(ValueError, match=rf"^{field}"):
        resolve_steps(b, eps, s, steps)


def test_resolved_steps_key_the_candidate_cache():
    def resolved(eps, budget):
        c = default.get_config()
        c.eps, c.proxy_budget = eps, budget
        return resolve_config(ExtractConfig.from_config(c))

    eps40 = dict(mode="eps", steps_ref=40, eps_ref=0.1)
    a, b = resolved(0.1, eps40), resolved(0.05, eps40)
    assert (a.proxy.num_steps, b.proxy.num_steps) == (40, 80)
    assert resolve_config(b).proxy.num_steps == 80  # resolving twice changes nothing
    keys = extract.ERROR_KEYS
    assert extract.config_hash(a, keys) != extract.config_hash(b, keys)
    fixed = resolved(0.05, dict(mode="fixed"))  # proxy.num_steps = 40 at any eps
    assert extract.config_hash(fixed, keys) == extract.config_hash(a, keys)


# ------------------------------------------------------------------------------ experiment


def test_rank_statistics_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 30).astype(float)
    assert eps_budget.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert eps_budget.kendall_tau_b(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
    assert eps_budget.spearman([1, 2, 3], [3, 1, 2]) == pytest.approx(-0.5)  # hand: 1-6*6/24


def test_default_schedule_is_40_steps_at_eps_0_1():
    cfg = eps_budget.EpsBudgetConfig.from_config(eps_budget_config.get_config())
    want = {0.4: (10, 20), 0.2: (20, 40), 0.1: (40, 80), 0.05: (80, 160)}
    assert eps_budget.schedule(cfg) == want


def test_bad_study_config_is_rejected_before_work(tmp_path):
    for key, value, field in [
        ("eps", "0.2,1.5", "config.eps"),
        ("eps", "0.2,0.2", "config.eps"),
        ("top_k", 0, "config.top_k"),
    ]:
        c = eps_budget_config.get_config("smoke")
        c[key] = value
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            eps_budget.run(c, str(tmp_path / "w"))
    c = eps_budget_config.get_config("smoke")
    c.proxy_budget.mode = "fixed"
    with pytest.raises(ConfigError, match=r"config\.proxy_budget\.mode"):
        eps_budget.run(c, str(tmp_path / "w"))
    c = eps_budget_config.get_config("smoke")
    c.extraction.inference = "measured"
    with pytest.raises(ConfigError, match=r"config\.extraction\.inference"):
        eps_budget.run(c, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eps_budget")
    config = eps_budget_config.get_config("smoke")
    return config, workdir, eps_budget.run(config, str(workdir))


def _stages(workdir, steps):
    out = {}
    for path in sorted((workdir / "e" / f"T{steps:05d}").glob("*.json")):
        rec = json.loads(path.read_text())
        out[rec["candidate"]] = rec
    return out


@pytest.mark.slow
def test_smoke_report_recomputed_from_stage_files(smoke):
    config, workdir, report = smoke
    assert report["schedule"] == {"0.2": [2, 4]}
    assert report["steps_done"] == [2, 4] and report["complete"]
    names = report["candidates"]
    assert len(names) == 4
    objective = dict(config.extraction.objective)
    p, i = np.array(report["p"]), np.array(report["i"])
    assert len(report["rows"]) == 1
    for row, (t, t2) in zip(report["rows"], [(2, 4)]):
        assert (row["steps"], row["steps_2x"]) == (t, t2)
        rt, rt2 = _stages(workdir, t), _stages(workdir, t2)
        assert sorted(rt) == sorted(names) and all(rt[n]["steps"] == t for n in names)
        e = np.array([rt[n]["error"] for n in names])
        e2 = np.array([rt2[n]["error"] for n in names])
        assert all(rt[n]["error"] in rt[n]["metrics"].values() for n in names)
        st = row["stability"]["error"]
        assert st["spearman"] == pytest.approx(stats.spearmanr(e, e2).statistic, abs=1e-12)
        assert st["kendall"] == pytest.approx(stats.kendalltau(e, e2).statistic, abs=1e-12)
        mlm = [rt[n]["metrics"]["heldout_mlm"] for n in names]
        mlm2 = [rt2[n]["metrics"]["heldout_mlm"] for n in names]
        assert row["stability"]["heldout_mlm"]["spearman"] == pytest.approx(
            stats.spearmanr(mlm, mlm2).statistic, abs=1e-12
        )

        def w(err):  # Eq. W written out
            return (
                (p.max() / p) ** objective["alpha"]
                * (i.max() / i) ** objective["beta"]
                * (1.0 / err) ** objective["gamma"]
            )

        assert row["w"]["argmax"] == names[int(np.argmax(w(e)))]
        assert row["w"]["argmax_2x"] == names[int(np.argmax(w(e2)))]
        assert row["w"]["top1_agree"] == (np.argmax(w(e)) == np.argmax(w(e2)))
        top3 = set(np.argsort(-w(e))[:3]) & set(np.argsort(-w(e2))[:3])
        assert row["w"]["topk_overlap"] == len(top3) and row["w"]["k"] == 3
        fp = row["fptas"]
        assert fp["candidates"] == 4
        # the FPTAS guarantee on the e-table it searched: W(chosen) >= (1 - ε) max W
        assert w(e)[names.index(fp["chosen"])] >= (1 - 0.2) * w(e).max()
        assert fp["w_2x_ratio"] == pytest.approx(w(e2)[names.index(fp["chosen"])] / w(e2).max())
        assert report["evaluations_by_steps"][str(t)]["0.2"] == fp["evaluations"]
        trained = sum(rt[n]["seconds"]["train"] for n in names)
        assert row["seconds"]["all"] == pytest.approx(trained)
        assert 0 < row["seconds"]["fptas"] <= row["seconds"]["all"] + 1e-9
    md = (workdir / "eps_budget.md").read_text()
    assert "| 0.2 | 2 | 4 |" in md


@pytest.mark.slow
def test_smoke_rerun_resumes_from_stage_files(smoke, monkeypatch):
    config, workdir, report = smoke

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(proxy, "proxy_error", no_training)
    again = eps_budget.run(config, str(workdir))

    def canonical(r):  # NaN-safe comparison; the Markdown prints seconds
        return json.dumps(ex.without_seconds({k: v for k, v in r.items() if k != "markdown"}))

    assert canonical(again) == canonical(report)
    assert canonical(eps_budget.summarise(config, str(workdir))) == canonical(report)
    assert math.isfinite(again["rows"][0]["stability"]["error"]["spearman"])


@pytest.mark.slow
def test_script_killed_at_three_points_resumes_to_the_same_report(smoke, tmp_path):
    """`scripts/eps_budget.py` (the smoke config) SIGKILLed (1) after the first T = 2 proxy
    training, before its stage file, (2) with T = 2 complete, before its report, (3) after
    the first T = 4 proxy training, before its stage file; then run to the end. Report and
    stage files equal the uninterrupted in-process run's (wall-clock `seconds` aside). (A
    kill while the teacher outputs stream into the cache: test_kill_resume.py.)"""
    config, ref_dir, _ = smoke
    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    args = [
        str(ROOT / "scripts" / "eps_budget.py"),
        f"--config={ROOT / 'configs' / 'eps_budget.py'}:smoke",
        f"--workdir={workdir}",
    ]
    for point in (
        f"write:{workdir}/e/T00002/*.json",
        f"write:{workdir}/eps_budget.json",
        f"write:{workdir}/e/T00004/*.json",
    ):
        stall_and_kill(args, point, marker)
    assert len(list((workdir / "e" / "T00002").glob("*.json"))) == 4
    assert not list((workdir / "e" / "T00004").glob("*.json"))
    assert json.loads((workdir / "eps_budget.json").read_text())["steps_done"] == [2]
    run_to_end(args)
    strip = lambda r: {k: v for k, v in ex.without_seconds(r).items() if k != "markdown"}  # noqa: E731
    report = lambda d: json.loads((d / "eps_budget.json").read_text())  # noqa: E731
    got, want = strip(report(workdir)), strip(report(ref_dir))
    assert got["complete"] and got["steps_done"] == [2, 4]
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)  # nan-safe
    stages = sorted(p.relative_to(ref_dir) for p in ref_dir.glob("e/*/*.json"))
    assert len(stages) == 8
    assert sorted(p.relative_to(workdir) for p in workdir.glob("e/*/*.json")) == stages
    for rel in stages:
        a, b = (ex.without_seconds(json.loads((d / rel).read_text())) for d in (workdir, ref_dir))
        assert a == b, rel


def test_step_budget():
    assert step_budget(0.1, 1, 100.0) == 1000
    assert step_budget(0.1, 4, 100.0) == 125  # 100 / (0.1 · 8)
    assert step_budget(0.5, 1, 100.0) < step_budget(0.1, 1, 100.0)
    assert step_budget(0.1, 1, 100.0, max_steps=500) == 500
    assert step_budget(0.1, 1, kappa_for(2000, 0.1, 1)) == 2000
