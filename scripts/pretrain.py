"""KD pretraining (Bort, arXiv 2010.10499 Sec. 3; thin main of bort_jax.pretrain).

python scripts/pretrain.py --config=configs/pretrain_bort.py --workdir=runs/pretrain
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # configs importable

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bort_jax import cli, pretrain  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(ROOT / "configs" / "pretrain_bort.py"), "pretraining config", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", "runs/pretrain", "output / resume directory")


def main(argv: list[str]) -> None:
    del argv
    summary = pretrain.pretrain(_CONFIG.value, _WORKDIR.value)
    print(
        f"initial held-out KD objective {summary['initial_heldout']['heldout_total']:.4f}"
        f" → final {summary['final_heldout']['heldout_total']:.4f}; "
        f"export: {summary['export']}"
    )


if __name__ == "__main__":
    cli.run(main)
