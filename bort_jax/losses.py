"""Pretraining losses for Bort: masked-LM cross-entropy and knowledge-distillation terms.

Bort (de Wynter & Perry, 2020) is pretrained with 0.1 * MLM-CE + 0.5 * T^2 * KD, T = 2,
distilling RoBERTa-large's MLM distribution at the masked positions. ``logit_kd`` is the
textbook KL (Hinton et al., 2015); ``bort_kd_legacy`` reproduces the released MXNet code
bit for bit (double softmax, division by V; see docs/papers.md, pitfall P6). ``hidden_kd`` and
``attention_kd`` are the intermediate-layer terms of TinyBERT (Jiao et al., 2020) and
MiniLM (Wang et al., 2020), offered as options.

All functions are pure ``jnp`` code, safe under ``jit``/``grad``, and compute in float32
whatever the input dtype. Teacher inputs pass through ``stop_gradient``.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array

# Weights of the released Bort pretraining script (run_pretraining_distillation.sh).
BORT_LOSS_WEIGHTS = {"mlm": 0.1, "kd": 0.5}
BORT_TEMPERATURE = 2.0
_NEG = -1e30  # Logit for masked-out attention keys: exp underflows to exactly 0.


def _f32(x: Array) -> Array:
    return jnp.asarray(x, jnp.float32)


def weighted_mean(values: Array, weights: Array) -> Array:
    """sum(w * x) / max(sum(w), 1). values, weights: same shape. Returns a scalar."""
    weights = _f32(weights)
    return jnp.sum(weights * _f32(values)) / jnp.maximum(jnp.sum(weights), 1.0)


def mlm_cross_entropy(logits: Array, ids: Array, weights: Array) -> Array:
    """Masked-LM cross-entropy averaged over the weighted positions.

        CE_bp = logsumexp_v(z_bpv) - z_bp[y_bp]
        loss  = sum_bp w_bp CE_bp / max(sum_bp w_bp, 1)

    Args:
      logits: z [B, P, V] at the predicted positions.
      ids: y int [B, P] target ids.
      weights: w [B, P], 1 for real predictions and 0 for padding slots.
    Returns:
      scalar float32.
    """
    logits = _f32(logits)
    target = jnp.take_along_axis(logits, ids[..., None].astype(jnp.int32), axis=-1)[..., 0]
    ce = jax.nn.logsumexp(logits, axis=-1) - target
    return weighted_mean(ce, weights)


def mlm_accuracy(logits: Array, ids: Array, weights: Array) -> Array:
    """sum_bp w_bp [argmax_v z_bpv = y_bp] / max(sum w, 1). Shapes as ``mlm_cross_entropy``."""
    correct = jnp.argmax(logits, axis=-1) == ids
    return weighted_mean(correct, weights)


def logit_kd(
    student_logits: Array, teacher_logits: Array, weights: Array, temperature: float = 1.0
) -> Array:
    """Temperature-scaled KL(teacher || student) averaged over weighted positions.

        q = softmax(t / T),  p = softmax(s / T)
        KL_bp = sum_v q_v (log q_v - log p_v)
        loss  = T^2 * sum_bp w_bp KL_bp / max(sum_bp w_bp, 1)

    The T^2 factor keeps gradient magnitudes comparable across temperatures (Hinton et al.,
    2015). Zero iff student and teacher distributions agree.

    Args:
      student_logits: s [B, P, V].
      teacher_logits: t [B, P, V] (gradient stopped).
      weights: w [B, P].
      temperature: T > 0.
    Returns:
      scalar float32.
    """
    t = jax.lax.stop_gradient(_f32(teacher_logits)) / temperature
    s = _f32(student_logits) / temperature
    log_q = jax.nn.log_softmax(t, axis=-1)
    log_p = jax.nn.log_softmax(s, axis=-1)
    kl = jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1)
    return temperature**2 * weighted_mean(kl, weights)


def topk_teacher(teacher_logits: Array, k: int, temperature: float = 1.0) -> dict[str, Array]:
    """What the teacher cache stores for top-k logit KD, per position.

        K     = the k largest teacher logits t_v (ids),      values = t_K
        rest  = log sum_{v not in K} softmax(t / T)_v         (-inf when k = V)

    computed as logsumexp over the complement minus logsumexp over all classes (no 1 - sum
    cancellation).

    Args:
      teacher_logits: t [..., V].
      k: 1 <= k <= V.
      temperature: T > 0 (the rest mass depends on it).
    Returns:
      {'values': [..., k] float32, 'ids': [..., k] int32, 'rest': [...] float32}.
    """
    t = _f32(teacher_logits)
    values, ids = jax.lax.top_k(t, k)
    scaled = t / temperature
    flat = scaled.reshape(-1, scaled.shape[-1])
    rows = jnp.arange(flat.shape[0])[:, None]
    kept = jnp.zeros(flat.shape, bool).at[rows, ids.reshape(-1, k)].set(True)
    rest_lse = jax.nn.logsumexp(jnp.where(kept, -jnp.inf, flat), axis=-1)
    rest = rest_lse - jax.nn.logsumexp(flat, axis=-1)
    return {"values": values, "ids": ids.astype(jnp.int32), "rest": rest.reshape(t.shape[:-1])}


def logit_kd_topk(
    student_logits: Array,
    teacher_values: Array,
    teacher_ids: Array,
    teacher_rest: Array,
    weights: Array,
    temperature: float = 1.0,
) -> Array:
    """``logit_kd`` from the teacher's top-k logits plus one "rest" bucket.

    The teacher distribution q = softmax(t / T) is known on the k kept classes K (logits t_K)
    and through r = log q(rest) = log sum_{v not in K} q_v. Its log-partition follows from
    sum_K q_j = 1 - e^r:

        log q_j    = t_j / T - logsumexp_K(t / T) + log(1 - e^r)      (j in K)
        log p_j    = s_j / T - logsumexp_V(s / T)
        log p_rest = logsumexp_{v not in K}(s_v / T) - logsumexp_V(s / T)
        KL_bp      = sum_{j in K} q_j (log q_j - log p_j) + e^r (r - log p_rest)
        loss       = T^2 * sum_bp w_bp KL_bp / max(sum_bp w_bp, 1)

    i.e. the KL between the two distributions coarsened to K + {rest}. By the chain rule of KL,
    the full KL = this + q(rest) * KL(q | rest || p | rest) >= this: the error is
    q(rest) times the KL restricted to the dropped classes (0 when k = V).

    Args:
      student_logits: s [B, P, V].
      teacher_values: t_K [B, P, k] (gradient stopped).
      teacher_ids: int [B, P, k], distinct class ids of t_K.
      teacher_rest: r [B, P], log teacher mass outside K at temperature T (-inf if none).
      weights: w [B, P].
      temperature: T > 0, the one `teacher_rest` was computed at.
    Returns:
      scalar float32.
    """
    t = jax.lax.stop_gradient(_f32(teacher_values)) / temperature
    r = jax.lax.stop_gradient(_f32(teacher_rest))
    s = _f32(student_logits) / temperature
    ids = teacher_ids.astype(jnp.int32)
    has_rest = r > _NEG
    r_safe = jnp.where(has_rest, r, 0.0)
    log1m = jnp.where(has_rest, jnp.log1p(-jnp.exp(r_safe)), 0.0)  # log(1 - e^r)
    log_q = t - jax.nn.logsumexp(t, axis=-1, keepdims=True) + log1m[..., None]
    lse_s = jax.nn.logsumexp(s, axis=-1)
    log_p = jnp.take_along_axis(s, ids, axis=-1) - lse_s[..., None]
    flat = s.reshape(-1, s.shape[-1])
    rows = jnp.arange(flat.shape[0])[:, None]
    rest_s = flat.at[rows, ids.reshape(flat.shape[0], -1)].set(_NEG)
    log_p_rest = jax.nn.logsumexp(rest_s, axis=-1).reshape(lse_s.shape) - lse_s
    kept = jnp.sum(jnp.exp(log_q) * (log_q - log_p), axis=-1)
    rest = jnp.where(has_rest, jnp.exp(r_safe) * (r_safe - log_p_rest), 0.0)
    return temperature**2 * weighted_mean(kept + rest, weights)


def bort_kd_legacy(
    student_logits: Array,
    teacher_logits: Array,
    weights: Array,
    temperature: float = BORT_TEMPERATURE,
) -> Array:
    """The KD term exactly as the released MXNet Bort code computes it (quirks included).

    ``forward`` in utils/pretraining_distillation_utils.py feeds probabilities, not logits,
    to ``gluon.loss.KLDivLoss(from_logits=False)``, which applies log_softmax again and then
    averages over the vocabulary axis:

        p = softmax(s / T),  q = softmax(t / T)             (probabilities, [B, P, V])
        l_bp = (1 / V) * sum_v q_v (log(q_v + 1e-12) - log_softmax(p)_v)
        loss = T^2 * sum_bp w_bp l_bp / (sum_bp w_bp + 1e-8)

    i.e. a double softmax (log_softmax(p)_v = p_v - log sum_u exp(p_u)) and a division by V.
    The value is not a KL divergence: it is not 0 when s = t, and its gradient is orders of
    magnitude smaller than ``logit_kd``'s (the 1/V factor, and the second softmax flattens
    it further). Use only to reproduce the released KD:MLM balance.

    Args:
      student_logits: s [B, P, V].
      teacher_logits: t [B, P, V] (gradient stopped).
      weights: w [B, P].
      temperature: T (Bort's script: 2.0).
    Returns:
      scalar float32.
    """
    vocab = student_logits.shape[-1]
    q = jax.nn.softmax(jax.lax.stop_gradient(_f32(teacher_logits)) / temperature, axis=-1)
    p = jax.nn.softmax(_f32(student_logits) / temperature, axis=-1)
    per_token = jnp.sum(q * (jnp.log(q + 1e-12) - jax.nn.log_softmax(p, axis=-1)), axis=-1) / vocab
    weights = _f32(weights)
    return temperature**2 * jnp.sum(weights * per_token) / (jnp.sum(weights) + 1e-8)


def hidden_kd(
    student_hidden: Array, teacher_hidden: Array, mask: Array, projection: Array | None = None
) -> Array:
    """Mean squared error between hidden states over real tokens and features.

        h'_bl = h^S_bl W      (W = projection [Hs, Ht]; identity when None)
        loss  = sum_bl m_bl ||h'_bl - h^T_bl||^2 / (max(sum_bl m_bl, 1) * Ht)

    TinyBERT's hidden-state loss (Jiao et al., 2020) with padding excluded. W is a trainable
    student parameter when widths differ.

    Args:
      student_hidden: h^S [B, L, Hs].
      teacher_hidden: h^T [B, L, Ht] (gradient stopped).
      mask: m [B, L], 1 for real tokens.
      projection: W [Hs, Ht] or None (then Hs must equal Ht).
    Returns:
      scalar float32.
    """
    student = _f32(student_hidden)
    teacher = jax.lax.stop_gradient(_f32(teacher_hidden))
    if projection is not None:
        student = student @ _f32(projection)
    if student.shape[-1] != teacher.shape[-1]:
        raise ValueError(
            f"hidden widths differ (student {student.shape[-1]}, teacher "
            f"{teacher.shape[-1]}); pass a projection kernel [Hs, Ht]"
        )
    squared = jnp.sum(jnp.square(student - teacher), axis=-1)
    return weighted_mean(squared, mask) / teacher.shape[-1]


def layer_map(student_depth: int, teacher_depth: int, mode: str = "uniform") -> tuple[int, ...]:
    """Teacher hidden-state index matched to each student hidden-state index 0..Ds.

    Hidden-state index 0 is the embedding output, k the output of layer k; 0 <-> 0 always.
      'uniform': student k <-> teacher round(k * Dt / Ds) (half-up), so Ds <-> Dt
                 (TinyBERT's g(m) = m * N / M when Ds divides Dt).
      'last':    student k <-> teacher Dt - Ds + k for k >= 1 (the top Ds teacher layers;
                 needs Ds <= Dt).
    Returns:
      tuple of Ds + 1 teacher indices; entry k belongs to student index k.
    """
    if student_depth < 1 or teacher_depth < 1:
        raise ValueError(f"depths must be >= 1, got {student_depth}, {teacher_depth}")
    if mode == "uniform":
        return tuple(
            math.floor(k * teacher_depth / student_depth + 0.5) for k in range(student_depth + 1)
        )
    if mode == "last":
        if student_depth > teacher_depth:
            raise ValueError(
                f"mode 'last' needs student depth {student_depth} <= teacher depth {teacher_depth}"
            )
        offset = teacher_depth - student_depth
        return (0,) + tuple(offset + k for k in range(1, student_depth + 1))
    raise ValueError(f"unknown layer_map mode {mode!r}; use 'uniform' or 'last'")


def _attention_log_probs(logits: Array, key_mask: Array) -> Array:
    """log softmax over keys of [B, H, L, L] scores, padded keys (mask [B, L] = 0) removed."""
    logits = jnp.where(key_mask[:, None, None, :] > 0, _f32(logits), _NEG)
    return jax.nn.log_softmax(logits, axis=-1)


def _group_heads(log_probs: Array, groups: int) -> Array:
    """Averages attention distributions over consecutive head groups.

    [B, H, L, L] -> [B, groups, L, L] with a_g = mean_{h in group g} a_h (still a
    distribution); returns its log (floored at 1e-30 where a_g = 0, i.e. padded keys).
    """
    b, heads, lq, lk = log_probs.shape
    if groups == heads:
        return log_probs
    probs = jnp.exp(log_probs).reshape(b, groups, heads // groups, lq, lk).mean(axis=2)
    return jnp.log(jnp.maximum(probs, 1e-30))


def attention_kd(student_logits: Array, teacher_logits: Array, mask: Array) -> Array:
    """KL(teacher || student) between self-attention distributions over real tokens.

        a^X_bhq = softmax_k(scores^X_bhq + pad bias)       (padded keys get probability 0)
        KL_bhq  = sum_{k: m_bk = 1} a^T_bhqk (log a^T_bhqk - log a^S_bhqk)
        loss    = sum_bhq m_bq KL_bhq / (H' * max(sum_bq m_bq, 1))

    MiniLM's attention-distribution transfer (Wang et al., 2020), padded queries and keys
    ignored. Head matching, H' heads compared:
      A == At:           head h <-> head h;
      one divides other: the model with more heads has its distributions averaged over
                         consecutive groups of (more // fewer) heads, H' = fewer;
      otherwise:         both are averaged over all heads, H' = 1.
    Averaging probabilities (not logits) keeps each group a proper distribution.

    Args:
      student_logits: pre-softmax scores [B, A, L, L] (query axis 2, key axis 3).
      teacher_logits: pre-softmax scores [B, At, L, L] (gradient stopped).
      mask: m [B, L], 1 for real tokens.
    Returns:
      scalar float32.
    """
    mask = _f32(mask)
    log_s = _attention_log_probs(student_logits, mask)
    log_t = _attention_log_probs(jax.lax.stop_gradient(teacher_logits), mask)
    a_s, a_t = log_s.shape[1], log_t.shape[1]
    heads = min(a_s, a_t) if max(a_s, a_t) % min(a_s, a_t) == 0 else 1
    log_s, log_t = _group_heads(log_s, heads), _group_heads(log_t, heads)
    terms = jnp.exp(log_t) * (log_t - log_s)
    kl = jnp.sum(jnp.where(mask[:, None, None, :] > 0, terms, 0.0), axis=-1)  # [B, H', L]
    weighted = jnp.sum(mask[:, None, :] * kl)
    return weighted / (heads * jnp.maximum(jnp.sum(mask), 1.0))


def kd_objective(
    weights: Mapping[str, float], terms: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
    """Weighted sum of loss terms: total = sum_k weights[k] * terms[k].

    Terms without a weight are returned for logging but not summed (as the released code
    logs its MSE term). Example: ``kd_objective(BORT_LOSS_WEIGHTS, {'mlm': ce, 'kd': kd})``.

    Args:
      weights: name -> coefficient; every name must be in ``terms``.
      terms: name -> scalar.
    Returns:
      (total scalar, dict of every term plus 'total').
    """
    missing = sorted(set(weights) - set(terms))
    if missing:
        raise ValueError(
            f"loss weights given for missing terms {missing}; terms are {sorted(terms)}"
        )
    total = sum(weight * _f32(terms[name]) for name, weight in weights.items())
    total = jnp.asarray(total, jnp.float32)
    return total, {**{name: _f32(value) for name, value in terms.items()}, "total": total}
