"""The search-method audit: hand-computed rows, the smoke config, resume, the real-instance
wiring (with the extraction's problem replaced by a cheap one)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
from _table6 import CANDS, TABLE, i, p

from bort_jax import arch as A
from bort_jax import extract
from bort_jax.config import ConfigError
from bort_jax.experiments import method_audit as M
from bort_jax.extract_config import ExtractConfig
from bort_jax.search import fptas as F
from bort_jax.search import random_search as R
from bort_jax.search.evaluator import candidate_key
from bort_jax.search.fptas import WCoefficient
from bort_jax.search.space import build_space
from configs import method_audit as config_module

ROOT = Path(__file__).resolve().parents[1]


def _plan(**over):
    values = dict(
        instances=("chain",),
        fptas_eps=(0.25,),
        interval_eps=(2,),
        seeds=tuple(range(5)),
        extraction_workdir="",
    )
    values.update(over)
    return M.Plan(**values)


def test_rows_on_the_hand_table():
    inst = M.Instance(
        "table6",
        CANDS,
        p,
        i,
        lambda c: TABLE[c.name][2],
        WCoefficient(1, 1, 1),
        F.Assumptions(),
        F.SearchOptions(leq=lambda a, b: p(a) <= p(b) and i(a) <= i(b)),
    )
    out = M.audit_instance(inst, _plan(interval_eps=(2, 7)))  # 7 > |Ξ|: skipped
    rows = {(r["method"], r["setting"], r.get("objective")): r for r in out["rows"]}
    assert out["optimum_pub"] == "C(name='B')" and out["reference"] == [60.0, 60.0]
    it = rows[("interval", "ε=2", None)]
    # picks A, C, E; A wins with 10/9; OPT = B's 25/18
    assert it["evaluations"] == 3 and it["chosen"] == "C(name='A')"
    assert it["w_pub_ratio"] == pytest.approx(0.8)
    assert it["random_budget_to_match_pub"] == 3  # E[best of 3] = 427/360 >= 10/9 > 553/540
    assert it["random_prob_at_least_pub"] == pytest.approx(1 - 4 / 20)
    assert it["random_expected_draws_pub"] == pytest.approx(7 / 3)  # (N + 1)/(K + 1), K = 2
    # project W (1,1,1): B = (60/20)(60/10)/0.4 = 45 is the optimum; A = 36
    assert it["w_proj_ratio"] == pytest.approx(36 / 45)
    assert rows[("exhaustive", "", None)]["w_pub_ratio"] == pytest.approx(1.0)
    rnd = rows[("random", "n=3, ranked by published W, 5 seeds", "pub")]
    assert rnd["exact_expected_ratio"] == pytest.approx((427 / 360) / (25 / 18))
    sims = R.simulate_best(
        [M.published_w(p(c), i(c), TABLE[c.name][2], 60, 60) for c in CANDS], 3, range(5)
    )
    assert rnd["seeds_mean_ratio"] == pytest.approx(sum(sims) / 5 / (25 / 18))
    assert not any(r["setting"] == "ε=7" for r in out["rows"])
    fp = rows[("fptas", "ε=0.25", None)]
    assert fp["w_proj_ratio"] >= 0.75 and fp["evaluations"] <= 6


def test_validate_names_errors():
    cfg = config_module.get_config("smoke")
    assert M.validate(cfg).instances == ("chain", "toy_mlp")
    for key, value in (
        ("instances", "chain,nope"),
        ("seeds", "0,1,2"),
        ("interval_eps", "0"),
        ("fptas_eps", "1.5"),
        ("instances", "real"),
    ):
        bad = config_module.get_config("smoke")
        bad[key] = value
        with pytest.raises((ConfigError, ValueError)):
            M.validate(bad)


def test_smoke_script_and_resume(tmp_path, monkeypatch):
    work = tmp_path / "ma"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "audit_methods.py"),
        "--config=" + str(ROOT / "configs" / "method_audit.py") + ":smoke",
        f"--workdir={work}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "## chain" in done.stdout and "interval" in done.stdout
    report = json.loads((work / "report.json").read_text())
    assert [r["instance"] for r in report["instances"]] == ["chain", "toy_mlp"]
    for res in report["instances"]:
        methods = {r["method"] for r in res["rows"]}
        assert methods == {"exhaustive", "fptas", "interval", "random"}
        for r in res["rows"]:
            if r["method"] == "fptas":
                assert r["w_proj_ratio"] >= 1 - 0.25 - 1e-12
    assert (work / "report.md").is_file() and (work / "instances" / "chain.json").is_file()

    # resume: the stages are read back, not recomputed
    def boom(*args, **kwargs):
        raise AssertionError("a finished instance was recomputed")

    monkeypatch.setattr(M, "audit_instance", boom)
    again = M.run(config_module.get_config("smoke"), str(work))
    assert M.markdown(again) == (work / "report.md").read_text()


def test_real_instance_wiring(tmp_path, monkeypatch):
    cfg = config_module.get_config("smoke")
    ext = ExtractConfig.from_config(cfg.extract)
    sp = build_space(ext.grid)
    cache = extract.CandidateCache(tmp_path / "cache")
    spec = A.Spec()

    def e(a):
        cap = A.encoder_params(a)
        cache.metrics[candidate_key(a)] = {"train_seconds": 2.0}
        return 1.0 + 50.0 * cap**-0.3

    first = sp.candidates()[0]  # already in the cache: its stored seconds are read back
    cache.put(candidate_key(first), e(first), {"train_seconds": 2.0})
    prob = types.SimpleNamespace(
        space=sp,
        p=lambda a: float(A.param_count(a, spec)["total"]),
        i=lambda a: float(A.flops(a, 32, spec=spec)),
        e=e,
        cache=cache,
        source=types.SimpleNamespace(path="/x/all-MiniLM-L6-v2"),
    )
    monkeypatch.setattr(extract, "build_problem", lambda config, workdir: prob)
    inst = M.real_instance(ext, str(tmp_path))
    assert inst.name.startswith("real (all-MiniLM-L6-v2, ")
    assert inst.assumptions.monotonicity_slack == ext.monotonicity_slack
    out = M.audit_instance(inst, _plan(fptas_eps=(0.1,), interval_eps=(2, 4)))
    for r in out["rows"]:
        if r["method"] in ("fptas", "interval"):
            assert r["proxy_seconds"] == pytest.approx(2.0 * r["evaluations"])
        if r["method"] == "random":
            assert r["proxy_seconds"] == pytest.approx(2.0 * r["evaluations"])
    exh = next(r for r in out["rows"] if r["method"] == "exhaustive")
    assert exh["proxy_seconds"] == pytest.approx(2.0 * len(sp.candidates()))
    assert len(cache) == len(sp.candidates())  # the exhaustive table filled the cache
    assert all(math.isfinite(r.get("w_pub_ratio", 0.0)) for r in out["rows"])


def test_constant_inference_cost_leaves_no_published_optimum():
    # every candidate shares T's i, so every published W is 0 (as with a latency model that
    # predicts one value for every shape of a small grid): reported, not a failure
    inst = M.Instance(
        "flat_i",
        CANDS,
        p,
        lambda c: 1.0,
        lambda c: TABLE[c.name][2],
        WCoefficient(1, 0, 1),
        F.Assumptions(),
        F.SearchOptions(leq=lambda a, b: p(a) <= p(b)),
    )
    out = M.audit_instance(inst, _plan(interval_eps=(2,)))
    assert out["optimum_pub"] is None
    it = next(r for r in out["rows"] if r["method"] == "interval")
    assert it["chosen"] is None and "below T" in it["note"]
    fp = next(r for r in out["rows"] if r["method"] == "fptas")
    assert fp["w_pub_ratio"] is None and fp["random_prob_at_least_pub"] is None
    assert fp["w_proj_ratio"] >= 0.75
    rnd = [r for r in out["rows"] if r["method"] == "random" and r["objective"] == "pub"]
    assert rnd and all(r["exact_expected_ratio"] is None for r in rnd)
    text = M.markdown({"instances": [out]})
    assert "no published optimum" in text and "below T" in text
