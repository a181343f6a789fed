"""The whole Bort pipeline: extract → baselines → KD-pretrain → fine-tune → compare (thin main
of bort_jax.experiments.bort_pipeline).

    python scripts/bort.py --workdir=runs/bort --config.data_dir=GLUE_DIR
    python -m bort_jax.experiments.bort_pipeline.costs runs/bort   # progress, time left
"""

from bort_jax import cli
from bort_jax.experiments import bort_pipeline

if __name__ == "__main__":
    cli.config_main(bort_pipeline.run, __file__, "bort.py", "runs/bort", bort_pipeline.markdown)
