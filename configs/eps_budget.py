"""ε that buys precision: rank stability of e and W, and FPTAS evaluations, vs ε
(`bort_jax.experiments.eps_budget`; docs/eps_budget.md).

  python scripts/eps_budget.py --workdir=runs/eps_budget
  python scripts/eps_budget.py --config=configs/eps_budget.py:smoke --workdir=runs/eps_smoke

Default: the embedded extraction of configs/default.py (24 candidates, MiniLM source and
teacher), i = analytic FLOPs; the proxy budget "40 steps at ε = 0.1, s = 1" (κ = 4), so
ε = 0.4, 0.2, 0.1, 0.05 train 10, 20, 40, 80 steps and are compared with 20, 40, 80, 160.
`smoke` (the test's run): configs/default.py:smoke (4 candidates), ε = 0.2 only, 2 steps at
ε = 0.2 (steps 2 and 4: eight proxy trainings, compilation-bound).
"""

import ml_collections

from configs import common, default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False)
    c = ml_collections.ConfigDict()
    c.eps = "0.4,0.2,0.1,0.05"  # comma-separated
    c.proxy_budget = ml_collections.ConfigDict(
        dict(mode="eps", kappa=0.0, steps_ref=40, eps_ref=0.1, s_ref=1.0, min_steps=1, max_steps=0)
    )
    c.top_k = 3  # W-ranking: overlap of the top-k at T and at 2T
    c.extraction = default.get_config("smoke" if arg.smoke else None)
    c.extraction.inference = "flops"  # i = analytic FLOPs: no latency noise in W
    c.extraction.progress = False
    if arg.smoke:
        c.eps = "0.2"
        c.proxy_budget.steps_ref, c.proxy_budget.eps_ref = 2, 0.2
    return c
