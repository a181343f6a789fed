"""Text sources and packing for Bort's MLM + KD pretraining (de Wynter & Perry, 2020).

Documents (strings) come from one of three sources: Python's own bundled documentation
(``embedded_corpus``, always available, no download), plain-text files on disk
(``read_text_files``) or TensorFlow Datasets (``read_tfds``, optional dependency). They are
tokenized with a ``tokenizers.Tokenizer``, concatenated into one token stream and cut into
fixed-length ``[CLS] tokens... [SEP]`` rows (``tokenize_and_pack``), RoBERTa's FULL-SENTENCES
packing without next-sentence pairs (Bort has no NSP head).
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Iterable, Iterator

import numpy as np
import tokenizers

TEXT_SUFFIXES = (".txt", ".tokens", ".raw")
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_ENCODE_CHUNK = 1024


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------
def embedded_corpus() -> list[str]:
    """Python's bundled help topics (``pydoc_data.topics.topics``) as a list of documents.

    About 80 documents and 465k characters of English technical prose, shipped with every
    CPython, so smoke runs and tests need no download. Ordered by sorted topic key, so the
    list is identical on every call and machine running the same Python version.
    """
    from pydoc_data import topics  # Standard library; imported lazily as it is 0.5 MB.

    docs = (topics.topics[key].strip() for key in sorted(topics.topics))
    return [doc for doc in docs if doc]


def split_documents(text: str) -> list[str]:
    """Split raw text into documents on blank lines; strips each and drops empty ones."""
    parts = (part.strip() for part in _BLANK_LINE.split(text.replace("\r\n", "\n")))
    return [part for part in parts if part]


def _text_files(path: str) -> list[str]:
    """The file itself, or every *.txt / *.tokens / *.raw below a directory, sorted."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no such file or directory: {path!r}")
    found = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        found.extend(
            os.path.join(root, name) for name in sorted(files) if name.endswith(TEXT_SUFFIXES)
        )
    return found


def read_text_files(path: str | os.PathLike) -> list[str]:
    """Documents from a text file, or from all text files below a directory (recursive).

    Files are read as UTF-8 in sorted path order; each is split into documents on blank
    lines (see ``split_documents``). Directories contribute only files ending in
    ``TEXT_SUFFIXES`` (.txt, .tokens as in WikiText, .raw).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: no non-empty document was found under ``path``.
    """
    path = os.fspath(path)
    docs: list[str] = []
    for name in _text_files(path):
        with open(name, encoding="utf-8") as f:
            docs.extend(split_documents(f.read()))
    if not docs:
        raise ValueError(
            f"no text found in {path!r} (looked for non-empty documents in "
            f"files ending in {', '.join(TEXT_SUFFIXES)})"
        )
    return docs


def _as_text(value) -> str:
    """A TFDS text feature (bytes, numpy bytes/str scalar or str) as ``str``."""
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _iterate_tfds(dataset, text_key: str, max_examples: int | None) -> Iterator[str]:
    """Yields ``example[text_key]`` as ``str`` for at most ``max_examples`` examples."""
    for example in itertools.islice(dataset, max_examples):
        if text_key not in example:
            raise KeyError(
                f"TFDS example has no feature {text_key!r}; features are {sorted(example)}"
            )
        yield _as_text(example[text_key])


def read_tfds(
    name: str,
    split: str = "train",
    text_key: str = "text",
    data_dir: str | None = None,
    max_examples: int | None = None,
) -> Iterator[str]:
    """Streams the text feature of a TensorFlow Datasets split, e.g. ``wikipedia/20230601.en``.

    ``tensorflow_datasets`` is imported here, not at module import, so the rest of the
    package works without TensorFlow. Files are read in a fixed order (``shuffle_files=False``)
    so the stream is deterministic.

    Raises:
      ImportError: tensorflow_datasets is not installed (message says how to install it).
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            "read_tfds needs tensorflow-datasets; install it with "
            "`pip install tensorflow-datasets tensorflow-cpu` "
            "(or `pip install -e '.[tfds]'`)"
        ) from err
    dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
    return _iterate_tfds(tfds.as_numpy(dataset), text_key, max_examples)


def load_corpus(
    spec: str, data_dir: str | None = None, max_examples: int | None = None
) -> list[str]:
    """Documents named by a corpus spec string.

    Specs:
      ``'embedded'``                      -> ``embedded_corpus()``;
      ``'tfds:NAME'`` / ``'tfds:NAME:SPLIT'`` -> ``read_tfds(NAME, SPLIT or 'train', ...)``,
                                           e.g. ``'tfds:wikipedia/20230601.en:train[:1%]'``;
      anything else                        -> ``read_text_files(spec)`` (file or directory).
    ``max_examples`` caps the number of TFDS examples; ``data_dir`` is TFDS's data dir.
    """
    if spec == "embedded":
        return embedded_corpus()
    if spec.startswith("tfds:"):
        name, _, split = spec[len("tfds:") :].partition(":")
        if not name:
            raise ValueError(f"corpus spec {spec!r} names no TFDS dataset")
        return list(read_tfds(name, split or "train", data_dir=data_dir, max_examples=max_examples))
    return read_text_files(spec)


# ---------------------------------------------------------------------------------------------
# Tokenization and packing
# ---------------------------------------------------------------------------------------------
def plain_tokenizer(tokenizer: tokenizers.Tokenizer) -> tokenizers.Tokenizer:
    """A copy of ``tokenizer`` with truncation and padding switched off (input untouched).

    Hub ``tokenizer.json`` files often carry ``truncation``/``padding`` settings (MiniLM's
    pads and truncates to 128) that would silently cut documents before packing.
    """
    copy = tokenizers.Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def _encode_chunk(
    tokenizer: tokenizers.Tokenizer, docs: list[str], doc_sep_id: int | None
) -> list[np.ndarray]:
    """Token ids of each document (no special tokens), optionally followed by ``doc_sep_id``."""
    out = []
    for encoding in tokenizer.encode_batch(docs, add_special_tokens=False):
        ids = np.asarray(encoding.ids, dtype=np.int32)
        if doc_sep_id is not None and ids.size:
            ids = np.append(ids, np.int32(doc_sep_id))
        out.append(ids)
    return out


def token_stream(
    docs: Iterable[str], tokenizer: tokenizers.Tokenizer, doc_sep_id: int | None = None
) -> np.ndarray:
    """All documents tokenized and concatenated: int32 [num_tokens].

    Encodes in batches of ``_ENCODE_CHUNK`` documents (``encode_batch`` runs in parallel in
    Rust), so memory is bounded by the ids, not by the Python ``Encoding`` objects.
    """
    tok = plain_tokenizer(tokenizer)
    pieces: list[np.ndarray] = []
    docs = iter(docs)
    while chunk := list(itertools.islice(docs, _ENCODE_CHUNK)):
        pieces.extend(_encode_chunk(tok, chunk, doc_sep_id))
    if not pieces:
        return np.zeros((0,), np.int32)
    return np.concatenate(pieces)


def pack_stream(
    stream: np.ndarray, seq_len: int, cls_id: int, sep_id: int, pad_id: int
) -> np.ndarray:
    """Cuts a token stream into rows ``[CLS] t_1 ... t_{seq_len-2} [SEP]``.

    Row i holds stream[i*b:(i+1)*b] with b = seq_len - 2. The last row, if partial, is
    ``[CLS] rest [SEP] [PAD] ...``. Vectorised: one reshape, no per-token Python.

    Args:
      stream: int [n] token ids, n >= 1.
    Returns:
      int32 [ceil(n / (seq_len - 2)), seq_len].
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3 to hold [CLS] x [SEP], got {seq_len}")
    body = seq_len - 2
    n = int(stream.shape[0])
    if n == 0:
        raise ValueError("corpus is empty: the token stream has no tokens to pack")
    rows = -(-n // body)
    padded = np.full((rows * body,), pad_id, np.int32)
    padded[:n] = stream
    out = np.full((rows, seq_len), pad_id, np.int32)
    out[:, 0] = cls_id
    out[:, 1 : 1 + body] = padded.reshape(rows, body)
    out[:-1, -1] = sep_id
    out[-1, 1 + n - (rows - 1) * body] = sep_id
    return out


def tokenize_and_pack(
    docs: Iterable[str],
    tokenizer: tokenizers.Tokenizer,
    seq_len: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    doc_sep_id: int | None = None,
) -> np.ndarray:
    """Tokenizes documents, concatenates them and packs fixed-length training rows.

    Each row is ``[CLS] tokens... [SEP]`` of exactly ``seq_len`` ids; the text crosses
    document boundaries (optionally marked by ``doc_sep_id`` after every document, RoBERTa
    style). Only the final row can be short; it is right-padded with ``pad_id``. The
    attention mask is ``rows != pad_id``.

    Args:
      docs: documents (strings).
      tokenizer: a ``tokenizers.Tokenizer``; its truncation/padding settings are ignored.
      seq_len: row length including [CLS] and [SEP] (>= 3).
      cls_id, sep_id, pad_id: ids of [CLS], [SEP], [PAD] in the tokenizer's vocabulary.
    Returns:
      int32 [N, seq_len].
    Raises:
      ValueError: the corpus yields no tokens ("corpus is empty ...") or seq_len < 3.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3 to hold [CLS] x [SEP], got {seq_len}")
    stream = token_stream(docs, tokenizer, doc_sep_id)
    if stream.size == 0:
        raise ValueError(
            "corpus is empty: no document produced any token "
            "(check the corpus spec and the tokenizer)"
        )
    return pack_stream(stream, seq_len, cls_id, sep_id, pad_id)


def split_train_heldout(
    seqs: np.ndarray, heldout_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random split of rows into (train, heldout).

    ``round(heldout_fraction * N)`` rows (at least 1 when the fraction is > 0) go to the
    held-out set, chosen by a permutation seeded with ``seed``. Both parts keep the original
    row order.

    Args:
      seqs: [N, ...] rows.
    Returns:
      (train [N - k, ...], heldout [k, ...]).
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    n = int(seqs.shape[0])
    k = int(np.floor(heldout_fraction * n + 0.5))
    if heldout_fraction > 0:
        k = max(k, 1)
    if k >= n:
        raise ValueError(
            f"held-out fraction {heldout_fraction} of {n} rows leaves no training rows"
        )
    perm = np.random.default_rng(seed).permutation(n)
    held = np.sort(perm[:k])
    train = np.sort(perm[k:])
    return seqs[train], seqs[held]
