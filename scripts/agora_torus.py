"""Agora on a torus (thin wrapper of `bort_jax.experiments.agora_torus`; docs/agora.md).

    python scripts/agora_torus.py --config=configs/agora_torus.py --workdir=runs/torus
    python scripts/agora_torus.py --config=configs/agora_torus.py --workdir=runs/torus_3d \
        --config.data.dim=3

The workdir receives agora_torus.json / agora_torus.md, seed<s>.json per seed and
seed<s>_round<r>.png; rerunning the same command after a crash or kill resumes.
"""
from __future__ import annotations

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs importable

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bort_jax import cli  # noqa: E402
from bort_jax.experiments import agora_torus  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "agora_torus config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output / resume directory")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    report = agora_torus.run(_CONFIG.value, _WORKDIR.value)
    print(report["markdown"])


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    cli.run(main)
