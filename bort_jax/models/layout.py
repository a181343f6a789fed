"""Parameter layouts of a `Bert` (`bort_jax.models.bert`): layers unrolled or stacked, and the
vocabulary padded or not.

Layer layouts: the canonical tree holds the D layers as 'layer_0' … 'layer_{D-1}' (HF import/
export, `slice_params`, checkpoints); `Bert(scan_layers=True)` keeps them stacked under
'layers' (each leaf [D, ...]). `stack_layers` / `unstack_layers` convert exactly between the
two.

Vocabulary padding: `Bert(vocab_multiple=m)` has a word-embedding table and 'mlm_bias' of
V_pad = `padded_vocab(V, m)` rows (`VOCAB_MULTIPLE` = 128: 30,522 → 30,592), so a mesh's
'model' axis can split them. `pad_vocab` / `unpad_vocab` convert a tree ahead of time;
`ModelOptions` bundles the layout flags and converts a canonical tree to its layout and back.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from bort_jax.arch import Arch, Spec


def padded_vocab(vocab_size: int, multiple: int) -> int:
    """`vocab_size` rounded up to a multiple of `multiple` (1 = no padding)."""
    if multiple < 1:
        raise ValueError(f"vocab_multiple must be >= 1, got {multiple}")
    return -(-vocab_size // multiple) * multiple


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


# ------------------------------------------------------------------- vocabulary padding

VOCAB_MULTIPLE = 128  # `Bert.vocab_multiple` for sharded runs: 30,522 → 30,592, 50,265 → 50,304
VOCAB_LEAVES = (("embeddings", "word_embeddings", "embedding"), ("mlm_bias",))


def map_vocab_leaves(params: Mapping[str, Any], fn: Callable) -> dict:
    """A shallow copy of `params` with `fn(name, leaf)` applied to the leaves of VOCAB_LEAVES
    that it has (the dicts on their paths are copied; nothing else is)."""

    def walk(tree, path, done):
        if len(path) == 1:
            return {**tree, path[0]: fn("/".join(done + path), tree[path[0]])}
        return {**tree, path[0]: walk(tree[path[0]], path[1:], done + path[:1])}

    out = dict(params)
    for path in VOCAB_LEAVES:
        node = out
        for key in path:
            node = node.get(key) if isinstance(node, Mapping) else None
        if node is not None:
            out = walk(out, path, ())
    return out


def pad_vocab(params: Mapping[str, Any], rows: int) -> dict:
    """`params` with the word-embedding table and 'mlm_bias' zero-padded to `rows` entries
    (`Bert.padded_vocab`); leaves that have `rows` already are kept. Exact: `unpad_vocab`
    with the true vocabulary size gives the input back."""

    def pad(name, x):
        if np.shape(x)[0] > rows:
            raise ValueError(f"pad_vocab: {name} has {np.shape(x)[0]} rows, more than {rows}")
        if np.shape(x)[0] == rows:
            return x
        xp = jnp if isinstance(x, jax.Array) else np
        return xp.pad(x, ((0, rows - np.shape(x)[0]),) + ((0, 0),) * (np.ndim(x) - 1))

    return map_vocab_leaves(params, pad)


def unpad_vocab(params: Mapping[str, Any], vocab_size: int) -> dict:
    """`params` with the vocabulary leaves cut to their first `vocab_size` rows (the padding
    of `pad_vocab` / a padded `Bert` dropped): the layout of HF checkpoints."""

    def cut(name, x):
        if np.shape(x)[0] < vocab_size:
            raise ValueError(f"unpad_vocab: {name} has {np.shape(x)[0]} rows < {vocab_size}")
        return x if np.shape(x)[0] == vocab_size else x[:vocab_size]

    return map_vocab_leaves(params, cut)


# ----------------------------------------------------------------------- model options


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """How a `Bert` is laid out for training, as one config entry (`config.model`).

    scan_layers: layers through `nn.scan` (compile time flat in depth; params under
      'layers'); remat: recompute each layer in the backward pass (needs scan_layers);
      vocab_multiple: vocabulary rows rounded up to this (`VOCAB_MULTIPLE` = 128 lets a
      'model' mesh axis split the word-embedding table; 1 = the checkpoint's V rows).
    `Bert(arch, spec, ..., **opts.kwargs())` builds the model; `to_model` converts a canonical
    tree (HF layout, `slice_params`, `fresh_params` of a plain model) to it, `to_canonical`
    back (for `hf.save`, which also drops vocabulary padding itself).
    """

    scan_layers: bool = False
    remat: bool = False
    vocab_multiple: int = 1

    def __post_init__(self):
        if self.remat and not self.scan_layers:
            raise ValueError("model.remat=True needs model.scan_layers=True")
        if isinstance(self.vocab_multiple, bool) or self.vocab_multiple < 1:
            raise ValueError(f"model.vocab_multiple must be >= 1, got {self.vocab_multiple!r}")

    def kwargs(self) -> dict:
        return dataclasses.asdict(self)

    def to_model(self, params: Mapping[str, Any], arch: Arch, spec: Spec) -> dict:
        """Canonical (unrolled, V rows) → this layout (vocabulary padded, layers stacked)."""
        out = pad_vocab(params, padded_vocab(spec.vocab_size, self.vocab_multiple))
        return stack_layers(out, arch.depth) if self.scan_layers else out

    def to_canonical(self, params: Mapping[str, Any], arch: Arch, spec: Spec) -> dict:
        """Inverse of `to_model`: unrolled layers, exactly V vocabulary rows."""
        out = unstack_layers(params, arch.depth) if self.scan_layers else dict(params)
        return unpad_vocab(out, spec.vocab_size)


PLAIN = ModelOptions()  # the canonical layout: unrolled layers, exactly V vocabulary rows
