"""KD pretraining: `python scripts/pretrain.py --config=configs/pretrain_bort.py --workdir=DIR`."""
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs importable

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

from bort_jax import pretrain

_CONFIG = config_flags.DEFINE_config_file("config", "configs/pretrain_bort.py",
                                          "pretraining config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/pretrain", "output / resume directory")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    py_logging.getLogger("absl").setLevel(py_logging.WARNING)
    summary = pretrain.pretrain(_CONFIG.value, _WORKDIR.value)
    print(f"initial held-out KD objective {summary['initial_heldout']['heldout_total']:.4f}"
          f" → final {summary['final_heldout']['heldout_total']:.4f}; "
          f"export: {summary['export']}")


if __name__ == "__main__":
    app.run(main)
