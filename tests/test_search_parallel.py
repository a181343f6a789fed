"""Candidate-parallel FPTAS: k concurrent evaluations, the same search as the sequential one."""

import threading
import time

import pytest

from bort_jax.search import fptas as F
from bort_jax.search import synthetic as S

OBJECTIVES = (F.WCoefficient(1, 1, 1), F.WCoefficient(0.5, 0.5, 4))


def search(inst, eps, objective, parallel, s=1, e=None, **options):
    """The FPTAS with `parallel` concurrent e-calls; `options`: fields of `SearchOptions`."""
    return F.fptas(
        inst.candidates,
        inst.p,
        inst.i,
        e or inst.e.fn,
        eps,
        s,
        objective=objective,
        assumptions=F.Assumptions(inst.noise),
        options=F.SearchOptions(leq=inst.leq, parallel=parallel, **options),
    )


def trace(res):
    """Everything the search decided: evaluation sequence with values, choice, guarantee."""
    return (
        [(ev.candidate, ev.e, ev.objective) for ev in res.evaluations],
        res.chosen,
        res.objective,
        res.stopped_by,
        res.trimmed,
        res.failed,
        res.guarantee,
        res.n_evaluations,
    )


def instances():
    yield S.chain_instance()
    yield S.toy_mlp_instance(power=1.0, noise=0.05)
    yield S.bert_like_instance()
    for seed in range(8):
        yield S.random_monotone_instance(200 + seed, noise=0.1 * (seed % 2))


@pytest.mark.parametrize("parallel", (2, 3, 8))
def test_parallel_search_equals_sequential(parallel):
    fewer_rounds = 0
    for inst in instances():
        for objective in OBJECTIVES:
            for eps, s in ((0.05, 1), (0.1, 3), (0.3, 1)):
                seq = search(inst, eps, objective, 1, s)
                par = search(inst, eps, objective, parallel, s)
                assert trace(par) == trace(seq), (inst.name, eps, s)
                assert seq.n_rounds == seq.n_e_calls == seq.n_evaluations
                assert par.parallel == parallel and par.n_rounds <= seq.n_rounds
                # every call either served the search or was a speculative extra
                assert par.n_e_calls == par.n_evaluations + par.n_speculative
                assert par.n_rounds * parallel >= par.n_e_calls
                fewer_rounds += par.n_rounds < seq.n_rounds
    assert fewer_rounds >= 10  # speculation pays off on most instances


def test_calls_run_concurrently():
    inst = S.random_monotone_instance(5)
    active, peak, lock = [0], [0], threading.Lock()

    def slow(c):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return inst.e.fn(c)

    res = search(inst, 0.05, OBJECTIVES[1], 4, e=slow)
    assert peak[0] == 4  # step 3 alone has ≥ 4 maximal elements to evaluate at once
    peak[0] = 0
    search(inst, 0.05, OBJECTIVES[1], 1, e=slow)
    assert peak[0] == 1
    assert res.n_rounds < res.n_evaluations


def test_speculative_failure_raises_only_when_needed():
    inst = S.random_monotone_instance(10)
    objective = OBJECTIVES[1]
    seq = search(inst, 0.1, objective, 1)
    needed = {ev.candidate for ev in seq.evaluations}
    par = search(inst, 0.1, objective, 8)
    unneeded = [c for c in inst.candidates if c not in needed]
    # find a candidate the parallel search evaluated speculatively but never used
    seen = []

    def record(c):
        seen.append(c)
        return inst.e.fn(c)

    search(inst, 0.1, objective, 8, e=record)
    spec = [c for c in seen if c in unneeded]
    assert par.n_speculative == len(spec) > 0
    bad = spec[0]

    def fails_on_bad(c):
        if c == bad:
            raise RuntimeError("out of memory")
        return inst.e.fn(c)

    quiet = search(inst, 0.1, objective, 8, e=fails_on_bad)  # on_error="raise"
    assert trace(quiet) == trace(seq)
    used = seq.evaluations[-1].candidate

    def fails_on_used(c):
        if c == used:
            raise RuntimeError("out of memory")
        return inst.e.fn(c)

    for parallel in (1, 8):
        with pytest.raises(RuntimeError, match="out of memory"):
            search(inst, 0.1, objective, parallel, e=fails_on_used)
    skipped = [search(inst, 0.1, objective, k, e=fails_on_used, on_error="skip") for k in (1, 8)]
    assert trace(skipped[0]) == trace(skipped[1])
    assert skipped[1].failed == ((used, "RuntimeError: out of memory"),)


def test_speculative_values_are_cached_and_reused():
    inst = S.toy_mlp_instance(power=1.0)
    cache = {}
    first = search(inst, 0.05, OBJECTIVES[0], 4, cache=cache)
    assert len(cache) == first.n_e_calls == first.n_evaluations + first.n_speculative
    again = search(inst, 0.05, OBJECTIVES[0], 4, cache=cache)
    assert again.n_e_calls == 0 and trace(again) == trace(first)


def test_exhaustive_parallel_and_bad_parallel():
    inst = S.random_monotone_instance(3)
    seq = F.exhaustive(inst.candidates, inst.p, inst.i, inst.e.fn)
    par = F.exhaustive(
        inst.candidates, inst.p, inst.i, inst.e.fn, options=F.SearchOptions(parallel=5)
    )
    assert trace(par) == trace(seq)
    assert par.n_rounds == -(-len(inst.candidates) // 5)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="parallel"):
            search(inst, 0.1, OBJECTIVES[0], bad)
