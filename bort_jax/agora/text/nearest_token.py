"""Nearest-token decoding of perturbed token embeddings (the decode_fn of
`sampling.sample_and_relabel` over token embeddings [L, E]), and the share of tokens it changes
at a radius (`token_change_rate`, `radius_for_change_rate`; docs/agora.md):

    id_l = argmin_{v allowed} ||s_l - T_v||^2 = argmax_v (2 s_l . T_v - ||T_v||^2),

keeping special tokens and padding.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from bort_jax.agora.config import AgoraConfig
from bort_jax.agora.sampling import mean_nn_distance, reference_atoms, sample_and_relabel
from bort_jax.agora.text.tokens import Array, Inputs, special_or_pad_mask, text_perturb_mask


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
        cfg.with_radius(radius),
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
