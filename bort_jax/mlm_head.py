"""A masked-LM head fitted once on a frozen encoder (for sources without one, e.g. MiniLM).

all-MiniLM-L6-v2 ships no MLM head, so a student sliced from it starts with a random head and
its masked-LM cross-entropy after a short proxy run measures how far that fresh head got, not
the encoder (docs/error_signal.md). `fit_mlm_head` fits BERT's head on the frozen encoder's
output at the masked positions of static-masked rows,

    z = LN(act(h W + b)) Eᵀ + c        h = encoder output [M, H], E = word embeddings [V, H]
    min_{W, b, LN, c}  mean_m CE(z_m, y_m) + weight decay,

(E stays frozen: it is tied to the input embeddings), with AdamW at a constant learning rate
over minibatches of masked positions, through the one training loop `train.train`. The
encoder runs once (features cached in memory), so a fit costs one forward pass plus
`num_steps` small head steps. `with_head` returns the checkpoint with the fitted head, which
`slice_params` then cuts down to any sub-architecture like the rest of the weights.

The result is cached on disk under `cache_dir` by a content key (the checkpoint's weights, the
rows and `HeadConfig`), and in memory for the process, so a search that scores many candidates
fits once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from bort_jax import files, hf, losses, train
from bort_jax.data import batching
from bort_jax.models.bert import INIT_STD, Bert, activation_fn

HEAD_KEYS = ("mlm_transform", "mlm_norm", "mlm_bias")
_MEMO: dict[str, dict] = {}


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Fitting the head (hyperparameters; part of the cache key)."""

    num_steps: int = 100
    batch_size: int = 128  # masked positions per step
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self):
        for name in ("num_steps", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"head.{name} must be positive, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"head.learning_rate must be > 0, got {self.learning_rate}")


def masked_features(
    checkpoint: hf.Checkpoint, arrays: Mapping[str, np.ndarray], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """The frozen encoder's output at every real masked position.

    arrays: static-masked rows (`distill.static_mask`): input_ids/attention_mask/token_type_ids
    [N, L], mlm_positions/mlm_ids/mlm_weights [N, P]. Returns h [M, H] float32 and the target
    ids y [M] int32, M = number of positions with weight > 0 (row-major order).
    """
    for key in ("input_ids", "attention_mask", "token_type_ids", "mlm_positions", "mlm_ids"):
        if key not in arrays:
            raise ValueError(f"masked_features: arrays lack {key!r}")
    model = Bert(checkpoint.arch, dataclasses.replace(checkpoint.spec, pooler=False))
    enc = {k: v for k, v in checkpoint.params.items() if k not in HEAD_KEYS + ("pooler",)}

    @jax.jit
    def run(params, ids, mask, types, pos):
        x = model.apply({"params": params}, ids, mask, types)["last_hidden_state"]
        return jnp.take_along_axis(x, pos[..., None].astype(jnp.int32), axis=1)

    n = arrays["input_ids"].shape[0]
    feats = []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        idx_p = np.concatenate([idx, np.full(batch_size - len(idx), idx[-1])])  # one shape
        out = run(enc, *(np.asarray(arrays[k])[idx_p] for k in _ENC_KEYS))
        feats.append(np.asarray(out)[: len(idx)])
    h = np.concatenate(feats).astype(np.float32)  # [N, P, H]
    w = np.asarray(arrays["mlm_weights"]) > 0
    return h[w], np.asarray(arrays["mlm_ids"])[w].astype(np.int32)


_ENC_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mlm_positions")


def head_logits(head: Mapping, embedding: jax.Array, h: jax.Array, spec) -> jax.Array:
    """BERT's MLM head on features h [M, H] → logits [M, V] (as `models.bert.Bert`)."""
    t = h @ head["mlm_transform"]["kernel"] + head["mlm_transform"]["bias"]
    t = activation_fn(spec.activation)(t)
    mu = t.mean(-1, keepdims=True)
    var = jnp.square(t - mu).mean(-1, keepdims=True)
    t = (t - mu) * jax.lax.rsqrt(var + spec.layer_norm_eps)
    t = t * head["mlm_norm"]["scale"] + head["mlm_norm"]["bias"]
    return t @ embedding.T + head["mlm_bias"]


def init_head(hidden: int, vocab: int, seed: int) -> dict:
    """BERT's initialisation: N(0, 0.02) transform, zero biases, unit LN scale."""
    k = jax.random.normal(jax.random.PRNGKey(seed), (hidden, hidden), jnp.float32) * INIT_STD
    return {
        "mlm_transform": {"kernel": k, "bias": jnp.zeros((hidden,), jnp.float32)},
        "mlm_norm": {"scale": jnp.ones((hidden,), jnp.float32), "bias": jnp.zeros((hidden,))},
        "mlm_bias": jnp.zeros((vocab,), jnp.float32),
    }


def head_key(checkpoint: hf.Checkpoint, arrays: Mapping[str, np.ndarray], cfg: HeadConfig) -> str:
    """Content key: the encoder's weights, the masked rows and the fit's hyperparameters."""
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_leaves_with_path(checkpoint.params)
    for path, leaf in sorted(leaves, key=lambda x: jax.tree_util.keystr(x[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    for k in sorted(arrays):
        a = np.ascontiguousarray(np.asarray(arrays[k]))
        h.update(f"{k}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(repr((dataclasses.asdict(cfg), checkpoint.spec)).encode())
    return h.hexdigest()[:24]


@functools.lru_cache(maxsize=8)
def head_loss_fn(spec) -> train.LossFn:
    """`loss_fn(head, batch, rng) -> (CE, {})` for `train.train`: the mean cross-entropy of
    `head_logits(head, batch['embedding'], batch['h'])` [B, V] against the targets batch['y']
    [B]. The frozen embedding [V, H] comes in as a `train.train` constant (an argument of the
    compiled step, not a literal in it); one function per spec, so fits share their step."""

    def loss_fn(head, batch, rng):
        del rng  # deterministic: no dropout in the head
        y = batch["y"]
        z = head_logits(head, batch["embedding"], batch["h"], spec)
        return losses.mlm_cross_entropy(z[None], y[None], jnp.ones_like(y, jnp.float32)[None]), {}

    return loss_fn


def head_optim(cfg: HeadConfig) -> train.OptimConfig:
    """AdamW at a constant `cfg.learning_rate` (optax's b1, b2, eps), no clipping; weight decay
    on the transform kernel only (`train.decay_mask`: not on biases or the LayerNorm)."""
    return train.OptimConfig(
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        schedule="constant",
        eps=1e-8,
        clip_norm=None,
    )


def fit_mlm_head(
    checkpoint: hf.Checkpoint,
    arrays: Mapping[str, np.ndarray],
    cfg: HeadConfig = HeadConfig(),
    cache_dir: str | None = None,
) -> dict:
    """Fit the MLM head on `checkpoint`'s frozen encoder over the masked rows `arrays`.

    Returns {'mlm_transform': {kernel [H, H], bias [H]}, 'mlm_norm': {scale, bias} [H],
    'mlm_bias' [V]} as numpy float32. Deterministic for a given `cfg.seed`; cached in memory
    and, with `cache_dir`, in `cache_dir/mlm_head_<key>.npz`.
    """
    key = head_key(checkpoint, {k: arrays[k] for k in _ENC_KEYS + ("mlm_ids", "mlm_weights")}, cfg)
    if key in _MEMO:
        return _MEMO[key]
    path = Path(cache_dir) / f"mlm_head_{key}.npz" if cache_dir else None
    if path is not None and path.is_file():
        try:
            head = _read_head(path)
            _MEMO[key] = head
            return head
        except (OSError, ValueError, KeyError):
            pass  # unreadable entry: refit and overwrite
    h, y = masked_features(checkpoint, arrays)
    if len(y) == 0:
        raise ValueError("fit_mlm_head: the rows have no masked positions (mlm_weights all 0)")
    emb = checkpoint.params["embeddings"]["word_embeddings"]["embedding"]
    head = init_head(checkpoint.arch.hidden, checkpoint.spec.vocab_size, cfg.seed)
    result = train.train(
        head_loss_fn(checkpoint.spec),
        head,
        batching.epoch_batches({"h": h, "y": y}, min(cfg.batch_size, len(y)), cfg.seed),
        train.LoopConfig(num_steps=cfg.num_steps, seed=cfg.seed, log_every=cfg.num_steps),
        head_optim(cfg),
        constants={"embedding": np.asarray(emb, np.float32)},
    )
    head = result.state.params
    head = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), head)
    if path is not None:
        buf = io.BytesIO()
        np.savez(buf, **hf.flatten(head))
        files.atomic_write_bytes(path, buf.getvalue())
    _MEMO[key] = head
    return head


def with_head(checkpoint: hf.Checkpoint, head: Mapping) -> hf.Checkpoint:
    """`checkpoint` with `head` as its MLM head (shapes checked against its width/vocabulary)."""
    hsz, v = checkpoint.arch.hidden, checkpoint.spec.vocab_size
    want = {
        "mlm_transform/kernel": (hsz, hsz),
        "mlm_transform/bias": (hsz,),
        "mlm_norm/scale": (hsz,),
        "mlm_norm/bias": (hsz,),
        "mlm_bias": (v,),
    }
    flat = {k: np.asarray(v) for k, v in hf.flatten(head).items()}
    for name, shape in want.items():
        if name not in flat or tuple(flat[name].shape) != shape:
            got = None if name not in flat else tuple(flat[name].shape)
            raise ValueError(f"MLM head entry {name}: expected shape {shape}, got {got}")
    params = {**checkpoint.params, **{k: head[k] for k in HEAD_KEYS}}
    return dataclasses.replace(checkpoint, params=params, has_mlm_head=True)


def _read_head(path: Path) -> dict:
    """A head written by `fit_mlm_head` (npz of `hf.flatten` names) as float32 arrays.

    Raises:
        KeyError: an entry of HEAD_KEYS is missing. OSError / ValueError: unreadable file.
    """
    with np.load(path) as npz:
        head = hf.unflatten({k: np.asarray(npz[k], np.float32) for k in npz.files})
    for k in HEAD_KEYS:
        if k not in head:
            raise KeyError(k)
    return head
