"""KD pretraining (Bort, arXiv 2010.10499; thin main of bort_jax.pretrain).

python scripts/pretrain.py --config=configs/pretrain_bort.py --workdir=runs/pretrain
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # configs importable

from bort_jax import cli, pretrain  # noqa: E402


def describe(summary: dict) -> str:
    return (
        f"initial held-out KD objective {summary['initial_heldout']['heldout_total']:.4f}"
        f" → final {summary['final_heldout']['heldout_total']:.4f}; "
        f"export: {summary['export']}"
    )


if __name__ == "__main__":
    cli.config_main(
        pretrain.pretrain, str(ROOT / "configs" / "pretrain_bort.py"), "runs/pretrain", describe
    )
