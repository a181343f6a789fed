"""Span replacement (`span_sampler`, a cheap baseline): a random window of w consecutive
perturbable tokens of the centre is overwritten by a random window of w consecutive perturbable
tokens of a donor row."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from bort_jax.agora.text.tokens import (
    Array,
    Inputs,
    broadcast_rows,
    perturbable,
    text_perturb_mask,
)


def window_starts(eligible: np.ndarray | Array, width: int) -> Array:
    """bool [..., L]: True at s iff positions s .. s + width - 1 are all eligible."""
    e = jnp.asarray(eligible).astype(jnp.int32)
    length = e.shape[-1]
    c = jnp.concatenate([jnp.zeros(e.shape[:-1] + (1,), jnp.int32), jnp.cumsum(e, -1)], -1)
    s = jnp.arange(length)
    end = jnp.minimum(s + width, length)
    full = (jnp.take(c, end, axis=-1) - c[..., :length]) == width
    return full & (s + width <= length)


def _span_sample(
    donor_ids: Array,
    donor_starts: Array,
    special_ids: Array,
    key: Array,
    center_input: Inputs,
    *,
    k: int,
    width: int,
) -> dict:
    ids = center_input["input_ids"]
    starts = window_starts(perturbable(ids, center_input["attention_mask"], special_ids), width)
    kc, kd, kt = jax.random.split(key, 3)
    has = jnp.any(starts)
    s = jax.random.categorical(kc, jnp.where(starts, 0.0, -jnp.inf), shape=(k,))
    d = jax.random.randint(kd, (k,), 0, donor_ids.shape[0])
    t = jax.random.categorical(kt, jnp.where(donor_starts[d], 0.0, -jnp.inf))  # [k]
    offs = jnp.arange(width)
    span = donor_ids[d[:, None], jnp.minimum(t[:, None] + offs, donor_ids.shape[1] - 1)]
    out = broadcast_rows(center_input, k)
    batch = out["input_ids"]
    rows = jnp.arange(k)[:, None]
    pos = jnp.minimum(s[:, None] + offs, ids.shape[0] - 1)
    new = jnp.where(has, span.astype(ids.dtype), batch[rows, pos])
    out["input_ids"] = batch.at[rows, pos].set(new)
    return out


@functools.lru_cache(maxsize=None)
def _span_of(k: int, width: int) -> Callable:
    return functools.partial(_span_sample, k=k, width=width)


def span_sampler(donor_inputs: Inputs, special_ids: Sequence[int], k: int, width: int) -> Partial:
    """sample_fn: k samples, each with one w-token window replaced by a donor's w-token window.

    donor_inputs: 'input_ids', 'attention_mask' [P, L'] (e.g. the real training rows); only
    donors with at least one window of w consecutive perturbable tokens are used.
    """
    if k < 1 or width < 1:
        raise ValueError(f"span_sampler needs k >= 1 and width >= 1, got k={k}, width={width}")
    ids = np.asarray(donor_inputs["input_ids"])
    special = np.asarray(special_ids, np.int32).reshape(-1)
    starts = np.asarray(window_starts(text_perturb_mask(special)(donor_inputs), width))
    keep = starts.any(-1)
    if not keep.any():
        raise ValueError(f"span_sampler: no donor row has {width} consecutive perturbable tokens")
    return Partial(
        _span_of(int(k), int(width)),
        jnp.asarray(ids[keep]),
        jnp.asarray(starts[keep]),
        jnp.asarray(special),
    )
