"""The whole Bort pipeline: extract → KD-pretrain → fine-tune → compare (thin main of
bort_jax.experiments.bort_pipeline).

    python scripts/bort.py --workdir=runs/bort --config.data_dir=GLUE_DIR
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # configs importable

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bort_jax import cli  # noqa: E402
from bort_jax.experiments import bort_pipeline  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", str(ROOT / "configs" / "bort.py"),
                                          "pipeline config", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/bort", "output / resume directory")


def main(argv: list[str]) -> None:
    del argv
    bort_pipeline.run(_CONFIG.value, _WORKDIR.value)
    print(Path(_WORKDIR.value, "report.md").read_text())


if __name__ == "__main__":
    cli.run(main)
