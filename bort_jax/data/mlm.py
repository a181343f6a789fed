"""BERT masked-language-model inputs for Bort's pretraining (Devlin et al. 2019, Sec. 3.1).

Masking follows Google's ``create_pretraining_data.py`` (Bort's release ships a port):
per row, ``min(P, max(1, round(mask_prob * n)))`` of the ``n`` maskable positions are
predicted; each predicted token becomes [MASK] with probability 0.8, a random non-special
token with 0.1 and stays unchanged with 0.1. Targets are returned in the fixed-size
(positions, ids, weights) layout of the TPU BERT code, padded to P = ``max_predictions``,
so every batch has the same shapes and the jitted step never recompiles.

Everything is a pure function of (seed, step): ``MLMBatches(step)`` recomputes the batch of
any global step, so resuming after a kill means restarting at the saved step.
"""
from __future__ import annotations

import functools
import math
import os
import queue
import threading
from typing import Callable, Iterable, Iterator, Mapping, Union

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


def num_predictions(num_candidates: np.ndarray, mask_prob: float,
                    max_predictions: int) -> np.ndarray:
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
    allowed = np.setdiff1d(np.arange(vocab_size, dtype=np.int32),
                           np.asarray(excluded, dtype=np.int32))
    if allowed.size == 0:
        raise ValueError('every vocabulary id is special; nothing to use as a random token')
    allowed.setflags(write=False)
    return allowed


def _select_positions(candidates: np.ndarray, counts: np.ndarray, max_predictions: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uniformly chooses ``counts[b]`` candidate positions per row, sorted, padded to P.

    Random keys u ~ U[0,1) per position (non-candidates get 2); the ``counts[b]`` smallest
    keys of row b are its chosen positions. Returns (positions int32 [B,P], valid bool [B,P]);
    padding slots have position 0.
    """
    batch, seq_len = candidates.shape
    keys = rng.random((batch, seq_len))
    keys[~candidates] = 2.0
    take = min(max_predictions, seq_len)
    order = np.argsort(keys, axis=1, kind='stable')[:, :take]
    valid = np.arange(take)[None, :] < counts[:, None]
    positions = np.sort(np.where(valid, order, seq_len), axis=1)
    if take < max_predictions:
        positions = np.pad(positions, ((0, 0), (0, max_predictions - take)),
                           constant_values=seq_len)
    valid = positions < seq_len
    return np.where(valid, positions, 0).astype(np.int32), valid


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, vocab_size: int, mask_id: int,
                special_ids: Iterable[int], mask_prob: float = 0.15,
                max_predictions: int | None = None) -> Batch:
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
        out = mask_tokens(ids[None], rng, vocab_size, mask_id, special_ids, mask_prob,
                          max_predictions)
        return {key: value[0] for key, value in out.items()}
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f'mask_prob must be in (0, 1], got {mask_prob}')
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
    replaced = np.where(choice < MASK_FRACTION, np.int32(mask_id),
                        np.where(choice < MASK_FRACTION + RANDOM_FRACTION,
                                 random_tokens, original))
    input_ids = ids.astype(np.int32, copy=True)
    rows = np.broadcast_to(np.arange(batch)[:, None], positions.shape)
    input_ids[rows[valid], positions[valid]] = replaced[valid]
    return {
        'input_ids': input_ids,
        'mlm_positions': positions,
        'mlm_ids': np.where(valid, original, 0).astype(np.int32),
        'mlm_weights': valid.astype(np.float32),
    }


# ---------------------------------------------------------------------------------------------
# Stateless batch source and prefetching
# ---------------------------------------------------------------------------------------------
def _rng(seed: int, stream: int, counter: int) -> np.random.Generator:
    """Independent generator for (seed, stream, counter); stream 0 = shuffling, 1 = masking."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, counter]))


class MLMBatches:
    """Deterministic, stateless MLM batch source: ``batch = source(step)``.

    Epoch e = step // S with S = N // batch_size steps per epoch (the N mod batch_size rows
    left over by a permutation are skipped for that epoch). Epoch e visits the rows in the
    order ``permutation_e``, seeded by (seed, 0, e); step s uses rows
    ``permutation_e[(s mod S) * B : (s mod S + 1) * B]`` and masking seeded by (seed, 1, s).
    Nothing depends on previous calls, so restarting at a saved step reproduces the run.

    Batch (B = batch_size, L = seq_len, P = max_predictions):
      input_ids       int32   [B, L]  masked ids
      attention_mask  int32   [B, L]  1 = real token, 0 = pad
      token_type_ids  int32   [B, L]  zeros (single segment)
      mlm_positions   int32   [B, P]
      mlm_ids         int32   [B, P]
      mlm_weights     float32 [B, P]
      index           int64   [B]     rows of ``seqs`` used
    """

    def __init__(self, seqs: np.ndarray, batch_size: int, *, seed: int, vocab_size: int,
                 mask_id: int, pad_id: int, special_ids: Iterable[int],
                 mask_prob: float = 0.15, max_predictions: int | None = None):
        seqs = np.asarray(seqs)
        if seqs.ndim != 2:
            raise ValueError(f'seqs must be [N, seq_len], got shape {seqs.shape}')
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        if batch_size > seqs.shape[0]:
            raise ValueError(f'batch_size {batch_size} is larger than the number of '
                             f'sequences {seqs.shape[0]}; use a smaller batch or more text')
        if seed < 0:
            raise ValueError(f'seed must be non-negative, got {seed}')
        self.seqs = seqs
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.vocab_size = int(vocab_size)
        self.mask_id = int(mask_id)
        self.pad_id = int(pad_id)
        self.special_ids = tuple(sorted(set(int(i) for i in special_ids) | {self.pad_id}))
        self.mask_prob = float(mask_prob)
        self.max_predictions = (default_max_predictions(seqs.shape[1], mask_prob)
                                if max_predictions is None else int(max_predictions))
        self._perm_cache: tuple[int, np.ndarray] | None = None

    @property
    def steps_per_epoch(self) -> int:
        """S = N // batch_size."""
        return self.seqs.shape[0] // self.batch_size

    def permutation(self, epoch: int) -> np.ndarray:
        """Row order of ``epoch``: int64 [N], seeded by (seed, 0, epoch)."""
        cached = self._perm_cache
        if cached is not None and cached[0] == epoch:
            return cached[1]
        perm = _rng(self.seed, 0, epoch).permutation(self.seqs.shape[0])
        self._perm_cache = (epoch, perm)  # Single assignment: safe under the prefetch thread.
        return perm

    def indices(self, step: int) -> np.ndarray:
        """Rows used at global ``step``: int64 [batch_size]."""
        if step < 0:
            raise ValueError(f'step must be non-negative, got {step}')
        epoch, offset = divmod(int(step), self.steps_per_epoch)
        start = offset * self.batch_size
        return self.permutation(epoch)[start:start + self.batch_size].astype(np.int64)

    def __call__(self, step: int) -> Batch:
        index = self.indices(step)
        ids = self.seqs[index]
        batch = mask_tokens(ids, _rng(self.seed, 1, int(step)), self.vocab_size, self.mask_id,
                            self.special_ids, self.mask_prob, self.max_predictions)
        batch['attention_mask'] = (ids != self.pad_id).astype(np.int32)
        batch['token_type_ids'] = np.zeros_like(batch['input_ids'])
        batch['index'] = index
        return batch


class Prefetcher:
    """Iterator of ``(step, source(step))`` for step = start_step, start_step + 1, ...

    A daemon thread computes up to ``depth`` batches ahead. Stops after ``stop_step - 1``
    when ``stop_step`` is given. An exception in ``source`` is re-raised by ``next``.
    Use as a context manager, or call ``close()``, to stop the thread early.
    """

    _END = object()

    def __init__(self, source: Callable[[int], Batch], start_step: int, depth: int = 2,
                 stop_step: int | None = None):
        if depth < 1:
            raise ValueError(f'depth must be >= 1, got {depth}')
        self._source = source
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(start_step, stop_step),
                                        daemon=True, name='mlm-prefetch')
        self._thread.start()

    def _put(self, item) -> bool:
        """Blocking put that gives up when closed; True if the item was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, step: int, stop_step: int | None) -> None:
        while stop_step is None or step < stop_step:
            try:
                item = (step, self._source(step))
            except BaseException as err:  # Re-raised in the consumer thread.
                self._put(err)
                return
            if not self._put(item):
                return
            step += 1
        self._put(self._END)

    def __iter__(self) -> Iterator[tuple[int, Batch]]:
        return self

    def __next__(self) -> tuple[int, Batch]:
        if self._stop.is_set():
            raise StopIteration
        item = self._queue.get()
        if item is self._END:
            self._stop.set()
            raise StopIteration
        if isinstance(item, BaseException):
            self._stop.set()
            raise item
        return item

    def close(self) -> None:
        """Stops the producer thread and drops queued batches."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> 'Prefetcher':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Compatibility checks
# ---------------------------------------------------------------------------------------------
VocabLike = Union[tokenizers.Tokenizer, Mapping[str, int], str, os.PathLike]
SPECIAL_TOKENS = ('[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]',
                  '<s>', '<pad>', '</s>', '<unk>', '<mask>')


def _read_vocab_txt(path: str) -> dict[str, int]:
    """WordPiece vocab.txt: one token per line, id = line number."""
    with open(path, encoding='utf-8') as f:
        return {line.rstrip('\r\n'): i for i, line in enumerate(f)}


def as_vocab(source: VocabLike) -> dict[str, int]:
    """token -> id from a Tokenizer, a mapping, a tokenizer.json / vocab.txt or a model dir."""
    if isinstance(source, tokenizers.Tokenizer):
        return dict(source.get_vocab(with_added_tokens=True))
    if isinstance(source, Mapping):
        return dict(source)
    path = os.fspath(source)
    if os.path.isdir(path):
        for name in ('tokenizer.json', 'vocab.txt'):
            if os.path.isfile(os.path.join(path, name)):
                return as_vocab(os.path.join(path, name))
        raise FileNotFoundError(f'no tokenizer.json or vocab.txt in {path!r}')
    if path.endswith('.json'):
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
        return (f'vocabulary sizes differ: student has {len(s_vocab)} tokens, teacher has '
                f'{len(t_vocab)}')
    for token in SPECIAL_TOKENS:
        s_id, t_id = s_vocab.get(token), t_vocab.get(token)
        if s_id != t_id:
            return (f'special token {token!r} has id {s_id} in the student vocabulary but '
                    f'{t_id} in the teacher vocabulary')
    s_tokens, t_tokens = _id_to_token(s_vocab), _id_to_token(t_vocab)
    for i in sorted(set(s_tokens) | set(t_tokens)):
        if s_tokens.get(i) != t_tokens.get(i):
            return (f'token id {i} is {s_tokens.get(i)!r} in the student vocabulary but '
                    f'{t_tokens.get(i)!r} in the teacher vocabulary')
    return None


def check_vocab_compat(student: VocabLike, teacher: VocabLike) -> None:
    """Raises ValueError unless student and teacher share one vocabulary (id for id).

    Logit distillation compares distributions over the same V ids, so any mismatch makes
    the KD loss meaningless.
    """
    problem = vocab_disagreement(student, teacher)
    if problem is not None:
        raise ValueError(f'student and teacher vocabularies are incompatible for logit '
                         f'distillation: {problem}')


def check_seq_len(seq_len: int, max_positions: int) -> None:
    """Raises ValueError if rows of ``seq_len`` tokens do not fit ``max_positions``."""
    if seq_len > max_positions:
        raise ValueError(f'seq_len {seq_len} exceeds the model\'s max_positions '
                         f'{max_positions}; use seq_len <= {max_positions}')
    if seq_len < 3:
        raise ValueError(f'seq_len must be >= 3 to hold [CLS] x [SEP], got {seq_len}')
