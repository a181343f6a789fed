"""Optimal subarchitecture extraction (FPTAS, arXiv 2010.08512).

  python scripts/extract.py                                   # embedded default (MiniLM)
  python scripts/extract.py --config=configs/bert_large.py --config.teacher_dir=/ckpt/roberta-large
"""
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs importable

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

from bort_jax import extract

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "search config",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/extract", "output directory (resumable)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    py_logging.getLogger("absl").setLevel(py_logging.WARNING)
    summary = extract.extract(_CONFIG.value, _WORKDIR.value)
    print(f"chosen {summary['chosen']} (W={summary['objective']:.4g}) after "
          f"{summary['n_evaluations']}/{summary['n_candidates']} proxy evaluations in "
          f"{summary['wall_seconds']:.0f} s; report: {summary['report']['markdown']}")


if __name__ == "__main__":
    app.run(main)
