"""The whole Bort pipeline (arXiv 2010.10499 with the FPTAS of 2010.08512) in one command:
extract → KD-pretrain the chosen shape (and the smallest / largest candidates) → fine-tune
every model and the source on GLUE tasks over a small grid → one comparison report.

    python scripts/bort.py --workdir=runs/bort --config.data_dir=GLUE_DIR
    python scripts/bort.py --config=configs/bort.py:smoke --workdir=runs/bort_smoke

Data: `data_dir` (GLUE file layout; '' = $BORT_DATA_DIR, else TFDS by name).
"""

import ml_collections

from configs import common, default, finetune, pretrain_bort


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False)
    variant = "smoke" if arg.smoke else None
    c = ml_collections.ConfigDict()
    c.extract = default.get_config(variant)
    c.pretrain = pretrain_bort.get_config(variant)
    c.finetune = finetune.get_config(variant)
    c.tasks = "sst2,mrpc,rte,cola,stsb"
    c.data_dir = ""
    c.seed = 0  # the split of each dev set into selection / report halves
    # Bort searched lr and steps per task; every model gets this same grid.
    c.grid = ml_collections.ConfigDict(dict(learning_rate=[1e-4, 5e-4], num_steps=[200, 1000]))
    c.latency_batch = 1
    c.latency_seq_len = 128
    c.latency_repeats = 7
    c.finetune.max_train_examples = 8000
    c.finetune.progress = False
    c.extract.progress = False
    if arg.smoke:
        c.tasks = "sst2,stsb"
        c.grid.learning_rate, c.grid.num_steps = [5e-4], [8]
        c.latency_seq_len, c.latency_repeats = 16, 3
        c.finetune.max_train_examples = 0
    return c
