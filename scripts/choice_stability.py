"""A choice that holds (thin main of `bort_jax.experiments.choice_stability`; docs/eps_budget.md).

    nice -n 10 python scripts/choice_stability.py --workdir=runs/choice_stability \
        --config.extraction.compilation_cache=$PWD/runs/jaxcache_eps

The workdir receives seed<s>/e/T<steps>/<candidate>.json per proxy training and
choice_stability.json / .md (rewritten after every finished (seed, T) setting); rerunning the
same command resumes.
"""

from bort_jax import cli
from bort_jax.experiments import choice_stability

if __name__ == "__main__":
    cli.config_main(
        choice_stability.run,
        __file__,
        "choice_stability.py",
        "runs/choice_stability",
        lambda r: r["markdown"],
    )
