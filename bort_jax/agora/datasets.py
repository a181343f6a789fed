"""Agora's data sets: dicts of numpy arrays with equal first dimension, a 'label' key, any
number of input keys and (added by Agora) a boolean 'synthetic' key. Input keys are all keys
except 'label' and 'synthetic'. Row helpers (`num_rows`, `take`, `concat`) are those of
`bort_jax.data.batching`."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from bort_jax.data import batching

Dataset = dict[str, np.ndarray]
Inputs = Mapping[str, Any]
RESERVED_KEYS = ("label", "synthetic")


def input_keys(ds: Mapping[str, np.ndarray]) -> list[str]:
    """Sorted keys that are model inputs (everything but 'label' and 'synthetic')."""
    return sorted(k for k in ds if k not in RESERVED_KEYS)


def inputs_of(ds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The input arrays of a data set."""
    return {k: ds[k] for k in input_keys(ds)}


def with_synthetic_flag(ds: Mapping[str, np.ndarray], value: bool) -> Dataset:
    """`ds` with a boolean 'synthetic' column [N] (kept if present, else filled with `value`)."""
    out = dict(ds)
    if "synthetic" not in out:
        out["synthetic"] = np.full(batching.num_rows(ds), value, dtype=bool)
    return out


def check_dataset(ds: Mapping[str, np.ndarray], name: str) -> int:
    """Rows N of `ds`; ValueError (naming `name`) without 'label' or without an input key."""
    if "label" not in ds:
        raise ValueError(f"{name} has no 'label' key (keys: {sorted(ds)})")
    if not input_keys(ds):
        raise ValueError(f"{name} has no input keys besides 'label'/'synthetic'")
    return batching.num_rows(ds)


def random_subset(ds: Dataset, size: int, rng: np.random.Generator) -> Dataset:
    """A uniformly random subset of `size` rows, in original order (all rows if fewer)."""
    n = batching.num_rows(ds)
    if size >= n:
        return ds
    return batching.take(ds, np.sort(rng.choice(n, size, replace=False)))
