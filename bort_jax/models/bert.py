"""A BERT-style encoder built from an `Arch` ⟨D, A, H, I⟩ (Devlin et al. 2019; Bort,
arXiv 2010.10499).

Post-LN transformer encoder: embeddings (word + position + token type, LayerNorm), D layers of
multi-head self-attention (A heads) and a GELU feed-forward of width I, an optional tanh pooler,
an MLM head tied to the word embeddings, and a classification/regression head.

Everything is pure-functional Flax linen: `init`/`apply`, dropout only with a 'dropout' rng,
`dtype` (computation) and `param_dtype` (storage) fields. Kernels carry logical axis names
('vocab', 'embed', 'heads', 'mlp') so a mesh can shard them without touching this file
(`nn.get_partition_spec` on the boxed tree from `model.init`).

Layer layouts: by default the D layers are unrolled submodules 'layer_0' … 'layer_{D-1}' (the
canonical parameter layout: HF import/export, `slice_params`, checkpoints).
`Bert(scan_layers=True)` runs them through `nn.scan` (one compiled layer body, so compile time
does not grow with D) with parameters stacked under 'layers' (leading [D] axis, logical name
'layers'); `stack_layers` / `unstack_layers` convert exactly between the two.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bort_jax.arch import Arch, Spec

HEAD_KEYS = ("classifier", "head_pooler")  # the fine-tuning head's subtrees

Dtype = Any
INIT_STD = 0.02


def _dense_init(axes: tuple[str, str]):
    return nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), axes)


def _bias_init(axes: tuple[str]):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def activation_fn(name: str):
    """HF's names: 'gelu' is the exact erf GELU; 'gelu_new'/'gelu_fast' the tanh form."""
    if name == "gelu":
        return lambda x: nn.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_fast"):
        return lambda x: nn.gelu(x, approximate=True)
    return {"relu": nn.relu, "tanh": jnp.tanh}[name]


def _layer_norm(spec: Spec, dtype: Dtype, param_dtype: Dtype, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=spec.layer_norm_eps,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
        bias_init=_bias_init(("embed",)),
        name=name,
    )


def _dense(
    features: int, axes: tuple[str, str], dtype: Dtype, param_dtype: Dtype, name: str
) -> nn.Dense:
    return nn.Dense(
        features,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=_dense_init(axes),
        bias_init=_bias_init((axes[1],)),
        name=name,
    )


def position_ids(input_ids: jax.Array, spec: Spec) -> jax.Array:
    """BERT: 0..L-1. RoBERTa (`position_offset > 0`): pad_id+1, pad_id+2, … skipping padding."""
    batch, length = input_ids.shape
    if spec.position_offset == 0:
        return jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
    not_pad = (input_ids != spec.pad_token_id).astype(jnp.int32)
    return jnp.cumsum(not_pad, axis=1) * not_pad + spec.pad_token_id


class Embeddings(nn.Module):
    """word + position + token-type embeddings, LayerNorm, dropout. [B, L] ids → [B, L, H]."""

    arch: Arch
    spec: Spec
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    dropout_rate: float = 0.1

    def setup(self):
        h = self.arch.hidden
        emb_init = lambda axes: nn.with_logical_partitioning(  # noqa: E731
            nn.initializers.normal(INIT_STD), axes
        )
        self.word_embeddings = nn.Embed(
            self.spec.vocab_size,
            h,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=emb_init(("vocab", "embed")),
        )
        self.position_embeddings = nn.Embed(
            self.spec.max_positions,
            h,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=emb_init((None, "embed")),
        )
        if self.spec.type_vocab_size:
            self.token_type_embeddings = nn.Embed(
                self.spec.type_vocab_size,
                h,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                embedding_init=emb_init((None, "embed")),
            )
        self.LayerNorm = _layer_norm(self.spec, self.dtype, self.param_dtype, "LayerNorm")
        self.dropout = nn.Dropout(self.dropout_rate)

    def __call__(
        self, input_ids, token_type_ids, *, deterministic: bool, inputs_embeds=None
    ) -> jax.Array:
        words = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        x = words + self.position_embeddings(position_ids(input_ids, self.spec))
        if self.spec.type_vocab_size:
            x = x + self.token_type_embeddings(token_type_ids)
        x = self.LayerNorm(x)
        return self.dropout(x, deterministic=deterministic)

    def attend(self, x: jax.Array) -> jax.Array:
        """[..., H] → [..., V] logits against the (tied) word-embedding table."""
        return self.word_embeddings.attend(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention, Vaswani et al. Eq. 1: softmax(Q Kᵀ/√d_head + mask) V.

    Inputs: x [B, L, H], mask [B, L] (1 = token, 0 = padding; padded keys get −∞-like
    logits so they never receive weight). Returns ([B, L, H], logits [B, A, L, L]).
    """

    arch: Arch
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x, mask, *, deterministic: bool):
        a, h = self.arch.heads, self.arch.hidden
        d = self.arch.head_dim
        proj = lambda name: _dense(
            h,
            ("embed", "heads"),
            self.dtype,  # noqa: E731
            self.param_dtype,
            name,
        )
        # Heads-major [B, A, L, d] before both products: on XLA:CPU the 'bqhd' forms make the
        # second product emit a [B, A, d, L] result plus transposes (~5-8% slower end to end).
        split = lambda t: t.reshape(t.shape[:2] + (a, d)).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(proj(n)(x)) for n in ("query", "key", "value"))
        logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32) / np.sqrt(
            d
        ).astype(np.float32)
        keep = mask[:, None, None, :].astype(bool)
        logits = jnp.where(keep, logits, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        probs = nn.Dropout(self.dropout_rate)(probs, deterministic=deterministic)
        ctx = jnp.einsum("bhqk,bhkd->bhqd", probs, v)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(x.shape[:2] + (h,))
        out = _dense(h, ("heads", "embed"), self.dtype, self.param_dtype, "output")(ctx)
        return out, logits


class EncoderLayer(nn.Module):
    """x → LN(x + Attn(x)) → LN(· + W₂ act(W₁ ·)). [B, L, H] → ([B, L, H], logits [B, A, L, L])."""

    arch: Arch
    spec: Spec
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x, mask, *, deterministic: bool):
        return self.block(x, mask, deterministic)

    def block(
        self, x: jax.Array, mask: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        """The layer itself; called from a compact method (its submodules are defined here)."""
        drop = nn.Dropout(self.dropout_rate)
        attn, logits = SelfAttention(
            self.arch, self.dtype, self.param_dtype, self.attention_dropout_rate, name="attention"
        )(x, mask, deterministic=deterministic)
        x = _layer_norm(self.spec, self.dtype, self.param_dtype, "attention_norm")(
            x + drop(attn, deterministic=deterministic)
        )
        y = _dense(
            self.arch.intermediate, ("embed", "mlp"), self.dtype, self.param_dtype, "ffn_in"
        )(x)
        y = activation_fn(self.spec.activation)(y)
        y = _dense(self.arch.hidden, ("mlp", "embed"), self.dtype, self.param_dtype, "ffn_out")(y)
        x = _layer_norm(self.spec, self.dtype, self.param_dtype, "ffn_norm")(
            x + drop(y, deterministic=deterministic)
        )
        x = nn.with_logical_constraint(x, ("batch", "seq", "embed"))
        return x, logits


class ScanStep(EncoderLayer):
    """`EncoderLayer` as the body of `nn.scan` (the same submodules, so the same parameters).

    Call: `(x [B, L, H], mask [B, L], deterministic, keep_hidden, keep_logits)` →
    `(x' [B, L, H], (x' or None, logits [B, A, L, L] or None))`: the carry, and the per-layer
    outputs that `nn.scan` stacks along a leading [D] axis (None = not collected, so a plain
    forward pass keeps no [D, ...] buffers). The three flags are Python bools, broadcast to every
    step (and static under `nn.remat`).
    """

    @nn.compact
    def __call__(
        self, x, mask, deterministic: bool, keep_hidden: bool = False, keep_logits: bool = False
    ):
        x, logits = self.block(x, mask, deterministic)
        return x, (x if keep_hidden else None, logits if keep_logits else None)


def scanned_layers(bert: Bert) -> nn.Module:
    """The D encoder layers of `bert` as one `nn.scan` module named 'layers'.

    Parameters are those of one `EncoderLayer` with a leading [D] axis (logical axis name
    'layers', never sharded by the default rules); params and dropout rngs are split per layer.
    With `bert.remat` each step is rematerialised in the backward pass (`nn.remat`; activations
    of one layer instead of D are kept alive).
    """
    body = ScanStep
    if bert.remat:  # argnums count self as 0: deterministic, keep_hidden, keep_logits
        body = nn.remat(body, prevent_cse=False, static_argnums=(3, 4, 5))
    scan = nn.scan(
        body,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
        length=bert.arch.depth,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    return scan(
        bert.arch,
        bert.spec,
        dtype=bert.dtype,
        param_dtype=bert.param_dtype,
        dropout_rate=bert.dropout_rate,
        attention_dropout_rate=bert.attention_dropout_rate,
        name="layers",
    )


class Bert(nn.Module):
    """BERT encoder from an `Arch`, with optional pooler, MLM head and classifier.

    Call: `model.apply({'params': p}, input_ids [B, L], attention_mask [B, L],
    token_type_ids [B, L], deterministic=True)` → dict with
      'last_hidden_state' [B, L, H];
      'pooled' [B, H]                     if spec.pooler;
      'hidden_states' tuple of D+1 × [B, L, H] (0 = embeddings)   if output_hidden_states;
      'attention_logits' tuple of D × [B, A, L, L] (masked)        if output_attentions;
      'mlm_logits' [B, P, V]  (P = len(mlm_positions) or L)        if mlm_head;
      'logits' [B, num_labels]                                     if num_labels.

    `scan_layers=True` runs the D encoder layers through `nn.scan` (one compiled layer body,
    so compile time stays flat in D) with the same outputs; its parameters keep the layers
    stacked under 'layers' (each leaf [D, ...]) instead of 'layer_0' … 'layer_{D-1}':
    convert with `stack_layers` / `unstack_layers` (the unrolled layout is the canonical one:
    checkpoints, the HF loader, `slice_params`). `remat=True` (scanned only) recomputes each
    layer's activations in the backward pass. Dropout masks differ between the two layouts
    (per-layer rngs are split, not folded by layer name); deterministic outputs agree.
    """

    arch: Arch
    spec: Spec = Spec()
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    mlm_head: bool = False
    num_labels: int = 0
    scan_layers: bool = False
    remat: bool = False

    def setup(self):
        if self.remat and not self.scan_layers:
            raise ValueError("Bert(remat=True) needs scan_layers=True")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.embeddings = Embeddings(self.arch, self.spec, dropout_rate=self.dropout_rate, **kw)
        if self.scan_layers:
            self.layers = scanned_layers(self)
        else:
            self.layers = [
                EncoderLayer(
                    self.arch,
                    self.spec,
                    dropout_rate=self.dropout_rate,
                    attention_dropout_rate=self.attention_dropout_rate,
                    name=f"layer_{i}",
                    **kw,
                )
                for i in range(self.arch.depth)
            ]
        h = self.arch.hidden
        if self.spec.pooler:
            self.pooler = _dense(h, ("embed", "embed"), self.dtype, self.param_dtype, "pooler")
        if self.mlm_head:
            self.mlm_transform = _dense(
                h, ("embed", "embed"), self.dtype, self.param_dtype, "mlm_transform"
            )
            self.mlm_norm = _layer_norm(self.spec, self.dtype, self.param_dtype, "mlm_norm")
            self.mlm_bias = self.param(
                "mlm_bias", _bias_init(("vocab",)), (self.spec.vocab_size,), self.param_dtype
            )
        if self.num_labels:
            if not self.spec.pooler:  # a fresh tanh pooler, as the Bort fine-tuning head
                self.head_pooler = _dense(
                    h, ("embed", "embed"), self.dtype, self.param_dtype, "head_pooler"
                )
            self.classifier = _dense(
                self.num_labels, ("embed", None), self.dtype, self.param_dtype, "classifier"
            )
        self.dropout = nn.Dropout(self.dropout_rate)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        *,
        deterministic: bool = True,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        mlm_positions=None,
        inputs_embeds=None,
    ):
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [batch, seq], got shape {input_ids.shape}")
        if input_ids.shape[1] > self.spec.max_positions:
            raise ValueError(
                f"sequence length {input_ids.shape[1]} exceeds the model's "
                f"max_positions={self.spec.max_positions}"
            )
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = self.embeddings(
            input_ids, token_type_ids, deterministic=deterministic, inputs_embeds=inputs_embeds
        )
        hidden, logits = [x], []
        if self.scan_layers:
            x, (hs, ls) = self.layers(
                x, attention_mask, deterministic, output_hidden_states, output_attentions
            )
            hidden += [hs[i] for i in range(self.arch.depth)] if output_hidden_states else []
            logits += [ls[i] for i in range(self.arch.depth)] if output_attentions else []
        else:
            for layer in self.layers:
                x, attn_logits = layer(x, attention_mask, deterministic=deterministic)
                hidden.append(x)
                logits.append(attn_logits)
        out = {"last_hidden_state": x}
        if output_hidden_states:
            out["hidden_states"] = tuple(hidden)
        if output_attentions:
            out["attention_logits"] = tuple(logits)
        if self.spec.pooler:
            out["pooled"] = jnp.tanh(self.pooler(x[:, 0]))
        if self.mlm_head:
            y = (
                x
                if mlm_positions is None
                else jnp.take_along_axis(x, mlm_positions[..., None].astype(jnp.int32), axis=1)
            )
            y = self.mlm_norm(activation_fn(self.spec.activation)(self.mlm_transform(y)))
            out["mlm_logits"] = self.embeddings.attend(y).astype(
                jnp.float32
            ) + self.mlm_bias.astype(jnp.float32)
        if self.num_labels:
            pooled = out["pooled"] if self.spec.pooler else jnp.tanh(self.head_pooler(x[:, 0]))
            pooled = self.dropout(pooled, deterministic=deterministic)
            out["logits"] = self.classifier(pooled).astype(jnp.float32)
        return out


def init_params(model: Bert, rng: jax.Array, seq_len: int = 8) -> dict:
    """Random parameters (plain arrays, partitioning metadata removed)."""
    ids = jnp.zeros((1, seq_len), jnp.int32)
    variables = model.init(rng, ids, deterministic=True)
    return nn.meta.unbox(variables["params"])


def logical_axes(model: Bert, seq_len: int = 8):
    """Pytree of logical `PartitionSpec`s matching `init_params`, for a mesh to map."""
    ids = jnp.zeros((1, seq_len), jnp.int32)
    abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), ids))
    return nn.get_partition_spec(abstract)["params"]


# ------------------------------------------------------------------------ layer layouts


def stack_layers(params: Mapping[str, Any], depth: int) -> dict:
    """Unrolled → scanned layout: 'layer_0' … 'layer_{D-1}' → 'layers' (each leaf [D, ...]).

    `params` is a `Bert` parameter tree (plain arrays); the other subtrees are kept as they
    are. Exact (a stack, no arithmetic); `unstack_layers` inverts it.
    """
    names = [f"layer_{i}" for i in range(depth)]
    missing = [n for n in names if n not in params]
    extra = sorted(k for k in params if k.startswith("layer_") and k not in names)
    if missing or extra or "layers" in params:
        raise ValueError(
            f"stack_layers(depth={depth}): expected exactly {names[:1]} … "
            f"{names[-1:]} and no 'layers'; missing {missing}, extra {extra}, "
            f"'layers' present: {'layers' in params}"
        )
    out = {k: v for k, v in params.items() if k not in names}
    out["layers"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[params[n] for n in names])
    return out


def unstack_layers(params: Mapping[str, Any], depth: int) -> dict:
    """Scanned → unrolled layout: 'layers' (each leaf [D, ...]) → 'layer_0' … 'layer_{D-1}'."""
    if "layers" not in params:
        raise ValueError("unstack_layers: no 'layers' subtree (already unrolled?)")
    for leaf in jax.tree_util.tree_leaves(params["layers"]):
        if np.shape(leaf)[:1] != (depth,):
            raise ValueError(
                f"unstack_layers(depth={depth}): a leaf of 'layers' has shape {np.shape(leaf)}"
            )
    out = {k: v for k, v in params.items() if k != "layers"}
    for i in range(depth):
        out[f"layer_{i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], params["layers"])
    return out


# ----------------------------------------------------------------------------- slicing


def _take(x: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    return x[tuple(slice(0, s) for s in sizes)]


def slice_params_check(
    source: Arch, target: Arch, layer_map: Sequence[int] | None = None
) -> list[int]:
    """Validate that `target` can be sliced from `source`; returns the layer map."""
    layer_map = list(range(target.depth)) if layer_map is None else list(layer_map)
    if len(layer_map) != target.depth:
        raise ValueError(f"layer_map has {len(layer_map)} entries, target depth is {target.depth}")
    for name, t, s in (
        ("depth", target.depth, source.depth),
        ("heads", target.heads, source.heads),
        ("hidden", target.hidden, source.hidden),
        ("intermediate", target.intermediate, source.intermediate),
    ):
        if t > s:
            raise ValueError(
                f"cannot slice {target} from {source}: target {name}={t} exceeds source {name}={s}"
            )
    if max(layer_map) >= source.depth or min(layer_map) < 0:
        raise ValueError(f"layer_map {layer_map} out of range for source depth {source.depth}")
    return layer_map


def slice_params(
    params: dict, source: Arch, target: Arch, layer_map: Sequence[int] | None = None
) -> dict:
    """Initialise `target` from `source` weights by slicing (Bort's fast alternative to random
    init).

    Keeps layers `layer_map` (default: the first D), the first A heads, the first
    d_head' = H'/A' dimensions of each kept head, the first H' hidden and first I'
    intermediate units. Heads (query/key/value/output kernels) are sliced per head, so a
    head keeps its own weights; when the target's heads are wider than the source's
    (d_head' > d_head) the attention kernels are sliced as plain [H', H'] blocks instead
    (each target head then starts from several source heads). Slicing to `source` itself is
    the identity.
    Head-specific entries (classifier, mlm bias over the vocabulary) are copied where the
    shapes allow and otherwise dropped.
    """
    layer_map = slice_params_check(source, target, layer_map)
    h, a, d, i = target.hidden, target.heads, target.head_dim, target.intermediate
    sa, sd = source.heads, source.head_dim

    def vec(x):
        return _take(np.asarray(x), (h,))

    def norm(p):
        return {"scale": vec(p["scale"]), "bias": vec(p["bias"])}

    per_head = d <= sd and a <= sa

    def qkv(p):
        if not per_head:  # wider heads than the source's: plain first-H' units
            return {"kernel": _take(np.asarray(p["kernel"]), (h, h)), "bias": vec(p["bias"])}
        k = np.asarray(p["kernel"]).reshape(source.hidden, sa, sd)[:h, :a, :d]
        b = np.asarray(p["bias"]).reshape(sa, sd)[:a, :d]
        return {"kernel": k.reshape(h, a * d), "bias": b.reshape(a * d)}

    def attn_out(p):
        if not per_head:
            return {"kernel": _take(np.asarray(p["kernel"]), (h, h)), "bias": vec(p["bias"])}
        k = np.asarray(p["kernel"]).reshape(sa, sd, source.hidden)[:a, :d, :h]
        return {"kernel": k.reshape(a * d, h), "bias": vec(p["bias"])}

    def dense(p, n_in, n_out):
        return {
            "kernel": _take(np.asarray(p["kernel"]), (n_in, n_out)),
            "bias": _take(np.asarray(p["bias"]), (n_out,)),
        }

    out = {}
    emb = params["embeddings"]
    out["embeddings"] = {
        k: {"embedding": np.asarray(v["embedding"])[:, :h]}
        for k, v in emb.items()
        if k != "LayerNorm"
    }
    out["embeddings"]["LayerNorm"] = norm(emb["LayerNorm"])
    for new, old in enumerate(layer_map):
        src = params[f"layer_{old}"]
        out[f"layer_{new}"] = {
            "attention": {
                **{n: qkv(src["attention"][n]) for n in ("query", "key", "value")},
                "output": attn_out(src["attention"]["output"]),
            },
            "attention_norm": norm(src["attention_norm"]),
            "ffn_in": dense(src["ffn_in"], h, i),
            "ffn_out": dense(src["ffn_out"], i, h),
            "ffn_norm": norm(src["ffn_norm"]),
        }
    for name in ("pooler", "mlm_transform", "head_pooler"):
        if name in params:
            out[name] = dense(params[name], h, h)
    if "mlm_norm" in params:
        out["mlm_norm"] = norm(params["mlm_norm"])
    if "mlm_bias" in params:
        out["mlm_bias"] = np.asarray(params["mlm_bias"])
    if "classifier" in params:
        k = np.asarray(params["classifier"]["kernel"])
        out["classifier"] = {"kernel": k[:h], "bias": np.asarray(params["classifier"]["bias"])}
    return jax.tree_util.tree_map(jnp.asarray, out)


def fresh_params(model: Bert, seed: int = 0) -> dict:
    """Random parameters of `model` (jit-compiled init: much faster than eager for BERT)."""
    return jax.jit(init_params, static_argnums=0)(model, jax.random.PRNGKey(seed))


def merge_pretrained(
    fresh: dict, pretrained: Mapping[str, Any], head_keys: Sequence[str] = HEAD_KEYS
) -> dict:
    """`fresh` with every subtree but the task head (`head_keys`) replaced by the pretrained
    one (shapes checked; a ValueError names the subtree and both shapes)."""
    out = {}
    for name, sub in fresh.items():
        if name in head_keys or name not in pretrained:
            out[name] = sub
            continue
        out[name] = jax.tree_util.tree_map(_checked(name), sub, pretrained[name])
    return out


def _checked(name: str) -> Callable:
    def pick(expected, got):
        if tuple(np.shape(expected)) != tuple(np.shape(got)):
            raise ValueError(
                f"pretrained {name} has shape {np.shape(got)}, model expects {np.shape(expected)}"
            )
        return jnp.asarray(got, jnp.asarray(expected).dtype)

    return pick
