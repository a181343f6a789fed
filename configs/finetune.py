"""Config for `scripts/finetune.py`: every field of `bort_jax.finetune.FinetuneConfig`.

    python scripts/finetune.py --config=configs/finetune.py --config.task=rte \
        --config.init=DIR --config.arch=2,6,192,768 --workdir=runs/ft_rte

Empty strings / zeros mean 'not set' (init: the installed all-MiniLM-L6-v2; data_dir:
../shared/data beside the repo, else TFDS; eval_every: 4 per run). num_steps defaults to 200
(a few CPU minutes for MiniLM); num_steps=0 trains `epochs` epochs instead.
"""
import dataclasses

import ml_collections

from bort_jax.finetune import FinetuneConfig


def get_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dataclasses.asdict(FinetuneConfig()))
