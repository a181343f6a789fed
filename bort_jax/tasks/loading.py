"""Labelled examples of a task from local files or TensorFlow Datasets, and subsampling.

Where data comes from, in order: an explicit `data_dir` (the official GLUE / SuperGLUE / RACE
file layout, see `readers`), else the directory named by the environment variable
`BORT_DATA_DIR` (same layout), else TensorFlow Datasets by name. Nothing here downloads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bort_jax.tasks.core import Example, Task
from bort_jax.tasks.readers import read_split
from bort_jax.tasks.tfds_reader import read_tfds

DATA_DIR_ENV = "BORT_DATA_DIR"


class DataNotFoundError(FileNotFoundError):
    """No files for the task under any data directory tried, and TFDS unavailable."""


def default_data_dir() -> Path | None:
    """The directory named by `$BORT_DATA_DIR`, if set (ValueError if it does not exist)."""
    value = os.environ.get(DATA_DIR_ENV, "")
    if not value:
        return None
    if not Path(value).is_dir():
        raise DataNotFoundError(f"{DATA_DIR_ENV}={value} is not a directory")
    return Path(value)


def load_examples(
    task: Task, split: str, data_dir: str = "", tfds_data_dir: str = ""
) -> list[Example]:
    """Labelled examples of one split: from `data_dir`, $BORT_DATA_DIR, or TFDS (in order).

    Raises:
        DataNotFoundError: the files are not there and TFDS cannot supply them.
    """
    tried = []
    if data_dir:
        if not Path(data_dir).is_dir():
            raise DataNotFoundError(f"data_dir {data_dir} does not exist")
        roots = [Path(data_dir)]
    else:
        roots = [d for d in (default_data_dir(),) if d is not None]
    for root in roots:
        try:
            return _labelled(task, split, read_split(task, root, split))
        except FileNotFoundError as e:
            tried.append(str(e))
    if data_dir:
        raise DataNotFoundError(f"{task.name}/{split}: {tried[0]}")
    try:
        return _labelled(task, split, read_tfds(task, split, tfds_data_dir or None))
    except (ImportError, AssertionError) as e:  # not installed / not prepared locally
        where = "; ".join(tried) or f"no data_dir given and ${DATA_DIR_ENV} not set"
        raise DataNotFoundError(
            f"no {split} data for task {task.name!r}: {where}; and TFDS could not supply it "
            f"({e}). Pass --config.data_dir=<GLUE/SuperGLUE files>."
        ) from e


def _labelled(task: Task, split: str, examples: list[Example]) -> list[Example]:
    if not examples:
        raise DataNotFoundError(f"{task.name}/{split}: the split is empty")
    if any(ex.label is None for ex in examples):
        raise ValueError(
            f"{task.name}/{split} has unlabelled examples; fine-tuning and evaluation need labels"
        )
    return examples


def subsample(examples: Sequence[Example], limit: int, seed: int) -> list[Example]:
    """`limit` examples chosen by a permutation seeded with `seed` (all when limit is 0)."""
    if not limit or limit >= len(examples):
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:limit])
    return [examples[i] for i in keep]


def split_dev(n: int, agora_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic disjoint split of dev indices 0..n-1 into (agora_idx, heldout_idx).

    A fixed permutation of range(n) (numpy PCG64 seeded by `seed`); the first
    round(agora_fraction * n) entries form the agora split. Both outputs are sorted and
    together cover range(n). Agora (`bort_jax.agora.run_agora`) trains on what the agora
    split tells it, so its metric there is no held-out estimate: report the held-out split.
    """
    if n < 2:
        raise ValueError(f"split_dev needs n >= 2, got {n}")
    if not 0.0 < agora_fraction < 1.0:
        raise ValueError(f"agora_fraction must be in (0, 1), got {agora_fraction}")
    n_agora = min(max(int(round(agora_fraction * n)), 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_agora]), np.sort(perm[n_agora:])


def assert_disjoint(agora_idx: Sequence[int], heldout_idx: Sequence[int]) -> None:
    """Raise AssertionError if the two index sets share an element (or contain repeats)."""
    a, h = np.asarray(agora_idx).ravel(), np.asarray(heldout_idx).ravel()
    for name, x in (("agora", a), ("held-out", h)):
        if len(np.unique(x)) != len(x):
            raise AssertionError(f"the {name} split repeats indices")
    shared = np.intersect1d(a, h)
    if shared.size:
        raise AssertionError(
            f"agora and held-out splits share {shared.size} indices, e.g. {shared[:5].tolist()}"
        )
