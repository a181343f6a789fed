"""Agora samplers that resample text directly: fluent neighbours of a misclassified sentence.

Nearest-token decoding of perturbed token embeddings (`agora.text_decode_fn`) changes either
no token or unrelated ones: in high dimension the share of changed tokens jumps from ~0 to
~1 over a narrow range of radius (docs/agora.md). The samplers here instead edit the token
sequence of a centre, so a sample differs from its centre by a known number of tokens:

* masked-LM resampling (`masked_lm_sampler`): per sample, m perturbable positions (not a
  special token, not padding) are drawn uniformly without replacement, replaced by the mask
  token, and the masked LM's distribution at those positions (one forward pass, the m
  positions sampled independently given the masked sentence) picks the replacements:

      z_j = logits_j / T;   z_jv = -inf for special ids (and, by default, the original id);
      keep the top_k largest z_j (top_k = 0: all);   new_j ~ softmax(z_j).

  Excluding the original id makes every chosen position change, so each sample differs from
  its centre in exactly min(m, #perturbable) tokens. With `continuation_ids` (WordPiece's
  "##" pieces, `continuation_ids(tokenizer)`) only whole one-piece words are resampled, and
  only into whole-word ids: no position inside or at the start of a multi-piece word is
  chosen and no "##" piece is emitted, so no word is split ("in ##ventive" never becomes
  "and ##ventive").
* span replacement (`span_sampler`, a cheap baseline): a random window of w consecutive
  perturbable tokens of the centre is overwritten by a random window of w consecutive
  perturbable tokens of a donor row (another training example). Length, special tokens,
  padding and the other input arrays are unchanged; a centre without w consecutive
  perturbable tokens is returned unchanged.

* nearest real neighbours (`neighbour_sampler`): the k samples are drawn uniformly without
  replacement from the m rows of an unlabelled pool (real sentences of the training split)
  whose sentence embeddings are closest (cosine) to the centre's:

      e(x) = normalise(mean_{l: mask_l = 1} h_l(x))       (all-MiniLM-L6-v2's embedding)
      N_m(c) = top-m_{p in pool} <e(c), e(p)>;    samples ~ Uniform(m-subsets of N_m(c), k).

  The samples lie on the data manifold by construction (they are data); "near" is a ball
  in the embedding space whose radius adapts to the local density (the m-th neighbour).

All are `sample_fn`s of `agora.resample_and_relabel` / `agora.run_agora(sample_fn=...)`:
`(key, center_input) -> inputs (dict of [k, ...])`, wrapped in `jax.tree_util.Partial` so
the MLM parameters and the donor rows are traced, not baked in. Inputs are dicts with
'input_ids' and 'attention_mask' [L] (any other key, e.g. 'token_type_ids', is copied).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from bort_jax import agora
from bort_jax.models.bert import Bert

Array = jax.Array
Inputs = Mapping[str, Any]
SAMPLERS = ("nearest_token", "masked_lm", "span", "neighbour")


def perturbable(input_ids: Array, attention_mask: Array, special_ids: Array) -> Array:
    """bool [..., L]: True where a token may change (not special, not padding)."""
    return ~agora.special_or_pad_mask(input_ids, attention_mask, special_ids)


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


def _broadcast(center_input: Inputs, k: int) -> dict:
    return {name: jnp.broadcast_to(v, (k,) + v.shape) for name, v in center_input.items()}


def _masked_lm_sample(
    mlm_fn: Callable,
    special_ids: Array,
    allowed: Array,
    mask_id: Array,
    continuation: Array,
    key: Array,
    center_input: Inputs,
    *,
    k: int,
    m: int,
    temperature: float,
    top_k: int,
    exclude_original: bool,
) -> dict:
    ids = center_input["input_ids"]
    eligible = perturbable(ids, center_input["attention_mask"], special_ids)
    eligible = whole_word_eligible(ids, eligible, continuation)  # all-False table: no-op
    kp, ks = jax.random.split(key)
    pos, valid = choose_positions(kp, eligible, k, m)
    rows = jnp.arange(k)[:, None]
    out = _broadcast(center_input, k)
    batch = out["input_ids"]
    original = batch[rows, pos]  # [k, m]
    masked = batch.at[rows, pos].set(jnp.where(valid, mask_id, original).astype(ids.dtype))
    logits = mlm_fn(dict(out, input_ids=masked), pos)  # [k, m, V]
    new = sample_tokens(ks, logits, allowed, original, temperature, top_k, exclude_original)
    out["input_ids"] = batch.at[rows, pos].set(jnp.where(valid, new, original).astype(ids.dtype))
    return out


@functools.lru_cache(maxsize=None)
def _masked_lm_of(k: int, m: int, temperature: float, top_k: int, exclude: bool) -> Callable:
    return functools.partial(
        _masked_lm_sample,
        k=k,
        m=m,
        temperature=temperature,
        top_k=top_k,
        exclude_original=exclude,
    )


def masked_lm_sampler(
    mlm_fn: Callable,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    k: int,
    m: int,
    temperature: float = 1.0,
    top_k: int = 0,
    exclude_original: bool = True,
    continuation_ids: Sequence[int] = (),
) -> Partial:
    """sample_fn: k samples, each with m perturbable tokens resampled from a masked LM.

    mlm_fn: `(inputs (dict of [k, L]), positions [k, m]) -> logits [k, m, V]`, jittable
    (e.g. `bert_mlm_fn`); special ids (and mask_id) are never emitted. continuation_ids
    (e.g. `continuation_ids(tokenizer)`): resample whole one-piece words only, into
    whole-word ids (module docstring); () = any perturbable token.
    """
    if k < 1 or m < 1:
        raise ValueError(f"masked_lm_sampler needs k >= 1 and m >= 1, got k={k}, m={m}")
    if not temperature > 0:
        raise ValueError(f"masked_lm_sampler temperature must be > 0, got {temperature}")
    if not 0 <= top_k <= vocab_size:
        raise ValueError(f"masked_lm_sampler top_k must be in [0, {vocab_size}], got {top_k}")
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
        _masked_lm_of(int(k), int(m), float(temperature), int(top_k), bool(exclude_original)),
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


# ------------------------------------------------------------------------ span replacement


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
    out = _broadcast(center_input, k)
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
    eligible = ~(np.isin(ids, special) | (np.asarray(donor_inputs["attention_mask"]) == 0))
    starts = np.asarray(window_starts(eligible, width))
    keep = starts.any(-1)
    if not keep.any():
        raise ValueError(f"span_sampler: no donor row has {width} consecutive perturbable tokens")
    return Partial(
        _span_of(int(k), int(width)),
        jnp.asarray(ids[keep]),
        jnp.asarray(starts[keep]),
        jnp.asarray(special),
    )


# ------------------------------------------------------------------- nearest real neighbours


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


# ------------------------------------------------------------------------------ summaries


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
