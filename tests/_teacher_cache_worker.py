"""Subprocess body of the teacher-cache kill test: `distill.prepare` streams the MiniLM
teacher's hidden states on 120 embedded-corpus sequences (3 train chunks of 32 rows, 1
held-out chunk)
into CACHE_DIR, then saves them (and whether the cache answered) to OUT.npz.

    python tests/_teacher_cache_worker.py CACHE_DIR OUT.npz
"""

import sys

import numpy as np

from bort_jax import distill, hf

cache_dir, out = sys.argv[1], sys.argv[2]
minilm = hf.minilm_path()
data = distill.prepare(
    distill.Teacher.load(minilm),
    minilm,
    "embedded",
    32,
    max_sequences=120,
    heldout_fraction=0.2,
    seed=0,
    cache_dir=cache_dir,
)
np.savez(
    out,
    hit=data.cache_hit,
    **{f"train_{k}": np.asarray(v) for k, v in data.teacher_train.items()},
    **{f"heldout_{k}": np.asarray(v) for k, v in data.teacher_heldout.items()},
)
