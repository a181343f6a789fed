"""Token-level helpers shared by the text samplers of `bort_jax.agora.text`: which positions
may change (not a special token, not padding), the token-embedding representation, k copies
of a centre, and a summary of what the samples changed."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Inputs = Mapping[str, Any]


def special_or_pad_mask(input_ids: Array, attention_mask: Array, special_ids: Array) -> Array:
    """True where a token must not change: padding (attention_mask == 0) or a special id."""
    special = jnp.any(input_ids[..., None] == jnp.asarray(special_ids)[None], axis=-1)
    return special | (attention_mask == 0)


def perturbable(input_ids: Array, attention_mask: Array, special_ids: Array) -> Array:
    """bool [..., L]: True where a token may change (not special, not padding)."""
    return ~special_or_pad_mask(input_ids, attention_mask, special_ids)


def token_embedding_represent(embedding_table: np.ndarray) -> Callable[[Inputs], np.ndarray]:
    """represent_fn for text: inputs -> T[input_ids], [n, L, E] float32."""
    table = np.asarray(embedding_table, dtype=np.float32)
    return lambda inputs: table[np.asarray(inputs["input_ids"])]


def text_perturb_mask(special_ids: Sequence[int]) -> Callable[[Inputs], np.ndarray]:
    """perturb_mask_fn for text: inputs -> bool [n, L], False on special tokens and padding."""
    special = np.asarray(special_ids, dtype=np.int64).reshape(-1)

    def fn(inputs: Inputs) -> np.ndarray:
        ids = np.asarray(inputs["input_ids"])
        return ~(np.isin(ids, special) | (np.asarray(inputs["attention_mask"]) == 0))

    return fn


def broadcast_rows(center_input: Inputs, k: int) -> dict:
    """k copies of a centre's inputs: every [...] array becomes [k, ...] (a broadcast view)."""
    return {name: jnp.broadcast_to(v, (k,) + v.shape) for name, v in center_input.items()}


def sample_summary(
    center_ids: np.ndarray, sample_ids: np.ndarray, labels: np.ndarray, gold: np.ndarray
) -> dict:
    """Share of samples whose text changed, mean changed tokens, labeler = centre's gold.

    center_ids [n, L], sample_ids [n, k, L], labels [n, k], gold [n].
    """
    diff = np.asarray(sample_ids) != np.asarray(center_ids)[:, None]
    return {
        "changed": float(diff.any(-1).mean()),
        "tokens_changed": float(diff.sum(-1).mean()),
        "labeler_equals_gold": float((np.asarray(labels) == np.asarray(gold)[:, None]).mean()),
    }
