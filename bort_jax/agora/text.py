"""Agora on text: nearest-token decoding of perturbed embeddings, and samplers that edit the
tokens of a misclassified sentence directly.

Nearest-token decoding (`text_decode_fn`, the decode_fn of `sampling.sample_and_relabel` over
token embeddings [L, E]) maps every perturbed, non-special token to

    id_l = argmin_{v allowed} ||s_l - T_v||^2 = argmax_v (2 s_l . T_v - ||T_v||^2),

keeping special tokens and padding. It changes either no token or unrelated ones: in high
dimension the share of changed tokens jumps from ~0 to ~1 over a narrow range of radius
(`token_change_rate`, `radius_for_change_rate`; docs/agora.md). The samplers here instead
edit the token sequence of a centre, so a sample differs from its centre by a known number
of tokens:

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

All are `sample_fn`s of `sampling.resample_and_relabel` / `rounds.Generator(sample_fn=...)`:
`(key, center_input) -> inputs (dict of [k, ...])`, wrapped in `jax.tree_util.Partial` so
the MLM parameters and the donor rows are traced, not baked in. Inputs are dicts with
'input_ids' and 'attention_mask' [L] (any other key, e.g. 'token_type_ids', is copied).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from bort_jax.agora.config import AgoraConfig
from bort_jax.agora.sampling import mean_nn_distance, reference_atoms, sample_and_relabel
from bort_jax.models.bert import Bert

Array = jax.Array
Inputs = Mapping[str, Any]
SAMPLERS = ("nearest_token", "masked_lm", "span", "neighbour")


# ----------------------------------------------------------------- nearest-token decoding


def _nearest_rows(
    queries: Array, table: Array, candidate_mask: Array, block: Optional[int]
) -> Array:
    """argmax_v (2 q . T_v - ||T_v||^2) over allowed rows; queries [N, E] -> ids [N].

    With `block`, the vocabulary is scanned in blocks of that many rows keeping a running
    best (memory [N, block] instead of [N, V]); ties resolve to the lowest id either way.
    """
    v, e = table.shape
    if block is None or block >= v:
        scores = 2.0 * queries @ table.T - jnp.sum(table * table, axis=-1)
        return jnp.argmax(jnp.where(candidate_mask, scores, -jnp.inf), -1).astype(jnp.int32)
    nb = -(-v // block)
    table = jnp.pad(table, ((0, nb * block - v), (0, 0)))
    allowed = jnp.pad(candidate_mask, (0, nb * block - v))

    def body(carry, b):
        best, best_id = carry
        rows = jax.lax.dynamic_slice(table, (b * block, 0), (block, e))
        ok = jax.lax.dynamic_slice(allowed, (b * block,), (block,))
        scores = jnp.where(ok, 2.0 * queries @ rows.T - jnp.sum(rows * rows, axis=-1), -jnp.inf)
        j = jnp.argmax(scores, -1)
        top = jnp.take_along_axis(scores, j[:, None], -1)[:, 0]
        better = top > best
        return (
            jnp.where(better, top, best),
            jnp.where(better, b * block + j, best_id).astype(jnp.int32),
        ), None

    init = (
        jnp.full(queries.shape[0], -jnp.inf, jnp.float32),
        jnp.zeros(queries.shape[0], jnp.int32),
    )
    (_, ids), _ = jax.lax.scan(body, init, jnp.arange(nb))
    return ids


def nearest_token_decode(
    embedding_table: Array,
    samples: Array,
    keep_mask: Array,
    center_ids: Array,
    candidate_mask: Optional[Array] = None,
    vocab_block: Optional[int] = None,
) -> Array:
    """Map perturbed embeddings to the nearest token; kept positions copy the centre.

        id_l = argmin_{v : candidate_v} ||s_l - T_v||^2 = argmax_v (2 s_l . T_v - ||T_v||^2)
        out_l = center_ids_l if keep_mask_l else id_l

    Args:
        embedding_table: T [V, E].
        samples: [..., L, E].
        keep_mask: bool, broadcastable to [..., L]; True = keep the centre's id (special
            tokens, padding).
        center_ids: int, broadcastable to [..., L].
        candidate_mask: optional bool [V]; False = never emitted at a perturbed position
            (e.g. <pad>, <mask>, <s>, </s>).
        vocab_block: scan the vocabulary in blocks of this many rows (memory
            [prod(...) L, vocab_block] instead of [prod(...) L, V]); None = all at once.

    Returns:
        ids [..., L] int32.
    """
    table = jnp.asarray(embedding_table, jnp.float32)
    allowed = (
        jnp.ones(table.shape[0], bool)
        if candidate_mask is None
        else jnp.asarray(candidate_mask, bool)
    )
    flat = samples.astype(jnp.float32).reshape(-1, samples.shape[-1])
    ids = _nearest_rows(flat, table, allowed, vocab_block).reshape(samples.shape[:-1])
    return jnp.where(keep_mask, jnp.asarray(center_ids, jnp.int32), ids)


def special_or_pad_mask(input_ids: Array, attention_mask: Array, special_ids: Array) -> Array:
    """True where a token must not change: padding (attention_mask == 0) or a special id."""
    special = jnp.any(input_ids[..., None] == jnp.asarray(special_ids)[None], axis=-1)
    return special | (attention_mask == 0)


def _text_decode(
    embedding_table: Array,
    special_ids: Array,
    candidate_mask: Array,
    samples: Array,
    center_input: Inputs,
    *,
    vocab_block: Optional[int],
) -> dict:
    ids = center_input["input_ids"]
    keep = special_or_pad_mask(ids, center_input["attention_mask"], special_ids)
    new = nearest_token_decode(embedding_table, samples, keep, ids, candidate_mask, vocab_block)
    k = samples.shape[0]
    out = {name: jnp.broadcast_to(v, (k,) + v.shape) for name, v in center_input.items()}
    out["input_ids"] = new.astype(ids.dtype)
    return out


@functools.lru_cache(maxsize=None)
def _text_decoder(vocab_block: Optional[int]) -> Callable:
    return functools.partial(_text_decode, vocab_block=vocab_block)


def text_decode_fn(
    embedding_table: Array,
    special_ids: Sequence[int],
    candidate_mask: Optional[Array] = None,
    vocab_block: Optional[int] = 8192,
) -> Partial:
    """decode_fn for token sequences: samples [k, L, E] -> centre's inputs with new ids.

    Every centre input key (attention_mask, token_type_ids, ...) is copied unchanged; only
    non-special, non-pad positions of 'input_ids' are re-decoded (`nearest_token_decode`).
    Special ids are also excluded as candidates unless `candidate_mask` says otherwise.
    Under `sample_and_relabel` one chunk needs chunk * k * L * vocab_block * 4 bytes of scores.
    """
    table = jnp.asarray(embedding_table, jnp.float32)
    special = jnp.asarray(np.asarray(special_ids, dtype=np.int32).reshape(-1))
    if candidate_mask is None:
        candidate_mask = jnp.ones(table.shape[0], bool).at[special].set(False)
    return Partial(_text_decoder(vocab_block), table, special, jnp.asarray(candidate_mask, bool))


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


def _constant_label(inputs: Inputs) -> Array:
    return jnp.zeros(inputs["input_ids"].shape[0], jnp.int32)


def token_change_rate(
    rng: Array,
    embedding_table: np.ndarray,
    inputs: Inputs,
    special_ids: Sequence[int],
    radius: float,
    cfg: AgoraConfig,
    vocab_block: Optional[int] = 8192,
) -> float:
    """Share of perturbable tokens whose nearest-token decoding differs from the centre.

    A perturbation delta (norm r) moves token t closer to t' (distance d) iff
    d < 2 r cos(delta, t' - t). For random directions in E dimensions the largest cosine
    over V tokens is about sqrt(2 ln V / E), so tokens start to change only once
    r > d sqrt(E / (8 ln V)) (about 3.4 d for E = 1024, V = 50265) and the rate then rises
    steeply to near-random replacements. The rate, not r, is the interpretable knob for text
    (compare BERT's 15 % masking); see `radius_for_change_rate`.
    inputs: dict with 'input_ids', 'attention_mask' ([n, L]); uses cfg's k, distribution.
    """
    ids = np.asarray(inputs["input_ids"])
    mask = text_perturb_mask(special_ids)(inputs)
    _, out, _ = sample_and_relabel(
        rng,
        np.asarray(embedding_table, np.float32)[ids],
        _constant_label,
        text_decode_fn(embedding_table, special_ids, vocab_block=vocab_block),
        cfg,
        radius=radius,
        center_inputs=dict(inputs),
        perturb_mask=mask,
    )
    changed = np.asarray(out["input_ids"]) != ids[:, None]
    frozen = np.broadcast_to(mask[:, None], changed.shape)
    return float(changed[frozen].mean()) if frozen.any() else 0.0


def radius_for_change_rate(
    rng: Array,
    embedding_table: np.ndarray,
    inputs: Inputs,
    special_ids: Sequence[int],
    target: float,
    cfg: AgoraConfig,
    iters: int = 16,
    vocab_block: Optional[int] = 8192,
) -> float:
    """Absolute radius r with token_change_rate(r) ~= target, by bisection in log r.

    Brackets from the mean nearest-neighbour distance of the table rows used by `inputs`,
    doubling / halving until the target is bracketed. The same rng is used at every r,
    so the rate is a deterministic, nearly monotone function of r.
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target change rate must be in (0, 1), got {target}")
    mask = text_perturb_mask(special_ids)(inputs)
    atoms = reference_atoms(
        np.asarray(embedding_table, np.float32)[np.asarray(inputs["input_ids"])],
        1,
        mask,
        cfg.nn_max_points,
        cfg.seed,
    )
    rate = functools.partial(
        token_change_rate,
        rng,
        embedding_table,
        inputs,
        special_ids,
        cfg=cfg,
        vocab_block=vocab_block,
    )
    lo = hi = mean_nn_distance(atoms)
    above = rate(radius=hi) >= target
    for _ in range(40):  # bracket: rate(lo) < target <= rate(hi)
        if above:
            lo = lo / 2.0
            if rate(radius=lo) < target:
                break
            hi = lo
        else:
            hi = hi * 2.0
            if rate(radius=hi) >= target:
                break
            lo = hi
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if rate(radius=mid) >= target else (mid, hi)
    return float(math.sqrt(lo * hi))


# ------------------------------------------------------------------------ masked LM


def perturbable(input_ids: Array, attention_mask: Array, special_ids: Array) -> Array:
    """bool [..., L]: True where a token may change (not special, not padding)."""
    return ~special_or_pad_mask(input_ids, attention_mask, special_ids)


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
    out = _broadcast(center_input, draw.k)
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
