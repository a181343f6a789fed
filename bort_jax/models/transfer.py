"""Weight transfer into a `Bert` parameter tree (`bort_jax.models.bert`): slicing a larger
encoder's weights (Bort's initialisation of an extracted architecture, arXiv 2010.10499)
and merging a pretrained body under a fresh task head.

Both work on the canonical layout (unrolled layers, `bort_jax.models.layout`); vocabulary
leaves are zero-padded with `pad_vocab` when the target model is padded.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bort_jax.arch import Arch
from bort_jax.models.layout import map_vocab_leaves, pad_vocab

HEAD_KEYS = ("classifier", "head_pooler")  # the fine-tuning head's subtrees


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
    params: dict,
    source: Arch,
    target: Arch,
    layer_map: Sequence[int] | None = None,
    vocab_rows: int | None = None,
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
    shapes allow and otherwise dropped. The vocabulary rows are kept as they come, or
    zero-padded to `vocab_rows` (`Bert.padded_vocab` of the target model; `pad_vocab`).
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
    if vocab_rows is not None:
        out = pad_vocab(out, vocab_rows)
    return jax.tree_util.tree_map(jnp.asarray, out)


def taken_from_pretrained(pretrained: Mapping[str, Any], head_keys: Sequence[str] = HEAD_KEYS):
    """The top-level subtrees `merge_pretrained` takes from `pretrained` (all but the head):
    a fresh init need not draw them (`models.bert.fresh_params(skip=...)`)."""
    return frozenset(k for k in pretrained if k not in head_keys)


def merge_pretrained(
    fresh: dict,
    pretrained: Mapping[str, Any],
    head_keys: Sequence[str] = HEAD_KEYS,
    vocab_size: int | None = None,
) -> dict:
    """`fresh` with every subtree but the task head (`head_keys`) replaced by the pretrained
    one (shapes checked; a ValueError names the subtree and both shapes).

    `fresh` from a padded model (`Bert.vocab_multiple`) has more vocabulary rows than a
    checkpoint: with `vocab_size` (the true V) given, pretrained vocabulary leaves of V rows
    are zero-padded to `fresh`'s rows first (`pad_vocab`); any other mismatch still raises.
    """
    emb = fresh.get("embeddings", {}).get("word_embeddings", {}).get("embedding")
    if vocab_size is not None and emb is not None and np.shape(emb)[0] >= vocab_size:
        rows = np.shape(emb)[0]
        pretrained = map_vocab_leaves(
            pretrained,
            lambda name, x: (
                pad_vocab({"mlm_bias": x}, rows)["mlm_bias"] if np.shape(x)[0] == vocab_size else x
            ),
        )
    out = {}
    for name, sub in fresh.items():
        if name in head_keys or name not in pretrained:
            if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree_util.tree_leaves(sub)):
                raise ValueError(f"{name} was not initialised (fresh_params skip) nor given")
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
        return jnp.asarray(got, expected.dtype)  # an array or a jax.ShapeDtypeStruct

    return pick
