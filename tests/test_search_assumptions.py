"""The slack δ is load-bearing, the assumptions are checked in every run, cached e is validated.

Hand-made instances where δ changes the answer (each test fails if δ is dropped from the rule it
names), instances that break M, F and C (flagged, warned, "not certified" in the result and the
report), and corrupt cache entries (recomputed, never used).
"""

import json
import math
from typing import NamedTuple

import pytest

from bort_jax.search import fptas as F
from bort_jax.search import report as R
from bort_jax.search import space as SP
from bort_jax.search import synthetic as S
from bort_jax.search.assumptions import AssumptionWarning, chord_slack

DELTA = 0.04  # the slack real runs use (configs/default.py monotonicity_slack)


class Size(NamedTuple):
    size: int


def chain(p_values, e_values):
    """A chain Size(1) ⪯ Size(2) ⪯ … with the given p and e (i ≡ 1)."""
    cands = [Size(k + 1) for k in range(len(p_values))]
    p = dict(zip(cands, p_values))
    e = S.CountingError(dict(zip(cands, e_values)).__getitem__)
    return cands, p.__getitem__, (lambda c: 1.0), e


# W = (p_ref/p)^1 · (1/e)^4: only p and e matter. ε = 0.1, trim_share 0.5: ε_t = 0.05 and
# ρ_stop = 0.9 · 1.05 = 0.945. The smaller candidate has the lower error, e(big)/(1 + δ), as M
# allows with slack δ, so it is the optimum by the factor (p_big/p_small)·1.04^4 ≈ 1.17·ratio.
W_P_E4 = F.WCoefficient(1.0, 0.0, 4.0)
E_BIG = 0.5
E_SMALL = E_BIG / (1 + DELTA) * (1 + 1e-6)


def optimum(cands, p, i, e, objective):
    return F.exhaustive(cands, p, i, e.fn, objective=objective)


def test_trimming_keeps_the_slack():
    """p ratio 1.04 ≤ 1 + ε_t: without δ the small optimum is trimmed (never trained).

    With δ its dominance factor is 1.04 · 1.04^4 ≈ 1.22 > 1.05, so it is kept, and since its
    upper bound 1.22 · best exceeds best/ρ_stop the search must evaluate it.
    """
    cands, p, i, e = chain([1.0, 1.04], [E_SMALL, E_BIG])
    best = optimum(cands, p, i, e, W_P_E4)
    assert best.chosen == Size(1)
    res = F.fptas(
        cands, p, i, e, 0.1, objective=W_P_E4, assumptions=F.Assumptions(monotonicity_slack=DELTA)
    )
    assert res.trimmed == ()
    assert e.seen == [Size(2), Size(1)]
    assert res.chosen == Size(1) and res.objective >= 0.9 * best.objective
    assert res.guarantee.certified and not res.assumption_violations


def test_lower_bound_keeps_the_slack():
    """p ratio 1.055 > 1 + ε_t: no trimming with or without δ; only the bound decides.

    After the maximal candidate, LB(small) = e(big)/(1 + δ) gives UB(small) = 1.055 · 1.04^4 ·
    best ≈ 1.23 · best > best/ρ_stop = 1.058 · best: the search must evaluate it. Without δ,
    UB = 1.055 · best ≤ best/ρ_stop and the search stops on the big one at W/OPT ≈ 0.81 < 0.9.
    """
    cands, p, i, e = chain([1.0, 1.055], [E_SMALL, E_BIG])
    best = optimum(cands, p, i, e, W_P_E4)
    assert best.chosen == Size(1)
    res = F.fptas(
        cands, p, i, e, 0.1, objective=W_P_E4, assumptions=F.Assumptions(monotonicity_slack=DELTA)
    )
    assert res.trimmed == ()
    assert e.seen == [Size(2), Size(1)] and res.stopped_by == "exhausted"
    assert res.chosen == Size(1) and res.objective >= 0.9 * best.objective
    assert res.guarantee.certified and not res.assumption_violations


def test_convex_secant_keeps_the_slack():
    """Assumption C's secant bound must use t1 = e(ξ1)/(1 + δ).

    Chain x = 0, 1, 2 with ẽ = 0.3, 0.2, 0.1 (linear, hence convex) and e = ẽ · (1, 1 + δ, 1),
    allowed by C with slack δ. After ξ2 and ξ1 the secant gives LB(ξ0) = 0.2 + 0.1 · 1 = 0.3 =
    e(ξ0), so UB(ξ0) = W(ξ0) > best/ρ_stop and ξ0, the optimum, is evaluated. Without δ the
    secant runs through 0.208 and gives LB(ξ0) = 0.316 > e(ξ0): UB(ξ0) ≈ 0.81 · W(ξ0) and the
    search stops on ξ1 at W/OPT ≈ 0.85 < 0.9.
    """
    cands, p, i, e = chain([1.0, 1.0 / 0.196, 200.0], [0.3, 0.2 * (1 + DELTA), 0.1])
    best = optimum(cands, p, i, e, W_P_E4)
    assert best.chosen == Size(1)
    res = F.fptas(
        cands,
        p,
        i,
        e,
        0.1,
        objective=W_P_E4,
        assumptions=F.Assumptions(monotonicity_slack=DELTA, convex_in=lambda c: float(c.size - 1)),
    )
    assert e.seen == [Size(3), Size(2), Size(1)]
    assert res.chosen == Size(1) and res.objective >= 0.9 * best.objective
    assert res.guarantee.certified and not res.assumption_violations


# ----------------------------------------------------------------------------- violations


def width_breaks_m():
    """Error grows by 10 % per width step, beyond δ = 0.04: M fails along the width axis."""
    space = SP.grid(depth=range(1, 9), width=range(1, 9))

    def e(c):
        return (0.1 + 1.0 / c.depth) * (1 + 0.1 * (c.width - 1))

    def cost(c):
        return 100.0 * c.depth * c.width + 50.0 * c.depth

    return space, cost, e


def test_m_violation_is_flagged_and_not_certified(tmp_path):
    space, cost, e = width_breaks_m()
    objective = F.WCoefficient(0.5, 0.5, 2)
    with pytest.warns(AssumptionWarning) as record:
        res = F.fptas(
            space,
            cost,
            cost,
            e,
            0.1,
            objective=objective,
            assumptions=F.Assumptions(monotonicity_slack=DELTA),
        )
    full = F.exhaustive(space, cost, cost, e, objective=objective)
    assert res.objective / full.objective < 0.75  # the (1 − ε) bound really fails here
    g = res.guarantee
    assert not g.certified and g.ratio is None and g.certified_ratio is None
    assert g.upper_bound_opt is None and g.statement.startswith("NOT CERTIFIED")
    # every evaluated pair is checked: exactly the pairs the audit function finds
    expected = {
        (a.candidate, b.candidate)
        for a, b, _ in F.monotonicity_violations(res.evaluations, space.leq, DELTA)
    }
    assert expected and {v.candidates for v in res.assumption_violations} == expected
    for v in res.assumption_violations:
        small, big = v.candidates
        assert v.assumption == "M" and space.leq(small, big) and small.width < big.width
        assert v.errors == (e(small), e(big)) and v.declared == DELTA
        assert v.needed == pytest.approx(e(big) / e(small) - 1) and v.needed > DELTA
    worst = max(res.assumption_violations, key=lambda v: v.needed)
    assert str(worst.candidates[0]) in g.statement and str(worst.candidates[1]) in g.statement
    assert f"monotonicity_slack >= {worst.needed:.4g}" in g.statement
    messages = [str(w.message) for w in record]
    assert any("the search goes on" in m for m in messages)  # during the search
    assert any(m.startswith("NOT CERTIFIED") for m in messages)  # and after it

    paths = R.write_report(res, tmp_path, name="m", plots=False)
    text = paths["markdown"].read_text()
    assert "**NOT CERTIFIED**" in text and "certified ratio: not certified" in text
    assert "## Assumption violations" in text and f"| M | `{worst.candidates[0]}`" in text
    data = json.loads(paths["json"].read_text())
    assert data["guarantee"]["certified"] is False and data["guarantee"]["ratio"] is None
    assert len(data["assumption_violations"]) == len(res.assumption_violations)
    assert R.read_json(paths["json"], factory=space.factory) == res


def test_f_violation_wrong_floor():
    inst = S.chain_instance()  # e = 0.1 + 2/d ∈ [0.15, 2.1]
    with pytest.warns(AssumptionWarning, match="F: "):
        res = run_floor(inst, 0.2)
    low = {ev.candidate: ev.e for ev in res.evaluations if ev.e < 0.2}
    assert low, "the search must evaluate some candidate below the wrong floor"
    flagged = {v.candidates[0]: v for v in res.assumption_violations}
    assert set(flagged) == set(low)
    assert all(
        v.assumption == "F" and v.needed == low[c] and v.declared == 0.2 for c, v in flagged.items()
    )
    assert not res.guarantee.certified and res.guarantee.certified_ratio is None
    assert "e_floor <=" in res.guarantee.statement
    ok = run_floor(inst, 0.1)  # a correct floor: nothing flagged
    assert ok.guarantee.certified and not ok.assumption_violations


def run_floor(inst, floor):
    return F.fptas(
        inst.candidates,
        inst.p,
        inst.i,
        inst.e,
        0.1,
        objective=F.WCoefficient(1, 1, 4),
        assumptions=F.Assumptions(e_floor=floor),
    )


def test_c_violation_concave_error():
    """e = 1 − 0.06·(log d)² is non-increasing (M holds) but concave in x = log d: C fails."""
    cands = [S.Depth(d) for d in range(1, 41)]

    def e(c):
        return 1.0 - 0.06 * math.log(c.depth) ** 2

    def x(c):
        return math.log(c.depth)

    with pytest.warns(AssumptionWarning, match="C: chain"):
        res = F.fptas(
            cands,
            lambda c: 1e3 * c.depth,
            lambda c: 2e3 * c.depth,
            e,
            0.1,
            objective=F.WCoefficient(0.5, 0.5, 1),
            assumptions=F.Assumptions(convex_in=x),
        )
    assert res.assumption_violations and not res.guarantee.certified
    assert {v.assumption for v in res.assumption_violations} == {"C"}  # M holds
    # brute force over the evaluated chains: worst needed slack per middle candidate
    evs = sorted(res.evaluations, key=lambda ev: ev.candidate.depth)
    worst = {}
    for a in range(len(evs)):
        for b in range(a + 1, len(evs)):
            for c in range(b + 1, len(evs)):
                need = chord_slack(
                    evs[a].e, evs[b].e, evs[c].e, *(x(evs[k].candidate) for k in (a, b, c))
                )
                if need > 1e-9:
                    mid = evs[b].candidate
                    worst[mid] = max(worst.get(mid, -1.0), need)
    kept = {v.candidates[1]: v for v in res.assumption_violations}
    assert set(kept) == set(worst)
    for mid, v in kept.items():
        lo, _, hi = v.candidates
        assert lo.depth < mid.depth < hi.depth and v.errors == (e(lo), e(mid), e(hi))
        assert v.needed == pytest.approx(worst[mid]) and v.declared == 0.0
    assert "convex_in=None" in res.guarantee.statement


def test_no_violation_no_warning_on_noisy_instances_within_slack():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)
        for inst in (S.chain_instance(noise=0.02), S.bert_like_instance(noise=0.02)):
            res = F.fptas(
                inst.candidates,
                inst.p,
                inst.i,
                inst.e,
                0.1,
                objective=F.WCoefficient(0.5, 0.5, 4),
                assumptions=F.Assumptions(monotonicity_slack=0.02, convex_in=inst.log_capacity),
                options=F.SearchOptions(leq=inst.leq),
            )
            assert res.guarantee.certified and not res.assumption_violations
            assert res.guarantee.certified_ratio >= 0.9


# ----------------------------------------------------------------------------- cache


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0, "oops", None])
def test_invalid_cached_value_is_recomputed(bad):
    inst = S.chain_instance()
    objective = F.WCoefficient(1, 1, 4)
    cache = {}

    def search():
        options = F.SearchOptions(cache=cache)
        return F.fptas(
            inst.candidates, inst.p, inst.i, inst.e, 0.1, objective=objective, options=options
        )

    first = search()
    key = F.candidate_key(first.chosen)
    cache[key] = bad
    calls = inst.e.calls
    second = search()
    assert inst.e.calls == calls + 1 and inst.e.seen[-1] == first.chosen
    assert second.n_e_calls == 1 and second.n_cache_hits == first.n_evaluations - 1
    assert second.n_cache_rejected == (0 if bad is None else 1)  # None = absent, not invalid
    assert cache[key] == inst.e.fn(first.chosen)  # overwritten with the fresh value
    assert [(ev.candidate, ev.e) for ev in second.evaluations] == [
        (ev.candidate, ev.e) for ev in first.evaluations
    ]
    full = F.exhaustive(
        inst.candidates,
        inst.p,
        inst.i,
        inst.e,
        objective=objective,
        options=F.SearchOptions(cache={key: bad}),
    )
    assert full.n_e_calls == len(inst.candidates) and full.chosen == first.chosen
