"""Fine-tune a checkpoint on a GLUE / SuperGLUE / RACE task (thin main of bort_jax.finetune).

    python scripts/finetune.py --config=configs/finetune.py --config.task=sst2 \
        [--config.init=HF_DIR] [--config.arch=D,A,H,I] [--workdir=DIR]

With --workdir the run is resumable (Orbax checkpoints), and the workdir receives
metrics.jsonl (training log), metrics.json (summary) and best_model/ (HF format + head).
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # configs importable

from bort_jax import cli, finetune  # noqa: E402

KEYS = (
    "task",
    "arch",
    "num_steps",
    "train_examples",
    "dev_examples",
    "best_step",
    "best",
    "final",
    "seconds",
)

if __name__ == "__main__":
    cli.config_main(
        finetune.finetune,
        str(ROOT / "configs" / "finetune.py"),
        None,
        lambda result: json.dumps({k: result[k] for k in KEYS}, indent=2),
    )
