"""Masked-LM resampling (`masked_lm_sampler`): per sample, m perturbable positions are
replaced by the mask token and re-drawn from the masked LM's distribution at those positions
(the `bort_jax.agora.text` docstring gives the rule), optionally whole one-piece words only.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from bort_jax.agora.text.tokens import Array, Inputs, broadcast_rows, perturbable
from bort_jax.models.bert import Bert


def choose_positions(key: Array, eligible: Array, k: int, m: int) -> tuple[Array, Array]:
    """k independent draws of m distinct positions, uniform among the eligible ones.

    eligible: bool [L]. Returns positions [k, m] int32 (distinct within a row) and valid
    [k, m] bool: False where fewer than m positions are eligible (those entries point at
    ineligible positions and must be left unchanged). Uses the Gumbel-top-k trick with iid
    uniforms: the m largest of u_l (eligible) are a uniform m-subset.
    """
    (length,) = eligible.shape
    if m > length:
        raise ValueError(f"cannot choose m={m} positions out of L={length}")
    u = jax.random.uniform(key, (k, length))
    score = jnp.where(eligible[None], u, u - 2.0)  # ineligible only after all eligible
    _, pos = jax.lax.top_k(score, m)
    return pos.astype(jnp.int32), eligible[pos]


def sample_tokens(
    key: Array,
    logits: Array,
    allowed: Array,
    original: Array,
    temperature: float,
    top_k: int,
    exclude_original: bool,
) -> Array:
    """Draw ids [...] from softmax(logits / T) over allowed ids, optionally top-k filtered.

    logits [..., V]; allowed bool [V]; original ids [...] (excluded when exclude_original).
    top_k = 0: no filter. Ties at the k-th largest logit are all kept.
    """
    z = logits.astype(jnp.float32) / temperature
    z = jnp.where(allowed, z, -jnp.inf)
    if exclude_original:
        v = jnp.arange(z.shape[-1])
        z = jnp.where(v == original[..., None], -jnp.inf, z)
    if top_k:
        kth = jax.lax.top_k(z, top_k)[0][..., -1:]
        z = jnp.where(z >= kth, z, -jnp.inf)
    return jax.random.categorical(key, z).astype(jnp.int32)


def continuation_ids(tokenizer: Any) -> np.ndarray:
    """int32 [n]: the ids of WordPiece continuation pieces ("##…") of a `tokenizers`
    tokenizer (none for a byte-level BPE vocabulary)."""
    vocab = tokenizer.get_vocab()
    return np.asarray(sorted(i for t, i in vocab.items() if t.startswith("##")), np.int32)


def whole_word_eligible(ids: Array, eligible: Array, continuation: Array) -> Array:
    """bool [L]: eligible positions holding a whole one-piece word (the token is not a
    continuation piece and the next token is not one either). continuation: bool [V]."""
    cont = continuation[ids]
    next_cont = jnp.concatenate([cont[1:], jnp.zeros((1,), bool)])
    return eligible & ~cont & ~next_cont


@dataclasses.dataclass(frozen=True)
class MaskedLMDraw:
    """How `masked_lm_sampler` draws: k samples per centre, m resampled tokens per sample,
    softmax(logits / temperature) over the top_k ids (0 = all), the original id excluded
    unless exclude_original is False."""

    k: int
    m: int
    temperature: float = 1.0
    top_k: int = 0
    exclude_original: bool = True

    def __post_init__(self) -> None:
        if self.k < 1 or self.m < 1:
            raise ValueError(
                f"masked_lm_sampler needs k >= 1 and m >= 1, got k={self.k}, m={self.m}"
            )
        if not self.temperature > 0:
            raise ValueError(f"masked_lm_sampler temperature must be > 0, got {self.temperature}")


def _masked_lm_sample(
    mlm_fn: Callable,
    special_ids: Array,
    allowed: Array,
    mask_id: Array,
    continuation: Array,
    key: Array,
    center_input: Inputs,
    *,
    draw: MaskedLMDraw,
) -> dict:
    ids = center_input["input_ids"]
    eligible = perturbable(ids, center_input["attention_mask"], special_ids)
    eligible = whole_word_eligible(ids, eligible, continuation)  # all-False table: no-op
    kp, ks = jax.random.split(key)
    pos, valid = choose_positions(kp, eligible, draw.k, draw.m)
    rows = jnp.arange(draw.k)[:, None]
    out = broadcast_rows(center_input, draw.k)
    batch = out["input_ids"]
    original = batch[rows, pos]  # [k, m]
    masked = batch.at[rows, pos].set(jnp.where(valid, mask_id, original).astype(ids.dtype))
    logits = mlm_fn(dict(out, input_ids=masked), pos)  # [k, m, V]
    new = sample_tokens(
        ks, logits, allowed, original, draw.temperature, draw.top_k, draw.exclude_original
    )
    out["input_ids"] = batch.at[rows, pos].set(jnp.where(valid, new, original).astype(ids.dtype))
    return out


@functools.lru_cache(maxsize=None)
def _masked_lm_of(draw: MaskedLMDraw) -> Callable:
    return functools.partial(_masked_lm_sample, draw=draw)


def masked_lm_sampler(
    mlm_fn: Callable,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    draw: MaskedLMDraw,
    continuation_ids: Sequence[int] = (),
) -> Partial:
    """sample_fn: draw.k samples, each with draw.m perturbable tokens resampled from a
    masked LM.

    mlm_fn: `(inputs (dict of [k, L]), positions [k, m]) -> logits [k, m, V]`, jittable
    (e.g. `bert_mlm_fn`); special ids (and mask_id) are never emitted. continuation_ids
    (e.g. `continuation_ids(tokenizer)`): resample whole one-piece words only, into
    whole-word ids (module docstring); () = any perturbable token.
    """
    if not 0 <= draw.top_k <= vocab_size:
        raise ValueError(f"masked_lm_sampler top_k must be in [0, {vocab_size}], got {draw.top_k}")
    special = np.unique(np.append(np.asarray(special_ids, np.int32).reshape(-1), mask_id))
    allowed = np.ones(vocab_size, bool)
    allowed[special] = False
    cont = np.zeros(vocab_size, bool)
    cont_ids = np.asarray(continuation_ids, np.int64).reshape(-1)
    if cont_ids.size and (cont_ids.min() < 0 or cont_ids.max() >= vocab_size):
        raise ValueError(f"masked_lm_sampler continuation_ids must lie in [0, {vocab_size})")
    cont[cont_ids] = True
    allowed &= ~cont
    return Partial(
        _masked_lm_of(draw),
        mlm_fn,
        jnp.asarray(special, jnp.int32),
        jnp.asarray(allowed),
        jnp.asarray(mask_id, jnp.int32),
        jnp.asarray(cont),
    )


def _bert_mlm(model: Bert, params: Any, inputs: Inputs, positions: Array) -> Array:
    return model.apply(
        {"params": params},
        inputs["input_ids"],
        inputs["attention_mask"],
        inputs.get("token_type_ids"),
        mlm_positions=positions,
    )["mlm_logits"]


@functools.lru_cache(maxsize=None)
def _bert_mlm_of(model: Bert) -> Callable:
    return functools.partial(_bert_mlm, model)


def bert_mlm_fn(model: Bert, params: Any) -> Partial:
    """mlm_fn of a `Bert(mlm_head=True)`: logits [k, m, V] at the given positions [k, m]."""
    if not model.mlm_head:
        raise ValueError("bert_mlm_fn needs Bert(mlm_head=True) (fit one with mlm_head.py)")
    return Partial(_bert_mlm_of(model), params)
