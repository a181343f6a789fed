"""Cost arithmetic of an extraction's proxy training, from shapes alone (no JAX work).

FLOPs of one proxy step, trained parameters of a KD student, activation bytes kept for the
backward pass, and the train / held-out split sizes; the formulas are those of the `bort_jax.plan`
docstring.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from bort_jax import arch as A
from bort_jax import distill

TEACHER_CHUNK = 32  # rows per teacher-pass chunk (`distill.teacher_outputs`' batch_size)
HEADER_BYTES = 4096  # allowance per cache file (.npy header, meta.json)
MASK_PROB = 0.15  # `distill.static_mask`


def n_split(n: int, heldout_fraction: float) -> tuple[int, int]:
    """(train rows, held-out rows) exactly as `text.split_train_heldout`."""
    k = int(np.floor(heldout_fraction * n + 0.5))
    if heldout_fraction > 0:
        k = max(k, 1)
    return n - k, k


def step_flops(
    arch: A.Arch,
    spec: A.Spec,
    batch: int,
    seq_len: int,
    slots: int,
    teacher_hidden: int | None = None,
) -> int:
    """Training FLOPs of one KD student step, fwd + bwd ≈ 3 × forward matmul FLOPs.

    3 × (encoder matmuls (no pooler: `distill.student_spec`) + MLM head at `slots` positions
    + with `teacher_hidden` = H_t ≠ H_s, the D+1 hidden-KD projections H_s → H_t,
    2·B·L·H_s·H_t each). The plan leaves the projections out (`teacher_hidden=None`).
    """
    h = arch.hidden
    fwd = A.flops(arch, seq_len, batch, dataclasses.replace(spec, pooler=False))
    fwd += batch * 2 * slots * (h * h + h * spec.vocab_size)
    if teacher_hidden is not None and h != teacher_hidden:
        fwd += (arch.depth + 1) * 2 * batch * seq_len * h * teacher_hidden
    return 3 * fwd


def student_params(arch: A.Arch, spec: A.Spec, teacher_hidden: int) -> int:
    """Trained parameters of a KD student: encoder + MLM head (+ [H_s, H_t] projections)."""
    n = A.param_count(arch, distill.student_spec(spec), mlm_head=True)["total"]
    if arch.hidden != teacher_hidden:
        n += (arch.depth + 1) * arch.hidden * teacher_hidden
    return n


def activation_bytes(
    arch: A.Arch,
    vocab: int,
    batch: int,
    seq_len: int,
    slots: int,
    full_logits: bool,
    dtype: Any = "float32",
) -> int:
    """c·B·L·[D·(10H + 2I) + 4H] + 4·B·L·D·2A·L + 4·B·P·V·(3 if full-logit KD else 2).

    c = the computation dtype's bytes (4 float32, 2 bfloat16) for the hidden and FFN
    activations; the attention logits / probabilities, the MLM logits and the losses are
    float32 whatever the dtype (`bort_jax.precision`)."""
    c = jnp.dtype(dtype).itemsize
    d, a, h, i = arch.depth, arch.heads, arch.hidden, arch.intermediate
    per_token = c * (d * (10 * h + 2 * i) + 4 * h) + 4 * d * 2 * a * seq_len
    return batch * seq_len * per_token + 4 * batch * slots * vocab * (3 if full_logits else 2)
