"""ε that buys precision (thin main of `bort_jax.experiments.eps_budget`; docs/eps_budget.md).

    nice -n 10 python scripts/eps_budget.py --workdir=runs/eps_budget \
        --config.extraction.compilation_cache=$PWD/runs/jaxcache_eps

The workdir receives e/T<steps>/<candidate>.json per proxy training and eps_budget.json /
eps_budget.md (rewritten after every step level); rerunning the same command resumes.
"""

from bort_jax import cli
from bort_jax.experiments import eps_budget

if __name__ == "__main__":
    cli.config_main(
        eps_budget.run, __file__, "eps_budget.py", "runs/eps_budget", lambda r: r["markdown"]
    )
