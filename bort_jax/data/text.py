"""Text sources and packing for Bort's MLM + KD pretraining (de Wynter & Perry, 2020).

Documents (strings) come from one of three sources, each a lazy iterator so that no list of
all documents is ever held in memory: Python's own bundled documentation (``embedded_corpus``,
always available, no download), plain-text files on disk (``read_text_files``, read file by
file and line by line) or TensorFlow Datasets (``read_tfds``, optional dependency, iterated
through ``tfds.as_numpy``). They are tokenized with a ``tokenizers.Tokenizer`` in batches,
and the ids are written straight into a preallocated ``[max_sequences, seq_len]`` array of
``[CLS] tokens... [SEP]`` rows (``tokenize_and_pack``), RoBERTa's FULL-SENTENCES packing
without next-sentence pairs (Bort has no NSP head). Reading stops as soon as the array is
full. Why plain generators and not grain or tf.data: docs/data.md.
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
_BLANK = re.compile(r"[ \t\r\f\v]*")
_ENCODE_CHUNK = 1024  # most documents per encode_batch call
_FIRST_CHUNK = 16  # first call's documents; doubled per call up to _ENCODE_CHUNK
_MAX_PREALLOC_ROWS = 1 << 20  # rows allocated up front at most; grown by doubling beyond
_INITIAL_ROWS = 1024  # rows allocated up front without max_sequences


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------
def embedded_corpus() -> Iterator[str]:
    """Python's bundled help topics (``pydoc_data.topics.topics``), one document at a time.

    About 80 documents and 465k characters of English technical prose, shipped with every
    CPython, so smoke runs and tests need no download. Yielded in sorted topic-key order, so
    the sequence is identical on every call and machine running the same Python version.
    """
    from pydoc_data import topics  # Standard library; imported lazily as it is 0.5 MB.

    for key in sorted(topics.topics):
        doc = topics.topics[key].strip()
        if doc:
            yield doc


def split_documents(text: str) -> list[str]:
    """Split raw text into documents on blank lines; strips each and drops empty ones."""
    parts = (part.strip() for part in _BLANK_LINE.split(text.replace("\r\n", "\n")))
    return [part for part in parts if part]


def _line_documents(lines: Iterable[str]) -> Iterator[str]:
    """``split_documents`` over a stream of lines (each ending in "\\n" but maybe the last).

    A line of only spaces, tabs, \\r, \\f, \\v ends a document, as ``_BLANK_LINE`` does; the
    result equals ``split_documents("".join(lines))`` without joining the lines.
    """
    block: list[str] = []
    for line in lines:
        line = line[:-1] if line.endswith("\n") else line
        if _BLANK.fullmatch(line):
            if doc := "\n".join(block).strip():
                yield doc
            block = []
        else:
            block.append(line)
    if doc := "\n".join(block).strip():
        yield doc


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


def _no_text(path: str) -> ValueError:
    return ValueError(
        f"no text found in {path!r} (looked for non-empty documents in "
        f"files ending in {', '.join(TEXT_SUFFIXES)})"
    )


def _read_files(path: str, names: list[str]) -> Iterator[str]:
    found = False
    for name in names:
        with open(name, encoding="utf-8") as f:  # Universal newlines, as f.read() had.
            for doc in _line_documents(f):
                found = True
                yield doc
    if not found:
        raise _no_text(path)


def read_text_files(path: str | os.PathLike) -> Iterator[str]:
    """Documents from a text file, or from all text files below a directory (recursive).

    Files are read lazily, one line at a time, as UTF-8 in sorted path order; each is split
    into documents on blank lines (the same documents as ``split_documents`` of the whole
    file). Directories contribute only files ending in ``TEXT_SUFFIXES`` (.txt, .tokens as in
    WikiText, .raw).

    Raises:
      FileNotFoundError: ``path`` does not exist (at the call).
      ValueError: ``path`` holds no text file (at the call) or, once all files are read, no
        non-empty document (during iteration).
    """
    path = os.fspath(path)
    names = _text_files(path)
    if not names:
        raise _no_text(path)
    return _read_files(path, names)


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
    package works without TensorFlow. The split is a ``tf.data.Dataset`` iterated through
    ``tfds.as_numpy``: examples are decoded as they are consumed, never materialised as a
    whole. Files are read in a fixed order (``shuffle_files=False``) so the stream is
    deterministic. Nothing is downloaded (``download=False``): the dataset must already be
    prepared in ``data_dir`` (TFDS's default when None).

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
    dataset = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False, download=False)
    return _iterate_tfds(tfds.as_numpy(dataset), text_key, max_examples)


def load_corpus(
    spec: str, data_dir: str | None = None, max_examples: int | None = None
) -> Iterator[str]:
    """Documents named by a corpus spec string, as a one-pass iterator.

    Specs:
      ``'embedded'``                      -> ``embedded_corpus()``;
      ``'tfds:NAME'`` / ``'tfds:NAME:SPLIT'`` -> ``read_tfds(NAME, SPLIT or 'train', ...)``,
                                           e.g. ``'tfds:wikipedia/20230601.en:train[:1%]'``;
      anything else                        -> ``read_text_files(spec)`` (file or directory).
    ``max_examples`` caps the number of documents (TFDS: examples) of any source; ``data_dir``
    is TFDS's data dir. A bad spec (missing path, missing TFDS package) fails here, at the
    call, before any document is read. Wrap in ``list`` for a list.
    """
    if max_examples is not None and max_examples < 0:
        raise ValueError(f"max_examples must be >= 0 or None, got {max_examples}")
    if spec == "embedded":
        docs = embedded_corpus()
    elif spec.startswith("tfds:"):
        name, _, split = spec[len("tfds:") :].partition(":")
        if not name:
            raise ValueError(f"corpus spec {spec!r} names no TFDS dataset")
        return read_tfds(name, split or "train", data_dir=data_dir, max_examples=max_examples)
    else:
        docs = read_text_files(spec)
    return itertools.islice(docs, max_examples)


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


def encoded_chunks(
    docs: Iterable[str], tokenizer: tokenizers.Tokenizer, doc_sep_id: int | None = None
) -> Iterator[np.ndarray]:
    """The token stream of ``docs`` in pieces: int32 [n_i] per batch of documents.

    Documents are pulled from ``docs`` only as pieces are consumed, in batches of 16, 32, ...
    up to ``_ENCODE_CHUNK`` (``encode_batch`` runs in parallel in Rust), so a consumer that
    stops early reads few documents. Concatenated, the pieces are ``token_stream(docs)``.
    """
    tok = plain_tokenizer(tokenizer)
    docs = iter(docs)
    size = _FIRST_CHUNK
    while chunk := list(itertools.islice(docs, size)):
        yield np.concatenate(_encode_chunk(tok, chunk, doc_sep_id))
        size = min(2 * size, _ENCODE_CHUNK)


def token_stream(
    docs: Iterable[str], tokenizer: tokenizers.Tokenizer, doc_sep_id: int | None = None
) -> np.ndarray:
    """All documents tokenized and concatenated: int32 [num_tokens] (held whole in memory)."""
    pieces = list(encoded_chunks(docs, tokenizer, doc_sep_id))
    return np.concatenate(pieces) if pieces else np.zeros((0,), np.int32)


def _check_seq_len(seq_len: int) -> None:
    if seq_len < 3:
        raise ValueError(f"seq_len must be >= 3 to hold [CLS] x [SEP], got {seq_len}")


def _close_rows(out: np.ndarray, n: int, sep_id: int) -> np.ndarray:
    """Rows ``out[:ceil(n / body)]`` with [SEP] after the ``n`` body tokens written."""
    body = out.shape[1] - 2
    rows = -(-n // body)
    out = out[:rows]
    out[:-1, -1] = sep_id
    out[-1, 1 + n - (rows - 1) * body] = sep_id
    return out


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
    _check_seq_len(seq_len)
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
    return _close_rows(out, n, sep_id)


def _blank_rows(rows: int, seq_len: int, cls_id: int, pad_id: int) -> np.ndarray:
    out = np.full((rows, seq_len), pad_id, np.int32)
    out[:, 0] = cls_id
    return out


def pack_pieces(
    pieces: Iterable[np.ndarray],
    seq_len: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    max_sequences: int | None = None,
) -> np.ndarray:
    """``pack_stream`` of the concatenated ``pieces``, cut to ``max_sequences`` rows, streamed.

    Each piece's ids are written straight into a preallocated int32 [max_sequences, seq_len]
    array (at most ``_MAX_PREALLOC_ROWS`` rows up front, grown by doubling up to
    ``max_sequences``; without ``max_sequences`` grown by doubling as needed), and no piece
    is pulled once the array is full. The result equals
    ``pack_stream(np.concatenate(pieces), ...)[:max_sequences]``.

    Returns:
      int32 [min(max_sequences, ceil(n / (seq_len - 2))), seq_len] for n tokens in all.
    """
    _check_seq_len(seq_len)
    if max_sequences is not None and max_sequences < 1:
        raise ValueError(f"max_sequences must be >= 1 or None, got {max_sequences}")
    body = seq_len - 2
    limit = None if max_sequences is None else max_sequences * body
    cap = min(max_sequences or _INITIAL_ROWS, _MAX_PREALLOC_ROWS)
    out = _blank_rows(cap, seq_len, cls_id, pad_id)
    n = 0  # body tokens written so far
    for ids in pieces:
        if limit is not None:
            ids = ids[: limit - n]
        need = -(-(n + ids.size) // body)
        if need > out.shape[0]:
            grown = max(need, 2 * out.shape[0])
            grown = grown if max_sequences is None else min(grown, max_sequences)
            extra = _blank_rows(grown - out.shape[0], seq_len, cls_id, pad_id)
            out = np.concatenate([out, extra])
        pos = np.arange(n, n + ids.size)
        out[pos // body, 1 + pos % body] = ids
        n += ids.size
        if limit is not None and n >= limit:
            break
    if n == 0:
        raise ValueError(
            "corpus is empty: no document produced any token "
            "(check the corpus spec and the tokenizer)"
        )
    rows = -(-n // body)
    return _close_rows(out if rows == out.shape[0] else out[:rows].copy(), n, sep_id)


def tokenize_and_pack(
    docs: Iterable[str],
    tokenizer: tokenizers.Tokenizer,
    seq_len: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    doc_sep_id: int | None = None,
    max_sequences: int | None = None,
) -> np.ndarray:
    """Tokenizes documents, concatenates them and packs fixed-length training rows.

    Each row is ``[CLS] tokens... [SEP]`` of exactly ``seq_len`` ids; the text crosses
    document boundaries (optionally marked by ``doc_sep_id`` after every document, RoBERTa
    style). Only the final row can be short; it is right-padded with ``pad_id``. The
    attention mask is ``rows != pad_id``. Streamed (``encoded_chunks`` -> ``pack_pieces``):
    documents are read, encoded and written into the row array batch by batch, and reading
    stops once ``max_sequences`` rows are full. Equals
    ``pack_stream(token_stream(list(docs)), ...)[:max_sequences]``.

    Args:
      docs: documents (strings), any iterable; consumed once.
      tokenizer: a ``tokenizers.Tokenizer``; its truncation/padding settings are ignored.
      seq_len: row length including [CLS] and [SEP] (>= 3).
      cls_id, sep_id, pad_id: ids of [CLS], [SEP], [PAD] in the tokenizer's vocabulary.
      max_sequences: at most this many rows (None = the whole corpus).
    Returns:
      int32 [N, seq_len], N <= max_sequences.
    Raises:
      ValueError: the corpus yields no tokens ("corpus is empty ..."), seq_len < 3 or
        max_sequences < 1 (both before any document is read).
    """
    pieces = encoded_chunks(docs, tokenizer, doc_sep_id)  # Lazy: nothing read yet.
    return pack_pieces(pieces, seq_len, cls_id, sep_id, pad_id, max_sequences)


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
