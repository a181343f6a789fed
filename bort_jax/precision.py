"""Mixed precision: the computation dtype of a training run, from its config's `dtype` field.

    "float32"   everything in float32 (the reference numerics);
    "bfloat16"  activations and matmuls in bfloat16 (`Bert(dtype=jnp.bfloat16)`);
    "auto"      bfloat16 on an accelerator (TPU, GPU), float32 on CPU (XLA:CPU has no fast
                bfloat16 matmul: it would be slower there, not faster).

Only the computation dtype changes. Parameters are stored in float32 (`Bert.param_dtype`
stays float32 and the model casts them per op), so gradients, the optimizer state (the
AdamW moments follow the parameters) and checkpoints stay float32: the classic "fp32 master
weights" scheme, with no loss scaling needed (bfloat16 has float32's exponent range).
The numerically delicate parts run in float32 whatever the dtype: the attention logits are
accumulated in float32 and softmaxed in float32, the MLM and classifier logits are cast to
float32 before they leave the model, LayerNorm statistics are float32 (Flax), and every loss
(`bort_jax.losses`, the fine-tuning cross-entropy / MSE) upcasts its inputs first, so losses
and metrics are float32 scalars.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bort_jax.config import ConfigError

DTYPES = ("bfloat16", "float32", "auto")
ACCELERATORS = ("tpu", "gpu", "cuda", "rocm")  # `jax.default_backend()` names → bfloat16


def check_dtype(name: object, field: str = "config.dtype") -> str:
    """`name` if it is one of DTYPES, else a one-line ConfigError (a ValueError) naming
    `field`."""
    if not isinstance(name, str) or name not in DTYPES:
        raise ConfigError(f"{field}={name!r}: use one of {', '.join(DTYPES)}")
    return name


def compute_dtype(name: str, field: str = "config.dtype", backend: str | None = None) -> jnp.dtype:
    """The computation dtype for a config's `dtype` field (see the module docstring).

    "auto" looks at `backend` (default: `jax.default_backend()`, i.e. where the run computes).
    A value outside DTYPES raises ConfigError (a ValueError) naming `field`.
    """
    check_dtype(name, field)
    if name == "auto":
        backend = (backend or jax.default_backend()).lower()
        name = "bfloat16" if backend in ACCELERATORS else "float32"
    return jnp.dtype(name)
