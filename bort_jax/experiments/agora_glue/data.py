"""The agora_glue experiment's data: the student's scarce training rows, the labeler's (a
superset), the dev split cut into disjoint agora / held-out halves, and the unlabelled pool;
content keys to check that no held-out row reaches training."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from bort_jax.data import batching
from bort_jax.experiments.agora_glue.config import GlueConfig, labeler_limit
from bort_jax.tasks import Task
from bort_jax.tasks.encoding import Arrays, encode_examples
from bort_jax.tasks.loading import assert_disjoint, load_examples, split_dev, subsample


@dataclasses.dataclass
class TaskData:
    """Encoded splits of one task. agora_idx / heldout_idx index the (capped) dev split;
    train_idx / labeler_train_idx index the training split (student / labeler rows)."""

    task: Task
    train: Arrays
    agora_dev: Arrays
    heldout: Arrays
    agora_idx: np.ndarray
    heldout_idx: np.ndarray
    train_idx: np.ndarray
    labeler_train_idx: np.ndarray
    labeler_train: Arrays | None = None  # None = the student's `train`
    distill_pool: Arrays | None = None  # unlabeled-text control (gold labels unused)
    head_text: Arrays | None = None  # extra unlabeled rows for the sampler's MLM head

    @property
    def labeler_rows(self) -> Arrays:
        return self.train if self.labeler_train is None else self.labeler_train

    def sizes(self) -> dict[str, int]:
        return {
            "train": batching.num_rows(self.train),
            "labeler_train": batching.num_rows(self.labeler_rows),
            "dev": len(self.agora_idx) + len(self.heldout_idx),
            "agora_dev": len(self.agora_idx),
            "heldout": len(self.heldout_idx),
        }


def subsample_indices(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices [min(limit, n)] that `tasks.loading.subsample` keeps out of n items."""
    return np.asarray(subsample(range(n), limit, seed), np.int64)


def distill_pool_indices(
    n: int, train_idx: np.ndarray, labeler_idx: np.ndarray, size: int, seed: int
) -> np.ndarray:
    """Up to `size` training-split rows outside the student's set, preferring rows the
    labeler was not trained on either (random order, seeded)."""
    outside = np.setdiff1d(np.arange(n), np.union1d(train_idx, labeler_idx))
    if len(outside) < size:
        outside = np.setdiff1d(np.arange(n), train_idx)
    return np.random.default_rng(seed + 1).permutation(outside)[:size]


def load_task_data(task: Task, cfg: GlueConfig, tokenizer: Any) -> TaskData:
    """Scarce training subset (student), the labeler's training subset (same permutation, so
    a larger one contains the student's), dev split into disjoint agora / held-out halves."""
    all_train = load_examples(task, "train", cfg.data_dir)
    train_idx = subsample_indices(len(all_train), cfg.n_train, cfg.data_seed)
    lab_idx = subsample_indices(len(all_train), labeler_limit(cfg), cfg.data_seed)
    if len(lab_idx) >= len(train_idx):
        assert set(train_idx.tolist()) <= set(lab_idx.tolist()), (
            "the student's training rows must be a subset of the labeler's"
        )
    dev_ex = subsample(
        load_examples(task, task.eval_splits[0], cfg.data_dir), cfg.max_dev_examples, cfg.data_seed
    )
    agora_idx, heldout_idx = split_dev(len(dev_ex), cfg.agora_fraction, cfg.split_seed)
    assert_disjoint(agora_idx, heldout_idx)
    assert len(agora_idx) + len(heldout_idx) == len(dev_ex)
    encode = functools.partial(encode_examples, tokenizer, task, max_len=cfg.max_seq_len)
    rows = lambda idx: encode([all_train[i] for i in idx])
    dev = encode(dev_ex)
    pool = None
    if cfg.control_distill or "neighbour" in cfg.samplers_used:
        # the unlabelled pool: the distill control and the neighbour sampler share its rows
        pool = rows(
            distill_pool_indices(
                len(all_train), train_idx, lab_idx, cfg.distill_pool_size, cfg.data_seed
            )
        )
    head_text = None
    if cfg.sampler.head_rows:  # the masked-LM sampler's head (also in the sampler report)
        head_text = rows(
            distill_pool_indices(
                len(all_train), train_idx, lab_idx, cfg.sampler.head_rows, cfg.data_seed + 7
            )
        )
    return TaskData(
        task,
        rows(train_idx),
        batching.take(dev, agora_idx),
        batching.take(dev, heldout_idx),
        agora_idx,
        heldout_idx,
        train_idx,
        lab_idx,
        None if np.array_equal(lab_idx, train_idx) else rows(lab_idx),
        pool,
        head_text,
    )


def row_keys(arrays: Arrays) -> list[bytes]:
    """Content key of every row: its input_ids and token types as bytes."""
    ids = np.asarray(arrays["input_ids"], np.int32)
    types = np.asarray(arrays.get("token_type_ids", np.zeros_like(ids)), np.int32)
    return [a.tobytes() + b.tobytes() for a, b in zip(ids, types)]


def count_in(arrays: Arrays, keys: set[bytes], mask: np.ndarray | None = None) -> int:
    """Rows of `arrays` (where `mask`) whose content key is in `keys`."""
    rows = row_keys(arrays)
    mask = np.ones(len(rows), bool) if mask is None else np.asarray(mask, bool)
    return int(sum(r in keys for r, m in zip(rows, mask) if m))
