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

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bort_jax import cli, finetune  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", str(ROOT / "configs" / "finetune.py"), "fine-tuning config file", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "output / resume directory (optional)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    result = finetune.finetune(_CONFIG.value, _WORKDIR.value)
    keys = (
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
    print(json.dumps({k: result[k] for k in keys}, indent=2))


if __name__ == "__main__":
    cli.run(main)
