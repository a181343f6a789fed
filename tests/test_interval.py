"""The published interval algorithm and W on a hand-computed 6-candidate table."""

from __future__ import annotations

import math

import pytest
from _table6 import CANDS, TABLE, W_HAND, C, CountingE, i, p

from bort_jax.search import report
from bort_jax.search.fptas import WCoefficient
from bort_jax.search.interval import (
    IntervalOptions,
    interval_picks,
    interval_search,
    max_point,
    published_w,
)


def test_published_w_by_hand():
    for name, (pp, ii, ee) in TABLE.items():
        assert published_w(pp, ii, ee, 60.0, 60.0) == pytest.approx(W_HAND[name], rel=1e-12)
    assert published_w(60.0, 10.0, 0.3, 60.0, 60.0) == 0.0  # p = p(T): W = 0
    assert published_w(70.0, 10.0, 1.0, 60.0, 60.0) < 0  # beyond T in p only
    with pytest.raises(ValueError):
        published_w(1.0, 1.0, 0.0, 60.0, 60.0)
    with pytest.raises(ValueError):
        published_w(1.0, 1.0, 0.1, 0.0, 60.0)


def test_picks_sorted_by_size_every_eps():
    P = [p(c) for c in CANDS]
    I = [i(c) for c in CANDS]
    names = lambda ks: [CANDS[k].name for k in ks]  # noqa: E731
    assert names(interval_picks(P, I, 2)) == ["A", "C", "E"]
    assert names(interval_picks(P, I, 2, offset=1)) == ["B", "D", "F"]
    assert names(interval_picks(P, I, 4)) == ["A", "E"]
    assert names(interval_picks(P, I, 4, offset=3)) == ["D", "F"]  # short last block: its last
    assert names(interval_picks(P, I, 1)) == list("ABCDEF")
    assert names(interval_picks(P, I, 6)) == ["A"]
    assert max_point(P, I) == (60.0, 60.0)
    with pytest.raises(ValueError):
        interval_picks(P, I, 7)
    with pytest.raises(ValueError):
        interval_picks(P, I, 0)


def test_eps2_picks_a_by_hand():
    e = CountingE()
    res = interval_search(CANDS, p, i, e, IntervalOptions(eps=2))
    assert [n for n, _ in e.seen] == ["A", "C", "E"]  # one proxy training per pick
    assert res.method == "interval"
    assert res.chosen == C("A")
    assert res.settings["published_w"] == pytest.approx(10 / 9)
    vals = res.settings["published_w_values"]
    assert vals[repr(C("C"))] == pytest.approx(2 / 3)
    assert vals[repr(C("E"))] == pytest.approx(5 / 36)
    assert res.n_evaluations == 3 and res.n_e_calls == 3
    # W/OPT under the published W: (10/9)/(25/18) = 0.8
    assert res.settings["published_w"] / W_HAND["B"] == pytest.approx(0.8)
    # the recorded objective is the project's W: (60/10)(60/20)/0.5 = 36
    assert res.objective == pytest.approx(36.0)
    assert res.guarantee.ratio is None and res.guarantee.certified


def test_eps1_is_exhaustive_but_never_trains_t():
    e = CountingE()
    res = interval_search(CANDS, p, i, e, IntervalOptions(eps=1))
    assert res.chosen == C("B")  # the published optimum
    assert sorted(n for n, _ in e.seen) == list("ABCDE")  # F = T: W = 0 whatever e
    assert res.settings["zero_w"] == [repr(C("F"))]
    assert res.n_evaluations == 5


def test_other_eps_and_offset():
    assert interval_search(CANDS, p, i, CountingE(), IntervalOptions(eps=3)).chosen == C("A")
    r = interval_search(CANDS, p, i, CountingE(), IntervalOptions(eps=6))
    assert r.chosen == C("A") and r.n_evaluations == 1
    r = interval_search(CANDS, p, i, CountingE(), IntervalOptions(eps=2, offset=1))
    assert r.chosen == C("B") and r.n_evaluations == 2  # picks B, D; F = T skipped


def test_thetas_each_pick_under_every_theta():
    e = CountingE()
    thetas = ({"scale": 1.0}, {"scale": 0.5})
    cache = {}
    res = interval_search(CANDS, p, i, e, IntervalOptions(eps=2, thetas=thetas, cache=cache))
    assert len(e.seen) == 6 and res.n_evaluations == 6
    assert res.chosen == C("A")
    assert res.settings["chosen_theta"] == {"scale": 0.5}
    assert res.settings["published_w"] == pytest.approx(20 / 9)  # e halved
    assert res.chosen_evaluation.e == pytest.approx(0.25)
    assert res.settings["theta_errors"][repr(C("C"))] == pytest.approx([0.25, 0.125])
    assert len(cache) == 6 and all("|theta=" in k for k in cache)
    again = CountingE()
    res2 = interval_search(CANDS, p, i, again, IntervalOptions(eps=2, thetas=thetas, cache=cache))
    assert again.seen == [] and res2.n_cache_hits == 6 and res2.chosen == res.chosen


def test_cache_keys_are_the_candidate_keys_without_thetas():
    cache = {repr(c): TABLE[c.name][2] for c in CANDS}
    e = CountingE()
    res = interval_search(CANDS, p, i, e, IntervalOptions(eps=2, cache=cache))
    assert e.seen == [] and res.n_cache_hits == 3 and res.chosen == C("A")


def test_given_reference():
    # T = (50, 50): E and F are not below T. A (40/50)(30/50)/0.5 = 0.96, C (20/50)(10/50)/0.25
    res = interval_search(CANDS, p, i, CountingE(), IntervalOptions(eps=2, reference=(50, 50)))
    assert res.chosen == C("A")
    assert res.settings["published_w"] == pytest.approx(0.96)
    assert res.settings["published_w_values"][repr(C("C"))] == pytest.approx(0.32)
    assert res.settings["zero_w"] == [repr(C("E"))]


def test_no_trainable_pick_and_bad_options():
    with pytest.raises(ValueError, match="below T"):
        interval_search([C("F")], p, i, CountingE(), IntervalOptions(eps=1))
    for bad in (dict(eps=0), dict(eps=2, offset=2), dict(eps=True), dict(thetas=())):
        with pytest.raises(ValueError):
            IntervalOptions(**bad)
    with pytest.raises(ValueError):
        interval_search(CANDS, p, i, CountingE(), IntervalOptions(eps=7))


def test_skip_failures():
    def e(c):
        if c.name == "A":
            raise RuntimeError("boom")
        return TABLE[c.name][2]

    res = interval_search(CANDS, p, i, e, IntervalOptions(eps=2, on_error="skip"))
    assert res.chosen == C("C") and len(res.failed) == 1
    with pytest.raises(RuntimeError):
        interval_search(CANDS, p, i, e, IntervalOptions(eps=2))


def test_report_roundtrip(tmp_path):
    res = interval_search(
        CANDS, p, i, CountingE(), IntervalOptions(eps=2, objective=WCoefficient(1, 1, 4))
    )
    data = report.result_to_dict(res)
    back = report.result_from_dict(data, factory=C)
    assert back.chosen == res.chosen and back.settings["published_w"] == pytest.approx(10 / 9)
    text = report.markdown(res)
    assert "interval" in text and not math.isnan(res.objective)
