"""The search records (bort_jax/search/result.py): the Pareto front and W under another e_ref."""

import pytest

from bort_jax.search import fptas as F
from bort_jax.search import synthetic as S
from bort_jax.search.result import Evaluation, pareto_front, with_e_ref


def test_pareto_front_hand_made():
    ev = [
        Evaluation("a", 10, 10, 0.5, 0),
        Evaluation("b", 5, 20, 0.5, 0),
        Evaluation("c", 10, 10, 0.6, 0),  # dominated by a
        Evaluation("d", 20, 20, 0.1, 0),
        Evaluation("e", 20, 20, 0.2, 0),  # e by d
        Evaluation("f", 10, 10, 0.5, 0),  # equal to a: neither dominates
        Evaluation("g", 4, 30, 0.9, 0),
    ]
    assert [x.candidate for x in pareto_front(ev)] == ["a", "b", "d", "f", "g"]


def test_normalised_w_is_readable_and_keeps_the_choice():
    """γ = 21 and e_ref = 1 make W of order e^-21; e_ref = the chosen e gives W(chosen) = its
    size score, in [1e-3, 1e3], with the very same choice, evaluations and ratios."""
    inst = S.toy_mlp_instance(power=1.0)
    objective = F.WCoefficient(0.5, 0.5, 21.0)
    raw = F.fptas(inst.candidates, inst.p, inst.i, inst.e, 0.1, objective=objective)
    e_chosen = raw.chosen_evaluation.e
    out = with_e_ref(raw, e_chosen)
    assert out.chosen == raw.chosen and out.objective_spec.e_ref == e_chosen
    assert 1e-3 <= out.objective <= 1e3
    p, i = raw.chosen_evaluation.p, raw.chosen_evaluation.i
    size = (raw.p_ref / p) ** 0.5 * (raw.i_ref / i) ** 0.5  # by hand: W(chosen) = S(chosen)
    assert out.objective == pytest.approx(size, rel=1e-12)
    factor = (e_chosen / 1.0) ** 21.0
    assert [ev.candidate for ev in out.evaluations] == [ev.candidate for ev in raw.evaluations]
    for a, b in zip(out.evaluations, raw.evaluations):
        assert a.objective == pytest.approx(b.objective * factor, rel=1e-12)
        assert (a.p, a.i, a.e) == (b.p, b.i, b.e)
    best = max(out.evaluations, key=lambda ev: ev.objective)
    assert best.candidate == out.chosen == out.chosen_evaluation.candidate
    g, g0 = out.guarantee, raw.guarantee
    assert (g.ratio, g.certified_ratio) == (g0.ratio, g0.certified_ratio)
    assert g.upper_bound_opt == pytest.approx(g0.upper_bound_opt * factor, rel=1e-12)
    assert [ev.candidate for ev in out.pareto_front] == [ev.candidate for ev in raw.pareto_front]
    # the same choice when the search itself runs with e_ref = e(chosen)
    direct = F.fptas(
        inst.candidates,
        inst.p,
        inst.i,
        inst.e,
        0.1,
        objective=F.WCoefficient(0.5, 0.5, 21.0, e_ref=e_chosen),
    )
    assert direct.chosen == raw.chosen and direct.n_evaluations == raw.n_evaluations
    assert direct.objective == pytest.approx(out.objective, rel=1e-9)
    with pytest.raises(ValueError, match="e_ref"):
        with_e_ref(raw, 0.0)
