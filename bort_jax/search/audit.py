"""Audit of the FPTAS guarantee: FPTAS vs exhaustive search on instances small enough for both.

For each instance and ε: objective(FPTAS) / objective(optimum) against the (1 − ε) bound, and the
number of e-evaluations each method used. Synthetic instances have analytically known optima
(`synthetic`); the real instance is the embedded default extraction (`bort_jax.extract`), whose
exhaustive run fills the on-disk candidate cache that the FPTAS runs then read — so every method
sees the same e(ξ) values, and "evaluations" counts the candidates each method asked for.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

from bort_jax.search import fptas as F
from bort_jax.search import synthetic


@dataclasses.dataclass
class AuditRow:
    instance: str
    eps: float
    ratio: float  # W(FPTAS) / W(optimum)
    bound: float  # 1 − ε
    fptas_evaluations: int
    exhaustive_evaluations: int
    chosen: str
    optimum: str
    required_slack: float = 0.0  # smallest δ for which assumption M holds on the exhaustive run
    slack: float = 0.0  # δ the FPTAS was run with
    certified: bool = True  # False if the FPTAS run found an assumption violated

    @property
    def ok(self) -> bool:
        return self.ratio >= self.bound - 1e-12

    @property
    def share(self) -> float:
        return self.fptas_evaluations / self.exhaustive_evaluations


def audit_problem(
    name: str,
    candidates: Any,
    p: Callable,
    i: Callable,
    e: Callable,
    eps_values: Sequence[float],
    objective: F.WCoefficient,
    *,
    s: int = 1,
    assumptions: F.Assumptions = F.M_ONLY,
    options: F.SearchOptions = F.DEFAULTS,
) -> list[AuditRow]:
    """Exhaustive once, then the FPTAS at each ε (interval size `s`); rows compare them.

    `options.cache` is shared by both, so every method sees the same e-values."""
    full = F.exhaustive(candidates, p, i, e, objective=objective, options=options)
    leq = options.leq or getattr(candidates, "leq", F.componentwise_leq)
    needed = F.required_slack(full.evaluations, leq)
    rows = []
    for eps in eps_values:
        # a fresh counting view of the cache per run: evaluations are counted per method
        res = F.fptas(
            candidates,
            p,
            i,
            e,
            eps,
            s,
            objective=objective,
            assumptions=assumptions,
            options=options,
        )
        rows.append(
            AuditRow(
                name,
                eps,
                res.objective / full.objective,
                1 - eps,
                res.n_evaluations,
                full.n_evaluations,
                str(res.chosen),
                str(full.chosen),
                needed,
                assumptions.monotonicity_slack,
                res.guarantee.certified,
            )
        )
    return rows


def synthetic_rows(eps_values: Sequence[float]) -> list[AuditRow]:
    """Chain (analytic optimum), toy dense stack, BERT-like grid; with assumption C."""
    rows = []
    cases = [
        ("chain(40), W=(1,1,4)", synthetic.chain_instance(), F.WCoefficient(1, 1, 4)),
        ("toy MLP(28), W=(0.5,0.5,4)", synthetic.toy_mlp_instance(), F.WCoefficient(0.5, 0.5, 4)),
        (
            "BERT-like(300), W=(0.5,0.5,4)",
            synthetic.bert_like_instance(),
            F.WCoefficient(0.5, 0.5, 4),
        ),
        (
            "BERT-like(300) noise 2%, W=(0.5,0.5,4)",
            synthetic.bert_like_instance(noise=0.02),
            F.WCoefficient(0.5, 0.5, 4),
        ),
    ]
    for name, inst, obj in cases:
        slack = inst.noise
        rows += audit_problem(
            name,
            inst.candidates,
            inst.p,
            inst.i,
            inst.e.fn,
            eps_values,
            obj,
            assumptions=F.Assumptions(slack, convex_in=inst.log_capacity),
            options=F.SearchOptions(leq=inst.leq, cache={}),
        )
        best, _ = inst.optimum(obj)  # closed form: exhaustive search must agree with it
        if str(best) != rows[-1].optimum:
            raise AssertionError(
                f"{name}: exhaustive optimum {rows[-1].optimum} != analytic optimum {best}"
            )
    return rows


def markdown(rows: Sequence[AuditRow]) -> str:
    lines = [
        "| instance | δ used / δ needed | ε | W(FPTAS)/W(opt) | bound 1−ε | holds | "
        "certified | FPTAS evals | exhaustive evals | share | FPTAS pick | optimum |",
        "|---|---|---:|---:|---:|:---:|:---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.instance} | {r.slack:.3f} / {r.required_slack:.3f} | {r.eps:g} | "
            f"{r.ratio:.4f} | {r.bound:.2f} | "
            f"{'yes' if r.ok else 'NO'} | {'yes' if r.certified else 'NO'} | "
            f"{r.fptas_evaluations} | "
            f"{r.exhaustive_evaluations} | {r.share:.0%} | {r.chosen} | {r.optimum} |"
        )
    return "\n".join(lines)
