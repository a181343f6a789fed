"""Nearest real neighbours (`neighbour_sampler`): k rows of an unlabelled pool drawn among the
m whose sentence embeddings are closest (cosine) to the centre's (the `bort_jax.agora.text`
docstring gives the rule)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from bort_jax.agora.text.tokens import Array, Inputs
from bort_jax.models.bert import Bert


def sentence_embedding(hidden: Array, attention_mask: Array, eps: float = 1e-12) -> Array:
    """L2-normalised masked mean of hidden states [..., L, H] over attention_mask [..., L]
    (1 = token): the sentence embedding of all-MiniLM-L6-v2 (sentence-transformers' mean
    pooling + normalisation). Returns [..., H]."""
    w = attention_mask.astype(hidden.dtype)[..., None]
    mean = (hidden * w).sum(-2) / jnp.maximum(w.sum(-2), 1.0)
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), eps)


def _bert_embed(model: Bert, params: Any, inputs: Inputs) -> Array:
    h = model.apply(
        {"params": params},
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs.get("token_type_ids"),
    )["last_hidden_state"]
    return sentence_embedding(h, inputs["attention_mask"])


@functools.lru_cache(maxsize=None)
def _bert_embed_of(model: Bert) -> Callable:
    return functools.partial(_bert_embed, model)


def bert_embed_fn(model: Bert, params: Any) -> Partial:
    """embed_fn of an encoder: inputs (dict of [n, L]) -> unit sentence embeddings [n, H]."""
    return Partial(_bert_embed_of(model), params)


@jax.jit
def _apply(fn: Callable, inputs: Inputs) -> Array:
    """fn(inputs), compiled once per (fn's function, shapes); fn's arrays are traced."""
    return fn(inputs)


def embed_rows(embed_fn: Callable, inputs: Inputs, batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings [N, H] float32 of N rows, in fixed-size batches (the last padded
    by repeating its final row, so one shape compiles)."""
    n = int(np.shape(inputs["input_ids"])[0])
    out = []
    for start in range(0, n, batch_size):
        idx = np.minimum(np.arange(start, start + batch_size), n - 1)
        batch = {key: jnp.asarray(np.asarray(v)[idx]) for key, v in inputs.items()}
        out.append(np.asarray(_apply(embed_fn, batch))[: min(batch_size, n - start)])
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def _neighbour_sample(
    pool: Inputs,
    pool_embeddings: Array,
    embed_fn: Callable,
    key: Array,
    center_input: Inputs,
    *,
    k: int,
    m: int,
) -> dict:
    for name, v in center_input.items():  # static shapes: raised while tracing
        if pool[name].shape[1:] != v.shape:
            raise ValueError(
                f"neighbour_sampler: pool {name!r} rows have shape {pool[name].shape[1:]}, "
                f"the centre's {v.shape}"
            )
    center = {name: v[None] for name, v in center_input.items()}
    e = embed_fn(center)[0]  # [H]
    _, near = jax.lax.top_k(pool_embeddings @ e, m)  # [m], most similar first
    _, pick = jax.lax.top_k(jax.random.uniform(key, (m,)), k)  # uniform k-subset of m
    rows = near[pick]
    return {name: pool[name][rows].astype(center_input[name].dtype) for name in center_input}


@functools.lru_cache(maxsize=None)
def _neighbour_of(k: int, m: int) -> Callable:
    return functools.partial(_neighbour_sample, k=k, m=m)


def neighbour_sampler(
    pool_inputs: Inputs, pool_embeddings: np.ndarray, embed_fn: Callable, k: int, m: int
) -> Partial:
    """sample_fn: k distinct rows of the pool among the m nearest to the centre (cosine of
    unit sentence embeddings; module docstring).

    pool_inputs: every model input of the pool rows, dict of [P, L] (the centres' keys and
    width). pool_embeddings: [P, H] unit rows, `embed_rows(embed_fn, pool_inputs)`.
    embed_fn: `inputs (dict of [n, L]) -> [n, H]` unit embeddings, jittable (e.g.
    `bert_embed_fn`). Needs k <= m <= P.
    """
    emb = np.asarray(pool_embeddings, np.float32)
    p = int(np.shape(pool_inputs["input_ids"])[0])
    if emb.ndim != 2 or emb.shape[0] != p:
        raise ValueError(
            f"neighbour_sampler: pool_embeddings shape {emb.shape} does not match {p} pool rows"
        )
    if not 1 <= k <= m <= p:
        raise ValueError(
            f"neighbour_sampler needs 1 <= k <= m <= pool rows, got k={k}, m={m}, P={p}"
        )
    return Partial(
        _neighbour_of(int(k), int(m)),
        {name: jnp.asarray(v) for name, v in pool_inputs.items()},
        jnp.asarray(emb),
        embed_fn,
    )
