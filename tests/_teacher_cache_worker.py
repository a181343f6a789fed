"""Subprocess body of the teacher-cache kill test: `distill.prepare` streams the MiniLM
teacher's hidden states on 120 embedded-corpus sequences (3 train chunks of 32 rows, 1
held-out chunk)
into CACHE_DIR, then saves them (and whether the cache answered) to OUT.npz.

    python tests/_teacher_cache_worker.py CACHE_DIR OUT.npz

`prepare` is also the test's uninterrupted reference run.
"""

import sys

import numpy as np

from bort_jax import distill, hf


def prepare(cache_dir: str) -> distill.KDData:
    """The teacher outputs of the kill test, streamed into (or read from) `cache_dir`."""
    minilm = hf.minilm_path()
    return distill.prepare(
        distill.Teacher.load(minilm),
        minilm,
        "embedded",
        32,
        max_sequences=120,
        heldout_fraction=0.2,
        seed=0,
        cache_dir=cache_dir,
    )


if __name__ == "__main__":
    cache_dir, out = sys.argv[1], sys.argv[2]
    data = prepare(cache_dir)
    np.savez(
        out,
        hit=data.cache_hit,
        **{f"train_{k}": np.asarray(v) for k, v in data.teacher_train.items()},
        **{f"heldout_{k}": np.asarray(v) for k, v in data.teacher_heldout.items()},
    )
