"""Agora on a torus (thin wrapper of `bort_jax.experiments.agora_torus`; docs/agora.md).

    python scripts/agora_torus.py --config=configs/agora_torus.py --workdir=runs/torus
    python scripts/agora_torus.py --config=configs/agora_torus.py --workdir=runs/torus_3d \
        --config.data.dim=3

The workdir receives agora_torus.json / agora_torus.md, seed<s>.json per seed and
seed<s>_round<r>.png; rerunning the same command after a crash or kill resumes.
"""

from bort_jax import cli
from bort_jax.experiments import agora_torus

if __name__ == "__main__":
    cli.config_main(
        agora_torus.run, __file__, "agora_torus.py", "runs/torus", lambda report: report["markdown"]
    )
