"""Agora vs plain fine-tuning on GLUE (thin wrapper of `bort_jax.experiments.agora_glue`).

    python scripts/agora_glue.py --config=configs/agora_glue.py --workdir=runs/agora_glue
    python scripts/agora_glue.py --config=configs/agora_glue.py:smoke --workdir=runs/agora_smoke

The workdir receives agora_glue.json / agora_glue.md; rerunning the same command after a
crash or kill resumes (finished tasks and seeds are loaded, fits continue from checkpoints).
"""
from __future__ import annotations

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs importable

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bort_jax import cli  # noqa: E402
from bort_jax.experiments import agora_glue  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "agora_glue config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output / resume directory")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    report = agora_glue.run(_CONFIG.value, _WORKDIR.value)
    print(report["markdown"])
    print(f"total {report['seconds']:.0f} s")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    cli.run(main)
