"""BERT masked-language-model inputs for Bort's pretraining (Devlin et al. 2019, Sec. 3.1).

Masking follows Google's ``create_pretraining_data.py`` (Bort's release ships a port):
per row, ``min(P, max(1, round(mask_prob * n)))`` of the ``n`` maskable positions are
predicted; each predicted token becomes [MASK] with probability 0.8, a random non-special
token with 0.1 and stays unchanged with 0.1. Targets are returned in the fixed-size
(positions, ids, weights) layout of the TPU BERT code, padded to P = ``max_predictions``,
so every batch has the same shapes and the jitted step never recompiles.

Masking is a pure function of its generator: the KD data is masked once under a seed
(`distill.static_mask`), and batches come from the stateless `data.batching.epoch_batches`.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Iterable, Mapping, Union

import numpy as np
import tokenizers

Batch = dict[str, np.ndarray]
MASK_FRACTION = 0.8
RANDOM_FRACTION = 0.1


# ---------------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------------
def default_max_predictions(seq_len: int, mask_prob: float) -> int:
    """P = ceil(mask_prob * seq_len), at least 1: an upper bound on predictions per row."""
    return max(1, math.ceil(mask_prob * seq_len))


def num_predictions(
    num_candidates: np.ndarray, mask_prob: float, max_predictions: int
) -> np.ndarray:
    """Predictions per row: min(P, max(1, round(mask_prob * n))), and 0 when n = 0.

    ``round`` is half-up (floor(x + 0.5)). Google's script scales the unpadded row length
    including [CLS]/[SEP]; here n excludes them, so k can differ from it by at most 1.

    Args:
      num_candidates: int [B] maskable positions per row.
    Returns:
      int [B].
    """
    k = np.floor(mask_prob * num_candidates + 0.5).astype(np.int64)
    k = np.clip(k, 1, max_predictions)
    return np.where(num_candidates > 0, k, 0)


@functools.lru_cache(maxsize=8)
def replacement_ids(vocab_size: int, excluded: tuple[int, ...]) -> np.ndarray:
    """Ids a token may be randomly replaced by: range(vocab_size) minus ``excluded``. int32."""
    allowed = np.setdiff1d(
        np.arange(vocab_size, dtype=np.int32), np.asarray(excluded, dtype=np.int32)
    )
    if allowed.size == 0:
        raise ValueError("every vocabulary id is special; nothing to use as a random token")
    allowed.setflags(write=False)
    return allowed


def _select_positions(
    candidates: np.ndarray, counts: np.ndarray, max_predictions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly chooses ``counts[b]`` candidate positions per row, sorted, padded to P.

    Random keys u ~ U[0,1) per position (non-candidates get 2); the ``counts[b]`` smallest
    keys of row b are its chosen positions. Returns (positions int32 [B,P], valid bool [B,P]);
    padding slots have position 0.
    """
    batch, seq_len = candidates.shape
    keys = rng.random((batch, seq_len))
    keys[~candidates] = 2.0
    take = min(max_predictions, seq_len)
    order = np.argsort(keys, axis=1, kind="stable")[:, :take]
    valid = np.arange(take)[None, :] < counts[:, None]
    positions = np.sort(np.where(valid, order, seq_len), axis=1)
    if take < max_predictions:
        positions = np.pad(
            positions, ((0, 0), (0, max_predictions - take)), constant_values=seq_len
        )
    valid = positions < seq_len
    return np.where(valid, positions, 0).astype(np.int32), valid


def mask_tokens(
    ids: np.ndarray,
    rng: np.random.Generator,
    vocab_size: int,
    mask_id: int,
    special_ids: Iterable[int],
    mask_prob: float = 0.15,
    max_predictions: int | None = None,
) -> Batch:
    """BERT 80/10/10 masking of a batch of rows, fixed-size target layout.

    Maskable positions are those whose id is not in ``special_ids`` ∪ {mask_id} (so [CLS],
    [SEP] and [PAD] are never predicted if listed). Row b predicts
    k_b = min(P, max(1, round(mask_prob * n_b))) of its n_b maskable positions, chosen
    uniformly; each chosen token x becomes
        [MASK]                         with probability 0.8,
        r ~ U(non-special ids)         with probability 0.1,
        x                              with probability 0.1.
    The random draws have fixed shapes, so the output depends only on ``ids`` and the state
    of ``rng``.

    Args:
      ids: int [B, L] (or [L], treated as B = 1) token ids.
      rng: numpy Generator (consumed).
      vocab_size: V; random replacements are drawn from range(V) minus the special ids.
      mask_id: id of [MASK].
      special_ids: ids never predicted nor used as random replacements (include pad_id).
      mask_prob: fraction of maskable positions to predict.
      max_predictions: P; default ceil(mask_prob * L).
    Returns:
      dict with ``input_ids`` int32 [B, L] (corrupted), ``mlm_positions`` int32 [B, P]
      (ascending; 0 in padding slots), ``mlm_ids`` int32 [B, P] (original ids; 0 in padding
      slots), ``mlm_weights`` float32 [B, P] (1 for real predictions, 0 for padding slots).
      For 1-D input the leading axis is dropped.
    """
    ids = np.asarray(ids)
    if ids.ndim == 1:
        out = mask_tokens(
            ids[None], rng, vocab_size, mask_id, special_ids, mask_prob, max_predictions
        )
        return {key: value[0] for key, value in out.items()}
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob}")
    excluded = tuple(sorted(set(int(i) for i in special_ids) | {int(mask_id)}))
    batch, seq_len = ids.shape
    if max_predictions is None:
        max_predictions = default_max_predictions(seq_len, mask_prob)
    candidates = ~np.isin(ids, excluded)
    counts = num_predictions(candidates.sum(axis=1), mask_prob, max_predictions)
    positions, valid = _select_positions(candidates, counts, max_predictions, rng)

    choice = rng.random(positions.shape)
    allowed = replacement_ids(vocab_size, excluded)
    random_tokens = allowed[rng.integers(0, allowed.size, size=positions.shape)]
    original = np.take_along_axis(ids, positions, axis=1).astype(np.int32)
    replaced = np.where(
        choice < MASK_FRACTION,
        np.int32(mask_id),
        np.where(choice < MASK_FRACTION + RANDOM_FRACTION, random_tokens, original),
    )
    input_ids = ids.astype(np.int32, copy=True)
    rows = np.broadcast_to(np.arange(batch)[:, None], positions.shape)
    input_ids[rows[valid], positions[valid]] = replaced[valid]
    return {
        "input_ids": input_ids,
        "mlm_positions": positions,
        "mlm_ids": np.where(valid, original, 0).astype(np.int32),
        "mlm_weights": valid.astype(np.float32),
    }


# ---------------------------------------------------------------------------------------------
# Compatibility checks
# ---------------------------------------------------------------------------------------------
VocabLike = Union[tokenizers.Tokenizer, Mapping[str, int], str, os.PathLike]
SPECIAL_TOKENS = (
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "<s>",
    "<pad>",
    "</s>",
    "<unk>",
    "<mask>",
)


def _read_vocab_txt(path: str) -> dict[str, int]:
    """WordPiece vocab.txt: one token per line, id = line number."""
    with open(path, encoding="utf-8") as f:
        return {line.rstrip("\r\n"): i for i, line in enumerate(f)}


def as_vocab(source: VocabLike) -> dict[str, int]:
    """token -> id from a Tokenizer, a mapping, a tokenizer.json / vocab.txt or a model dir."""
    if isinstance(source, tokenizers.Tokenizer):
        return dict(source.get_vocab(with_added_tokens=True))
    if isinstance(source, Mapping):
        return dict(source)
    path = os.fspath(source)
    if os.path.isdir(path):
        for name in ("tokenizer.json", "vocab.txt"):
            if os.path.isfile(os.path.join(path, name)):
                return as_vocab(os.path.join(path, name))
        raise FileNotFoundError(f"no tokenizer.json or vocab.txt in {path!r}")
    if path.endswith(".json"):
        return as_vocab(tokenizers.Tokenizer.from_file(path))
    return _read_vocab_txt(path)


def _id_to_token(vocab: Mapping[str, int]) -> dict[int, str]:
    return {i: token for token, i in vocab.items()}


def vocab_disagreement(student: VocabLike, teacher: VocabLike) -> str | None:
    """Describes the first difference between two vocabularies, or None if identical.

    Checked in order: size; ids of the special tokens in ``SPECIAL_TOKENS`` present in
    either; then the token at each id from 0 upwards.
    """
    s_vocab, t_vocab = as_vocab(student), as_vocab(teacher)
    if len(s_vocab) != len(t_vocab):
        return (
            f"vocabulary sizes differ: student has {len(s_vocab)} tokens, teacher has "
            f"{len(t_vocab)}"
        )
    for token in SPECIAL_TOKENS:
        s_id, t_id = s_vocab.get(token), t_vocab.get(token)
        if s_id != t_id:
            return (
                f"special token {token!r} has id {s_id} in the student vocabulary but "
                f"{t_id} in the teacher vocabulary"
            )
    s_tokens, t_tokens = _id_to_token(s_vocab), _id_to_token(t_vocab)
    for i in sorted(set(s_tokens) | set(t_tokens)):
        if s_tokens.get(i) != t_tokens.get(i):
            return (
                f"token id {i} is {s_tokens.get(i)!r} in the student vocabulary but "
                f"{t_tokens.get(i)!r} in the teacher vocabulary"
            )
    return None


def check_vocab_compat(student: VocabLike, teacher: VocabLike) -> None:
    """Raises ValueError unless student and teacher share one vocabulary (id for id).

    Logit distillation compares distributions over the same V ids, so any mismatch makes
    the KD loss meaningless.
    """
    problem = vocab_disagreement(student, teacher)
    if problem is not None:
        raise ValueError(
            f"student and teacher vocabularies are incompatible for logit distillation: {problem}"
        )
