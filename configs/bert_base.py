"""OSE over BERT-base: the Bort grid restricted to sub-architectures of BERT-base (H ≤ 768).

  python scripts/extract.py --config=configs/bert_base.py \
      --config.source_dir=/ckpt/bert-base-uncased --config.teacher_dir=/ckpt/roberta-base
"""

import ml_collections

from configs import bert_large


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = bert_large.get_config(arg)
    c.grid.hidden = [512, 768]
    return c
