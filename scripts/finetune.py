"""Fine-tune a checkpoint on a GLUE / SuperGLUE / RACE task (thin wrapper of bort_jax.finetune).

    python scripts/finetune.py --config=configs/finetune.py --config.task=sst2 \
        [--config.init=HF_DIR] [--config.arch=D,A,H,I] [--workdir=DIR]

With --workdir the run is resumable (Orbax checkpoints), and the workdir receives
metrics.jsonl (training log), metrics.json (summary) and best_model/ (HF format + head).
"""
from __future__ import annotations

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs importable


import json

from absl import app, flags, logging
from ml_collections import config_flags

from bort_jax import finetune

_CONFIG = config_flags.DEFINE_config_file("config", None, "fine-tuning config file",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "output / resume directory (optional)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    result = finetune.finetune(_CONFIG.value, _WORKDIR.value)
    keys = ("task", "arch", "num_steps", "train_examples", "dev_examples", "best_step",
            "best", "final", "seconds")
    print(json.dumps({k: result[k] for k in keys}, indent=2))


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
