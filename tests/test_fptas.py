"""The FPTAS (bort_jax/search/fptas.py): the (1-ε) guarantee, savings, Pareto front, reports,
caching."""

import json
import math

import pytest

from bort_jax.search import fptas as F
from bort_jax.search import report as R
from bort_jax.search import synthetic as S

EPSILONS = (0.05, 0.1, 0.25, 0.5)
SCALARISATIONS = (F.WCoefficient(1, 1, 1), F.WCoefficient(1, 1, 4), F.WCoefficient(0.5, 0.5, 4))


def run(inst, eps, objective, convex=False, s=1, **options):
    """The FPTAS on a synthetic instance; `options`: fields of `SearchOptions`."""
    return F.fptas(
        inst.candidates,
        inst.p,
        inst.i,
        inst.e,
        eps,
        s,
        objective=objective,
        assumptions=F.Assumptions(inst.noise, convex_in=inst.log_capacity if convex else None),
        options=F.SearchOptions(leq=inst.leq, **options),
    )


def exact(inst, objective):
    return F.exhaustive(inst.candidates, inst.p, inst.i, inst.e.fn, objective=objective)


# ----------------------------------------------------------------------------- toy counts


def test_toy_mlp_counts():
    assert S.toy_mlp_params((2, 4, 3, 4, 4)) == 72 == 2 * (4 * 3 + 4 + 4 * 4 + 4)
    assert S.toy_mlp_params((2, 3, 3, 3, 2)) == 40 == 2 * (3 * 3 + 3 + 3 * 2 + 2)
    assert S.toy_mlp_params(S.ToyMLP(2, 4, 3, 4, 4)) == 72
    assert S.dense_stack_params([(3, 4), (4, 4)], copies=2) == 72
    assert len(S.toy_mlp_space().candidates()) == 28


# ----------------------------------------------------------------------------- guarantee


def instances():
    return [
        S.chain_instance(),
        S.toy_mlp_instance(power=1.0),
        S.toy_mlp_instance(power=1.0, noise=0.05),
        S.random_monotone_instance(3),
        S.random_monotone_instance(7, noise=0.1),
    ]


@pytest.mark.parametrize("eps", EPSILONS)
def test_fptas_within_one_minus_eps_of_exhaustive(eps):
    for inst in instances():
        for objective in SCALARISATIONS:
            for convex in (False, True) if not inst.name.startswith("random") else (False,):
                base = exact(inst, objective)
                assert base.chosen == inst.optimum(objective)[0]
                res = run(inst, eps, objective, convex)
                assert res.objective >= (1 - eps) * base.objective * (1 - 1e-12), inst.name
                assert res.n_evaluations < base.n_evaluations == len(inst.candidates)
                assert res.guarantee.certified and not res.assumption_violations
                assert res.guarantee.ratio == pytest.approx(1 - eps)
                assert res.guarantee.certified_ratio >= 1 - eps - 1e-12
                assert res.objective >= res.guarantee.certified_ratio * base.objective * (1 - 1e-12)


def test_guarantee_on_many_random_monotone_instances():
    for seed in range(25):
        inst = S.random_monotone_instance(100 + seed, noise=0.1 * (seed % 2))
        objective = SCALARISATIONS[seed % 3]
        best = inst.optimum(objective)[1]
        for eps in EPSILONS:
            for s in (1, 3, 1000):
                res = run(inst, eps, objective, s=s)
                assert res.objective >= (1 - eps) * best * (1 - 1e-12), (seed, eps, s)


def test_chain_matches_analytic_optimum():
    objective = F.WCoefficient(1, 1, 4)
    inst = S.chain_instance(a=0.1, b=2.0)
    d_star = S.chain_optimum(0.1, 2.0, objective)
    assert d_star == pytest.approx(20.0)
    assert exact(inst, objective).chosen.depth in (math.floor(d_star), math.ceil(d_star))
    res = run(inst, 0.1, objective, convex=True)
    assert res.objective >= 0.9 * inst.optimum(objective)[1]


@pytest.mark.parametrize(
    "inst_fn,objective,convex",
    [
        (S.chain_instance, F.WCoefficient(1, 1, 4), True),
        (S.chain_instance, F.WCoefficient(0.5, 0.5, 4), True),
        (S.chain_instance, F.WCoefficient(0.5, 0.5, 4), False),
        (S.bert_like_instance, F.WCoefficient(1, 1, 4), True),
        (S.bert_like_instance, F.WCoefficient(1, 1, 4), False),
        (S.bert_like_instance, F.WCoefficient(0.5, 0.5, 4), True),
    ],
)
def test_savings_at_eps_0_1(inst_fn, objective, convex):
    inst = inst_fn()
    res = run(inst, 0.1, objective, convex=convex)
    assert res.n_evaluations <= 0.25 * len(inst.candidates)
    assert inst.e.calls == res.n_e_calls == res.n_evaluations
    assert res.objective >= 0.9 * inst.optimum(objective)[1]


def test_trimming_and_noise_keep_the_guarantee():
    inst = S.bert_like_instance(noise=0.01)
    objective = F.WCoefficient(0.5, 0.5, 4)
    best = inst.optimum(objective)[1]
    res = run(inst, 0.25, objective, convex=True)
    assert res.trimmed and res.objective >= 0.75 * best
    for t, by, factor in res.trimmed:
        assert inst.leq(t, by) and factor <= 1 + 0.25 * 0.5 + 1e-12


@pytest.mark.parametrize("eps", [0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.1"])
def test_eps_outside_open_unit_interval_rejected(eps):
    inst = S.chain_instance(n=5)
    with pytest.raises(ValueError, match="eps"):
        F.fptas(inst.candidates, inst.p, inst.i, inst.e, eps)
    with pytest.raises(ValueError, match="eps"):
        F.step_budget(eps, 1, 100.0)
    assert inst.e.calls == 0


def test_other_bad_arguments():
    inst = S.chain_instance(n=5)
    with pytest.raises(ValueError, match="s "):
        F.fptas(inst.candidates, inst.p, inst.i, inst.e, 0.1, 0)
    with pytest.raises(ValueError, match="duplicates"):
        F.fptas(inst.candidates * 2, inst.p, inst.i, inst.e, 0.1)
    with pytest.raises(ValueError, match="gamma"):
        F.WCoefficient(gamma=0)
    with pytest.raises(ValueError, match="p\\("):
        F.fptas(inst.candidates, lambda c: 0.0, inst.i, inst.e, 0.1)


# ----------------------------------------------------------------------------- Pareto front


def test_result_front_is_nondominated_subset():
    inst = S.toy_mlp_instance(power=1.0)
    res = run(inst, 0.1, F.WCoefficient(1, 1, 4))
    front = set(x.candidate for x in res.pareto_front)
    assert front <= set(x.candidate for x in res.evaluations)
    for x in res.evaluations:
        dominated = any(
            y.p <= x.p and y.i <= x.i and y.e <= x.e and (y.p, y.i, y.e) != (x.p, x.i, x.e)
            for y in res.evaluations
        )
        assert dominated == (x.candidate not in front)


# ----------------------------------------------------------------------------- cache, failures


class GetPutCache:
    """The evaluator's cache protocol: get(key) -> value or None, put(key, value)."""

    def __init__(self, data=None):
        self.data = dict(data or {})

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value

    def __len__(self):
        return len(self.data)


def test_cache_hits_prevent_reevaluation():
    inst = S.chain_instance()
    objective = F.WCoefficient(1, 1, 4)
    cache = GetPutCache()
    first = run(inst, 0.1, objective, cache=cache)
    assert inst.e.calls == first.n_e_calls == first.n_evaluations > 0
    assert first.n_cache_hits == 0 and len(cache) == first.n_evaluations
    reloaded = GetPutCache(json.loads(json.dumps(cache.data)))  # as if read back from disk
    second = run(inst, 0.1, objective, cache=reloaded)
    assert inst.e.calls == first.n_e_calls  # no new call
    assert second.n_e_calls == 0 and second.n_cache_hits == second.n_evaluations
    assert second.chosen == first.chosen
    full = F.exhaustive(
        inst.candidates,
        inst.p,
        inst.i,
        inst.e,
        objective=objective,
        options=F.SearchOptions(cache=reloaded),
    )
    assert full.n_cache_hits == first.n_evaluations
    assert inst.e.calls == len(inst.candidates)
    plain = {}
    run(inst, 0.1, objective, cache=plain)  # a dict works too
    assert len(plain) == first.n_evaluations


def test_failures_skip_or_raise():
    inst = S.chain_instance(n=12)
    objective = F.WCoefficient(1, 1, 4)

    def flaky(c):
        if c.depth == 12:
            raise RuntimeError("out of memory")
        return inst.e.fn(c)

    with pytest.raises(RuntimeError, match="out of memory"):
        F.fptas(inst.candidates, inst.p, inst.i, flaky, 0.1, objective=objective)
    res = F.fptas(
        inst.candidates,
        inst.p,
        inst.i,
        flaky,
        0.1,
        objective=objective,
        options=F.SearchOptions(on_error="skip"),
    )
    assert res.failed and res.failed[0][0].depth == 12 and "out of memory" in res.failed[0][1]
    rest = [c for c in inst.candidates if c.depth != 12]
    best = F.exhaustive(rest, inst.p, inst.i, inst.e.fn, objective=objective)
    assert res.objective >= 0.9 * best.objective * (1 - 1e-9)


def test_budget_and_progress():
    inst = S.chain_instance()
    res = run(inst, 0.05, F.WCoefficient(1, 1, 4), max_evaluations=3, progress=True)
    assert res.stopped_by == "budget" and res.n_evaluations == 3
    assert res.guarantee.ratio == res.guarantee.certified_ratio < 0.95


# ----------------------------------------------------------------------------- helpers


def test_assumption_audits():
    inst = S.chain_instance(n=10)
    full = exact(inst, F.WCoefficient())
    assert F.monotonicity_violations(full.evaluations, inst.leq) == []
    assert F.convexity_violations(full.evaluations, inst.log_capacity, inst.leq) == []
    ev = [F.Evaluation((1,), 1, 1, 0.5, 0), F.Evaluation((2,), 2, 2, 0.6, 0)]
    ((small, big, needed),) = F.monotonicity_violations(ev)
    assert small.candidate == (1,) and needed == pytest.approx(0.2)
    assert F.required_slack(ev) == pytest.approx(0.2)


# ----------------------------------------------------------------------------- report


def test_report_files_and_json_round_trip(tmp_path):
    inst = S.toy_mlp_instance(power=1.0)
    res = run(inst, 0.1, F.WCoefficient(1, 1, 4))
    abnc = F.check_abnc((30, 60), (100, 200), (5, 10))
    paths = R.write_report(res, tmp_path, name="toy", abnc=abnc)
    for key in ("markdown", "json", "plot_params", "plot_latency"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    assert paths["plot_params"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = paths["markdown"].read_text()
    for needle in (
        "Pareto front",
        "Evaluated candidates",
        "AB^nC",
        "eps = 0.1",
        "wall time",
        str(res.chosen),
    ):
        assert needle in text
    data = json.loads(paths["json"].read_text())
    assert data == json.loads(json.dumps(R.result_to_dict(res, abnc)))
    assert data["abnc"]["holds"] is True
    assert R.read_json(paths["json"], factory=S.ToyMLP) == res
    assert R.result_from_dict(R.result_to_dict(res)).objective == res.objective


def test_audit_rows_respect_bound_and_save_evaluations():
    from bort_jax.search import audit

    rows = audit.synthetic_rows([0.1, 0.5])
    assert len(rows) == 8 and all(r.ok for r in rows)
    assert all(r.fptas_evaluations < r.exhaustive_evaluations for r in rows)
    assert "| chain(40)" in audit.markdown(rows)
