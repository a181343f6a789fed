"""The whole Bort pipeline: extract → KD-pretrain → fine-tune → compare (thin main of
bort_jax.experiments.bort_pipeline).

    python scripts/bort.py --workdir=runs/bort --config.data_dir=GLUE_DIR
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # configs importable

from bort_jax import cli  # noqa: E402
from bort_jax.experiments import bort_pipeline  # noqa: E402

if __name__ == "__main__":
    cli.config_main(
        bort_pipeline.run, str(ROOT / "configs" / "bort.py"), "runs/bort", bort_pipeline.markdown
    )
