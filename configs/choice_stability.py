"""A choice that holds: the extraction's pick over seeds and over T and 2T proxy steps
(`bort_jax.experiments.choice_stability`; docs/eps_budget.md section 5).

  nice -n 10 python scripts/choice_stability.py --workdir=runs/choice_stability
  python scripts/choice_stability.py --config=configs/choice_stability.py:smoke --workdir=runs/cs

Default: the embedded extraction of configs/default.py (24 candidates, MiniLM source and
teacher, ε = 0.1, T = proxy.num_steps = 40) with i = analytic FLOPs, at seeds 0, 1, 2 and
T = 40, 80: six e-tables, 144 proxy trainings. `smoke` (the test's run): configs/default.py:smoke
(4 candidates, T = 3) at seeds 0, 1 and T = 3, 6.
"""

import ml_collections

from configs import common, default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False)
    c = ml_collections.ConfigDict()
    c.seeds = "0,1,2"  # seed s sets extraction.data_seed and extraction.proxy.seed
    c.extraction = default.get_config("smoke" if arg.smoke else None)
    c.extraction.inference = "flops"  # i = analytic FLOPs: no latency noise in W
    c.extraction.progress = False
    if arg.smoke:
        c.seeds = "0,1"
    return c
