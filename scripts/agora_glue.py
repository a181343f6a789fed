"""Agora vs plain fine-tuning on GLUE (thin wrapper of `bort_jax.experiments.agora_glue`).

    python scripts/agora_glue.py --config=configs/agora_glue.py --workdir=runs/agora_glue
    python scripts/agora_glue.py --config=configs/agora_glue.py:smoke --workdir=runs/agora_smoke
    python scripts/agora_glue.py --config=configs/agora_glue.py:controls \
        --workdir=runs/agora_controls

The workdir receives agora_glue.json / agora_glue.md; rerunning the same command after a
crash or kill resumes (finished tasks and seeds are loaded, fits continue from checkpoints).
"""

from bort_jax import cli
from bort_jax.experiments import agora_glue

if __name__ == "__main__":
    cli.config_main(
        agora_glue.run,
        __file__,
        "agora_glue.py",
        "runs/agora_glue",
        lambda report: report["markdown"],
    )
