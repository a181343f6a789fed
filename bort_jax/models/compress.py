"""Layer dropping: the compression baseline that keeps a subset of a trained encoder's layers.

A `bort_jax.models.bert.Bert` parameter tree holds its D encoder layers either unrolled
('layer_0' … 'layer_{D-1}', the canonical layout) or stacked under 'layers' (each leaf with a
leading [D] axis, `Bert(scan_layers=True)`). `drop_layers(params, keep)` returns the tree of a
depth-len(keep) model whose j-th layer is the source's layer keep[j]; every other subtree
(embeddings, pooler, MLM and task heads) is kept as it is, so the result runs in
``Bert(dataclasses.replace(arch, depth=len(keep)))`` (`dropped_arch`). No weight is changed:
this is the "drop layers, keep the rest" baseline (e.g. keep every other layer,
``keep_every(2, depth)``), to compare with the architectures a search extracts at the same
size. `slice_params(..., layer_map=keep)` does the same for the unrolled layout when the width
is unchanged; this module also handles the stacked layout and needs no `Arch`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from bort_jax.arch import Arch

__all__ = ["depth_of", "drop_layers", "dropped_arch", "keep_every"]


def depth_of(params: Mapping[str, Any]) -> int:
    """Number of encoder layers in a `Bert` parameter tree (either layout)."""
    if "layers" in params:
        leaves = jax.tree_util.tree_leaves(params["layers"])
        if not leaves:
            raise ValueError("depth_of: 'layers' holds no arrays")
        return int(np.shape(leaves[0])[0])
    names = [k for k in params if k.startswith("layer_") and k[len("layer_") :].isdigit()]
    depth = len(names)
    expected = {f"layer_{i}" for i in range(depth)}
    if set(names) != expected:
        raise ValueError(f"depth_of: layer subtrees {sorted(names)} are not layer_0 … layer_N")
    return depth


def _check_keep(keep: Sequence[int], depth: int) -> list[int]:
    out = []
    for k in keep:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"keep: layer indices must be ints, got {k!r}")
        if not 0 <= int(k) < depth:
            raise ValueError(f"keep: layer {k} out of range for depth {depth}")
        out.append(int(k))
    if not out:
        raise ValueError("keep: keep at least one layer")
    return out


def drop_layers(params: Mapping[str, Any], keep: Sequence[int]) -> dict:
    """The parameter tree with only the layers ``keep`` (in that order), renumbered 0 … n−1.

    Works on both layouts (unrolled 'layer_i' subtrees, or 'layers' stacked on a leading [D]
    axis; the output keeps the input's layout). Indices must lie in [0, D); the order given
    is the order of the new layers (repeats are allowed: a layer used twice). Leaves are
    shared with the input, not copied (stacked leaves are indexed, so copied).
    """
    depth = depth_of(params)
    keep = _check_keep(keep, depth)
    if "layers" in params:
        idx = np.asarray(keep)
        out = {k: v for k, v in params.items() if k != "layers"}
        out["layers"] = jax.tree_util.tree_map(lambda x: x[idx], params["layers"])
        return out
    out = {k: v for k, v in params.items() if not (k.startswith("layer_") and k[6:].isdigit())}
    for new, old in enumerate(keep):
        out[f"layer_{new}"] = params[f"layer_{old}"]
    return out


def keep_every(k: int, depth: int, offset: int = 0) -> list[int]:
    """Layers offset, offset + k, offset + 2k, … below ``depth`` (k = 2: every other layer)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"keep_every: k must be an int >= 1, got {k!r}")
    if not 0 <= offset < depth:
        raise ValueError(f"keep_every: offset must be in [0, {depth}), got {offset!r}")
    return list(range(offset, depth, k))


def dropped_arch(arch: Arch, keep: Sequence[int]) -> Arch:
    """The `Arch` of the model left after `drop_layers` (same widths, depth len(keep))."""
    return dataclasses.replace(arch, depth=len(_check_keep(keep, arch.depth)))
