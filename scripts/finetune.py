"""Fine-tune a checkpoint on a GLUE / SuperGLUE / RACE task (thin main of bort_jax.finetune).

    python scripts/finetune.py --config=configs/finetune.py --config.task=sst2 \
        [--config.init=HF_DIR] [--config.arch=D,A,H,I] [--workdir=DIR]

With --workdir the run is resumable (Orbax checkpoints), and the workdir receives
metrics.jsonl (training log), metrics.json (summary) and best_model/ (HF format + head).
"""

import json

from bort_jax import cli, finetune

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


def describe(result: dict) -> str:
    return json.dumps({k: result[k] for k in KEYS}, indent=2)


if __name__ == "__main__":
    cli.config_main(finetune.finetune, __file__, "finetune.py", None, describe)
