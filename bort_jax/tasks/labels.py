"""Label-order conversion between checkpoints and the canonical task order.

MNLI label order (GLUE, TFDS ``glue/mnli`` and this package):
``('entailment', 'neutral', 'contradiction')``. The HF ``roberta-large-mnli`` checkpoint (and
other fairseq-derived MNLI heads) emit logits in the order
``('contradiction', 'neutral', 'entailment')``; scoring their argmax against GLUE ids without
conversion silently swaps entailment and contradiction, a known bug in third-party evaluations.
Use :func:`remap_labels` to move logits or ids from one order to the other.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

MNLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
MNLI_LABELS_HF_ROBERTA: tuple[str, ...] = ("contradiction", "neutral", "entailment")


def _check_same_names(from_names: Sequence[str], to_names: Sequence[str]) -> None:
    """Raises ``ValueError`` unless both orders hold the same distinct names."""
    if len(set(from_names)) != len(from_names) or len(set(to_names)) != len(to_names):
        raise ValueError("label names must be distinct")
    if set(from_names) != set(to_names):
        raise ValueError(f"label sets differ: {list(from_names)} vs {list(to_names)}")


def label_permutation(from_names: Sequence[str], to_names: Sequence[str]) -> np.ndarray:
    """Index array ``p`` with ``to_names[p[i]] == from_names[i]``; shape ``[num_labels]``."""
    _check_same_names(from_names, to_names)
    return np.array([list(to_names).index(n) for n in from_names], dtype=np.int64)


def remap_labels(logits_or_ids, from_names: Sequence[str], to_names: Sequence[str]) -> np.ndarray:
    """Converts label ids or per-class scores from one label order to another.

    Args:
        logits_or_ids: either integer label ids of any shape (each in ``[0, L)``, ordered as
            ``from_names``), or floating scores/logits/probabilities of shape ``[..., L]``
            whose last axis is ordered as ``from_names``. Integer dtype means ids; floating
            dtype means scores.
        from_names: the order of the input, length ``L``.
        to_names: the wanted order; a permutation of ``from_names``.

    Returns:
        ``np.ndarray``: ids of the same shape, or scores of the same shape with the last axis
        reordered to ``to_names``.

    Example:
        ``remap_labels(roberta_logits, MNLI_LABELS_HF_ROBERTA, MNLI_LABELS)`` gives logits in
        GLUE order, so ``argmax`` can be compared to ids read by ``read_split``.
    """
    x = np.asarray(logits_or_ids)
    perm = label_permutation(from_names, to_names)
    if np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        ids = x.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(perm)):
            raise ValueError(f"label ids must lie in [0, {len(perm)})")
        return perm[ids]
    if np.issubdtype(x.dtype, np.floating):
        if x.ndim == 0 or x.shape[-1] != len(perm):
            raise ValueError(f"scores must have a last axis of size {len(perm)}, got {x.shape}")
        # Output column j is the input column of from_names that holds to_names[j].
        gather = label_permutation(to_names, from_names)
        return x[..., gather]
    raise TypeError(f"expected integer ids or floating scores, got dtype {x.dtype}")
