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
'layers'); `stack_layers` / `unstack_layers` (`models.layout`) convert exactly between the two.

Vocabulary padding: `Bert(vocab_multiple=128)` gives the word-embedding table and 'mlm_bias'
V rounded up to a multiple of 128 rows (30,522 → 30,592, 50,265 → 50,304), so a mesh's
'model' axis splits them (and their optimizer moments) instead of replicating them. The
padding columns of the MLM logits are sliced off before they are returned: every consumer
(losses, KD, teacher caches) sees exactly V logits, and padding rows get no gradient. A
tree with V rows (HF checkpoints) is padded on the fly; `pad_vocab` / `unpad_vocab` convert
ahead of time, `hf.save` drops the padding, `ModelOptions` bundles the layout flags (all in
`models.layout`). Initialising from other weights (`slice_params`, `merge_pretrained`) is
`models.transfer`.

Activation sharding: under an active `sharding.Partitioner` the embedding output, q/k/v and
the attention context, the FFN intermediate and the logits are constrained to the sharding
their logical axes get (`constrain`), so the SPMD partitioner never has to guess (and fall
back to replicating a tensor); without one nothing changes.
"""

from __future__ import annotations

import functools
from typing import Any, Collection, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bort_jax import sharding
from bort_jax.arch import Arch, Spec

# Parameter-tree helpers live with their concept; re-exported here, where they used to be.
from bort_jax.models.layout import (  # noqa: F401
    PLAIN,
    VOCAB_LEAVES,
    VOCAB_MULTIPLE,
    ModelOptions,
    pad_vocab,
    padded_vocab,
    stack_layers,
    unpad_vocab,
    unstack_layers,
)
from bort_jax.models.transfer import (  # noqa: F401
    HEAD_KEYS,
    merge_pretrained,
    slice_params,
    slice_params_check,
    taken_from_pretrained,
)

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


def constrain(x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
    """`x` constrained to the sharding its logical axes get under the active partitioner.

    The names go through the partitioner's rules as parameters do (`sharding.mesh_spec`: a
    mesh axis is used once per array, and a dimension it does not divide stays replicated).
    Without an active partitioner (one device) `x` is returned untouched.
    """
    part = sharding.current()
    if part is None:
        return x
    spec = sharding.mesh_spec(tuple(logical), x.shape, part.mesh, part.rules)
    return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(part.mesh, spec))


def _pad_rows(x: jax.Array, rows: int) -> jax.Array:
    short = rows - x.shape[0]
    return x if short == 0 else jnp.pad(x, ((0, short),) + ((0, 0),) * (x.ndim - 1))


def position_ids(input_ids: jax.Array, spec: Spec) -> jax.Array:
    """BERT: 0..L-1. RoBERTa (`position_offset > 0`): pad_id+1, pad_id+2, … skipping padding."""
    batch, length = input_ids.shape
    if spec.position_offset == 0:
        return jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
    not_pad = (input_ids != spec.pad_token_id).astype(jnp.int32)
    return jnp.cumsum(not_pad, axis=1) * not_pad + spec.pad_token_id


class VocabEmbed(nn.Module):
    """The word-embedding table [V_pad, H] (V_pad = `padded_vocab(V, vocab_multiple)`), used
    for the input lookup and, tied, for the MLM logits.

    Rows V … V_pad-1 are padding: ids never index them, and `attend` drops their logits, so
    every output has the true vocabulary V. The padding exists so that a mesh's 'model' axis
    divides the table (and its optimizer moments) along 'vocab'. A fresh table has the same
    first V rows as an unpadded one (same rng draw) and zero padding rows.

    `apply` also accepts a table of exactly V rows (the layout of HF checkpoints,
    `hf.load`): it is zero-padded on the fly, so one parameter tree serves models with any
    `vocab_multiple`; `pad_vocab` / `unpad_vocab` convert trees ahead of time.
    """

    vocab_size: int
    features: int
    vocab_multiple: int = 1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        rows = padded_vocab(self.vocab_size, self.vocab_multiple)
        if self.has_variable("params", "embedding"):  # no init-shape check: V or V_pad rows
            table = nn.meta.unbox(self.get_variable("params", "embedding"))
            if tuple(table.shape) not in ((self.vocab_size, self.features), (rows, self.features)):
                raise ValueError(
                    f"word embedding table has shape {tuple(table.shape)}; expected "
                    f"({self.vocab_size}, {self.features}) or padded ({rows}, {self.features})"
                )
        else:
            v = self.vocab_size

            def init(key, shape, dtype):
                first = nn.initializers.normal(INIT_STD)(key, (v,) + tuple(shape[1:]), dtype)
                return _pad_rows(first, shape[0])

            table = self.param(
                "embedding",
                nn.with_logical_partitioning(init, ("vocab", "embed")),
                (rows, self.features),
                self.param_dtype,
            )
        self.rows = rows
        self.table = table

    def padded_table(self) -> jax.Array:
        """[V_pad, H] in `dtype`, split along 'vocab' only (gathered over 'embed', as FSDP
        gathers every weight before use)."""
        table = _pad_rows(jnp.asarray(self.table), self.rows).astype(self.dtype)
        return constrain(table, ("vocab", None))

    def __call__(self, ids: jax.Array) -> jax.Array:
        """[B, L] ids → [B, L, H]."""
        x = jnp.take(self.padded_table(), ids, axis=0)
        return constrain(x, ("batch", "seq", "embed"))

    def attend(self, x: jax.Array) -> jax.Array:
        """[..., H] → [..., V_pad] logits (padding columns included; `Bert` slices them)."""
        logits = jnp.dot(
            x.astype(self.dtype), self.padded_table().T, preferred_element_type=jnp.float32
        )
        return constrain(logits, ("batch",) + (None,) * (logits.ndim - 2) + ("vocab",))


class Embeddings(nn.Module):
    """word + position + token-type embeddings, LayerNorm, dropout. [B, L] ids → [B, L, H]."""

    arch: Arch
    spec: Spec
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    dropout_rate: float = 0.1
    vocab_multiple: int = 1

    def setup(self):
        h = self.arch.hidden
        emb_init = lambda axes: nn.with_logical_partitioning(  # noqa: E731
            nn.initializers.normal(INIT_STD), axes
        )
        self.word_embeddings = VocabEmbed(
            self.spec.vocab_size,
            h,
            self.vocab_multiple,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
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
        x = words + self._lookup(self.position_embeddings, position_ids(input_ids, self.spec))
        if self.spec.type_vocab_size:
            x = x + self._lookup(self.token_type_embeddings, token_type_ids)
        x = constrain(x, ("batch", "seq", "embed"))
        x = self.LayerNorm(x)
        return self.dropout(x, deterministic=deterministic)

    def _lookup(self, embed: nn.Embed, ids: jax.Array) -> jax.Array:
        """`embed(ids)` with its (small) table gathered whole first: a table split along
        'embed' (fsdp) cannot feed a gather whose rows are split along the batch (fsdp too)."""
        table = constrain(jnp.asarray(embed.embedding, self.dtype), (None, None))
        return jnp.take(table, ids, axis=0)

    def attend(self, x: jax.Array) -> jax.Array:
        """[..., H] → [..., V_pad] logits against the (tied) word-embedding table."""
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
        def split(t):  # [B, L, H] → [B, A, L, d], heads split over 'model'
            t = constrain(t, ("batch", "seq", "heads"))
            t = t.reshape(t.shape[:2] + (a, d)).transpose(0, 2, 1, 3)
            return constrain(t, ("batch", "heads", "seq", None))

        q, k, v = (split(proj(n)(x)) for n in ("query", "key", "value"))
        logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32) / np.sqrt(
            d
        ).astype(np.float32)
        keep = mask[:, None, None, :].astype(bool)
        logits = jnp.where(keep, logits, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
        probs = nn.Dropout(self.dropout_rate)(probs, deterministic=deterministic)
        ctx = constrain(jnp.einsum("bhqk,bhkd->bhqd", probs, v), ("batch", "heads", "seq", None))
        ctx = ctx.transpose(0, 2, 1, 3).reshape(x.shape[:2] + (h,))
        ctx = constrain(ctx, ("batch", "seq", "heads"))
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
        y = activation_fn(self.spec.activation)(constrain(y, ("batch", "seq", "mlp")))
        y = _dense(self.arch.hidden, ("mlp", "embed"), self.dtype, self.param_dtype, "ffn_out")(y)
        x = _layer_norm(self.spec, self.dtype, self.param_dtype, "ffn_norm")(
            x + drop(y, deterministic=deterministic)
        )
        x = constrain(x, ("batch", "seq", "embed"))
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
    vocab_multiple: int = 1

    @property
    def padded_vocab(self) -> int:
        """Rows of the word-embedding table (and of 'mlm_bias'): V rounded up to
        `vocab_multiple` (`VOCAB_MULTIPLE` on a mesh with a 'model' axis)."""
        return padded_vocab(self.spec.vocab_size, self.vocab_multiple)

    def setup(self):
        if self.remat and not self.scan_layers:
            raise ValueError("Bert(remat=True) needs scan_layers=True")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.embeddings = Embeddings(
            self.arch,
            self.spec,
            dropout_rate=self.dropout_rate,
            vocab_multiple=self.vocab_multiple,
            **kw,
        )
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
            v, rows = self.spec.vocab_size, self.padded_vocab
            if self.has_variable("params", "mlm_bias"):  # V or V_pad entries, as the table
                self.mlm_bias = nn.meta.unbox(self.get_variable("params", "mlm_bias"))
                if tuple(self.mlm_bias.shape) not in ((v,), (rows,)):
                    raise ValueError(
                        f"mlm_bias has shape {tuple(self.mlm_bias.shape)}; expected ({v},) "
                        f"or padded ({rows},)"
                    )
            else:
                self.mlm_bias = self.param(
                    "mlm_bias", _bias_init(("vocab",)), (rows,), self.param_dtype
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
            bias = _pad_rows(jnp.asarray(self.mlm_bias), self.padded_vocab)
            z = self.embeddings.attend(y).astype(jnp.float32) + bias.astype(jnp.float32)
            z = constrain(z, ("batch", None, "vocab"))
            # The padding columns are sliced off here, so no softmax / loss / teacher cache
            # ever sees them: every consumer gets exactly V logits.
            out["mlm_logits"] = z[..., : self.spec.vocab_size]
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


@functools.lru_cache(maxsize=32)
def abstract_params(model: Bert) -> dict:
    """The shapes and dtypes of `init_params(model, ·)` (`jax.ShapeDtypeStruct` leaves)."""
    return jax.eval_shape(functools.partial(init_params, model), jax.random.PRNGKey(0))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_subtrees(model: Bert, rng: jax.Array, names: tuple[str, ...]) -> dict:
    params = init_params(model, rng)
    return {k: params[k] for k in names}


def fresh_params(model: Bert, seed: int = 0, skip: Collection[str] = ()) -> dict:
    """Random parameters of `model` (jit-compiled init: much faster than eager for BERT).

    `skip`: top-level subtrees (e.g. 'embeddings', 'layer_0') not to initialise, for a caller
    that replaces them with pretrained ones (`merge_pretrained`): they come back abstract
    (`jax.ShapeDtypeStruct`) and XLA drops their random draws (for BERT-large, 335M numbers
    of which a fine-tuning run keeps a few thousand). The other subtrees are exactly those
    of the full init (flax derives each parameter's key from its path).
    """
    abstract = abstract_params(model)
    names = tuple(k for k in abstract if k not in skip)
    computed = _init_subtrees(model, jax.random.PRNGKey(seed), names)
    return {k: computed.get(k, abstract[k]) for k in abstract}
