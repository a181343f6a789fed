"""Tests for bort_jax.data.text and bort_jax.data.mlm."""

from __future__ import annotations

import itertools
import os
import sys
import types

import numpy as np
import pytest
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers

from bort_jax import hf
from bort_jax.data import mlm, text

TINY_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "a",
    "dog",
    "##s",
]
PAD, UNK, CLS, SEP, MASK = range(5)


def tiny_tokenizer() -> tokenizers.Tokenizer:
    """Lower-casing WordPiece tokenizer over ``TINY_VOCAB``."""
    vocab = {token: i for i, token in enumerate(TINY_VOCAB)}
    tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(TINY_VOCAB[:5])
    return tok


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_dir) -> tokenizers.Tokenizer:
    return tokenizers.Tokenizer.from_file(os.path.join(minilm_dir, "tokenizer.json"))


def random_rows(rng: np.random.Generator, batch: int, seq_len: int, vocab: int) -> np.ndarray:
    """[CLS] random-ids [SEP] rows with random-length padding tails; int32 [batch, seq_len]."""
    ids = rng.integers(5, vocab, size=(batch, seq_len)).astype(np.int32)
    lengths = rng.integers(3, seq_len + 1, size=batch)
    cols = np.arange(seq_len)[None, :]
    ids[:, 0] = CLS
    ids[cols == lengths[:, None] - 1] = SEP
    ids[cols >= lengths[:, None]] = PAD
    return ids


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------
def test_embedded_corpus_is_deterministic_prose():
    stream = text.embedded_corpus()
    assert iter(stream) is stream  # A generator, not a list.
    docs = list(stream)
    assert docs == list(text.embedded_corpus())
    assert len(docs) > 50
    assert sum(map(len, docs)) > 300_000
    assert all(isinstance(d, str) and d.strip() == d and d for d in docs)


def test_read_text_files_splits_on_blank_lines(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("first doc\nline two\n\n  \nsecond doc\n", encoding="utf-8")
    (tmp_path / "sub" / "b.tokens").write_text(" = Title = \n\nbody text\n", encoding="utf-8")
    (tmp_path / "ignored.json").write_text('{"not": "text"}', encoding="utf-8")
    docs = list(text.read_text_files(tmp_path))
    assert docs == ["first doc\nline two", "second doc", "= Title =", "body text"]
    assert list(text.read_text_files(tmp_path / "a.txt")) == docs[:2]
    assert list(text.load_corpus(str(tmp_path))) == docs
    assert list(text.load_corpus(str(tmp_path), max_examples=3)) == docs[:3]


def test_read_text_files_empty_names_path(tmp_path):
    (tmp_path / "blank.txt").write_text("\n\n   \n", encoding="utf-8")
    with pytest.raises(ValueError, match=str(tmp_path).replace("\\", r"\\")):
        list(text.read_text_files(tmp_path))
    with pytest.raises(FileNotFoundError):  # At the call, before iterating.
        text.read_text_files(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        text.load_corpus(str(tmp_path / "missing"))
    (tmp_path / "blank.txt").unlink()
    (tmp_path / "notes.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="no text found"):  # No text file: at the call.
        text.read_text_files(tmp_path)


@pytest.fixture
def fake_tfds(monkeypatch):
    """A stand-in ``tensorflow_datasets`` module recording its ``load`` calls."""
    calls = []

    def load(name, split, data_dir=None, shuffle_files=True, download=True):
        calls.append((name, split, data_dir, shuffle_files, download))
        return [{"text": f"{name} {split} doc {i}".encode(), "title": b"t"} for i in range(5)]

    module = types.ModuleType("tensorflow_datasets")
    module.load = load
    module.as_numpy = lambda dataset: iter(dataset)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls


def test_read_tfds_with_fake_module(fake_tfds):
    docs = list(text.read_tfds("wiki/1.0", "train[:1%]", data_dir="/d", max_examples=3))
    assert docs == [
        "wiki/1.0 train[:1%] doc 0",
        "wiki/1.0 train[:1%] doc 1",
        "wiki/1.0 train[:1%] doc 2",
    ]
    assert fake_tfds == [("wiki/1.0", "train[:1%]", "/d", False, False)]
    assert list(text.load_corpus("tfds:wikipedia/20230601.en"))[-1] == (
        "wikipedia/20230601.en train doc 4"
    )
    assert list(text.load_corpus("tfds:x/1:validation", max_examples=1)) == ["x/1 validation doc 0"]
    with pytest.raises(KeyError, match="body"):
        list(text.read_tfds("wiki/1.0", text_key="body"))


def test_read_tfds_missing_dependency_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # Makes the import fail.
    with pytest.raises(ImportError, match="pip install"):
        text.read_tfds("wikipedia/20230601.en")


# --------------------------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------------------------
def test_pack_hand_made_example():
    tok = tiny_tokenizer()
    docs = ["The cat sat", "on the mat", "dogs"]
    # Stream: the cat sat | on the mat | dog ##s = [5, 6, 7, 8, 5, 9, 11, 12]; body = 3.
    rows = text.tokenize_and_pack(docs, tok, seq_len=5, cls_id=CLS, sep_id=SEP, pad_id=PAD)
    expected = np.array(
        [[CLS, 5, 6, 7, SEP], [CLS, 8, 5, 9, SEP], [CLS, 11, 12, SEP, PAD]], np.int32
    )
    np.testing.assert_array_equal(rows, expected)
    assert rows.dtype == np.int32
    np.testing.assert_array_equal(
        (rows != PAD).astype(np.int32), [[1] * 5, [1] * 5, [1, 1, 1, 1, 0]]
    )
    # Exact fit: no padding row, and a document separator option.
    rows = text.tokenize_and_pack(["the cat sat"], tok, 5, CLS, SEP, PAD)
    np.testing.assert_array_equal(rows, [[CLS, 5, 6, 7, SEP]])
    rows = text.tokenize_and_pack(["the cat", "mat"], tok, 6, CLS, SEP, PAD, doc_sep_id=SEP)
    np.testing.assert_array_equal(rows, [[CLS, 5, 6, SEP, 9, SEP], [CLS, SEP, SEP, PAD, PAD, PAD]])


def test_pack_ignores_tokenizer_truncation_and_padding():
    tok = tiny_tokenizer()
    tok.enable_truncation(max_length=2)
    tok.enable_padding(length=10, pad_id=PAD)
    rows = text.tokenize_and_pack(["the cat sat on the mat"], tok, 8, CLS, SEP, PAD)
    np.testing.assert_array_equal(rows, [[CLS, 5, 6, 7, 8, 5, 9, SEP]])
    assert tok.truncation is not None and tok.padding is not None  # Caller's copy untouched.


def test_pack_empty_corpus_raises():
    tok = tiny_tokenizer()
    for docs in ([], ["", "   "]):
        with pytest.raises(ValueError, match="corpus is empty"):
            text.tokenize_and_pack(docs, tok, 8, CLS, SEP, PAD)
    with pytest.raises(ValueError, match="seq_len"):
        text.tokenize_and_pack(["the cat"], tok, 2, CLS, SEP, PAD)


def test_pack_embedded_corpus_with_minilm(minilm_tokenizer):
    docs = list(text.embedded_corpus())
    ids = hf.special_ids(minilm_tokenizer)
    cls, sep, pad = ids["cls"], ids["sep"], ids["pad"]
    assert (cls, sep, pad) == (101, 102, 0)
    rows = text.tokenize_and_pack(docs, minilm_tokenizer, 128, cls, sep, pad)
    # MiniLM's tokenizer.json truncates to 128; packing must see the full documents.
    assert len(minilm_tokenizer.encode(docs[0], add_special_tokens=False).ids) == 128
    plain = text.plain_tokenizer(minilm_tokenizer)
    n_tokens = sum(len(e.ids) for e in plain.encode_batch(docs, add_special_tokens=False))
    assert n_tokens > 100_000
    assert rows.shape == (-(-n_tokens // 126), 128) and rows.dtype == np.int32
    assert np.all(rows[:, 0] == cls)
    assert np.all(rows[:-1, -1] == sep)
    assert np.all(rows[:-1] != pad)
    last_len = n_tokens - (rows.shape[0] - 1) * 126
    assert rows[-1, last_len + 1] == sep and np.all(rows[-1, last_len + 2 :] == pad)
    assert int((rows != pad).sum()) == n_tokens + 2 * rows.shape[0]


def list_packing(docs, tokenizer, seq_len, cls, sep, pad, doc_sep_id=None, max_sequences=None):
    """The list-based packing the streamed one replaced: all documents in a list, the whole
    token stream in one array, packed, then cut to ``max_sequences`` rows."""
    docs = list(docs)
    rows = text.pack_stream(text.token_stream(docs, tokenizer, doc_sep_id), seq_len, cls, sep, pad)
    return rows[:max_sequences] if max_sequences else rows


def list_read_text_files(path) -> list[str]:
    """The former ``read_text_files``: each file read whole, then ``split_documents``."""
    docs = []
    for name in sorted(p for p in path.rglob("*") if p.suffix in text.TEXT_SUFFIXES):
        with open(name, encoding="utf-8") as f:
            docs.extend(text.split_documents(f.read()))
    return docs


def test_line_reader_equals_split_documents_on_random_text(tmp_path):
    rng = np.random.default_rng(0)
    alphabet = np.array(list("ab \n\n\n\t\r\f\v\x85\u2028"))
    for i in range(300):
        raw = "".join(rng.choice(alphabet, size=rng.integers(0, 40)))
        path = tmp_path / f"{i}.txt"
        path.write_text(raw, encoding="utf-8", newline="")  # Keep \r and \r\n as written.
        with open(path, encoding="utf-8") as f:
            expected = text.split_documents(f.read())
        got = list(text._read_files(str(path), [str(path)])) if expected else []
        assert got == expected, repr(raw)


def test_read_text_files_reads_file_by_file(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe not utf-8")
    docs = text.read_text_files(tmp_path)
    assert list(itertools.islice(docs, 2)) == ["one", "two"]  # b.txt not opened yet.
    with pytest.raises(UnicodeDecodeError):
        next(docs)


def test_streamed_packing_equals_list_packing_on_text_dir(tmp_path):
    tok = tiny_tokenizer()
    rng = np.random.default_rng(1)
    words = np.array(["the", "cat", "sat", "on", "a", "mat", "dogs", "\n", "\n\n", "\n \n"])
    for i in range(6):
        sub = tmp_path / f"d{i % 2}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i}.txt").write_text(" ".join(rng.choice(words, 200)), encoding="utf-8")
    docs = list_read_text_files(tmp_path)
    assert list(text.read_text_files(tmp_path)) == docs and len(docs) > 30
    for seq_len, max_sequences, doc_sep in [(5, None, None), (8, 7, SEP), (3, 1, None)]:
        expected = list_packing(docs, tok, seq_len, CLS, SEP, PAD, doc_sep, max_sequences)
        got = text.tokenize_and_pack(
            text.load_corpus(str(tmp_path)), tok, seq_len, CLS, SEP, PAD, doc_sep, max_sequences
        )
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == np.int32


def test_streamed_packing_equals_list_packing_on_embedded(minilm_tokenizer):
    ids = hf.special_ids(minilm_tokenizer)
    cls, sep, pad = ids["cls"], ids["sep"], ids["pad"]
    docs = list(text.embedded_corpus())
    full = list_packing(docs, minilm_tokenizer, 32, cls, sep, pad)
    assert full.shape[0] > 3000
    for max_sequences in (None, 1, 96, 640, full.shape[0], full.shape[0] + 5):
        got = text.tokenize_and_pack(
            text.load_corpus("embedded"), minilm_tokenizer, 32, cls, sep, pad,
            max_sequences=max_sequences,
        )  # fmt: skip
        np.testing.assert_array_equal(got, full[:max_sequences])
    with_sep = text.tokenize_and_pack(
        text.embedded_corpus(), minilm_tokenizer, 128, cls, sep, pad, doc_sep_id=sep
    )
    np.testing.assert_array_equal(
        with_sep, list_packing(docs, minilm_tokenizer, 128, cls, sep, pad, doc_sep_id=sep)
    )


def test_packing_stops_reading_when_full():
    tok = tiny_tokenizer()
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield "the cat sat"

    rows = text.tokenize_and_pack(endless(), tok, 5, CLS, SEP, PAD, max_sequences=3)
    np.testing.assert_array_equal(rows, [[CLS, 5, 6, 7, SEP]] * 3)
    assert len(pulled) == text._FIRST_CHUNK  # One encode batch, not the (endless) corpus.
    pulled.clear()
    with pytest.raises(ValueError, match="max_sequences"):
        text.tokenize_and_pack(endless(), tok, 5, CLS, SEP, PAD, max_sequences=0)
    with pytest.raises(ValueError, match="seq_len"):
        text.tokenize_and_pack(endless(), tok, 2, CLS, SEP, PAD, max_sequences=3)
    assert pulled == []  # Bad arguments fail before any document is read.


def test_pack_pieces_grows_and_equals_pack_stream(monkeypatch):
    monkeypatch.setattr(text, "_MAX_PREALLOC_ROWS", 2)  # Force growth by doubling.
    rng = np.random.default_rng(2)
    pieces = [rng.integers(5, 13, size=rng.integers(0, 30)).astype(np.int32) for _ in range(40)]
    stream = np.concatenate(pieces)
    for seq_len in (3, 4, 9, 64):
        full = text.pack_stream(stream, seq_len, CLS, SEP, PAD)
        for max_sequences in (None, 1, 2, 3, 17, full.shape[0], full.shape[0] + 1, 10**9):
            got = text.pack_pieces(iter(pieces), seq_len, CLS, SEP, PAD, max_sequences)
            np.testing.assert_array_equal(got, full[:max_sequences])


def test_split_train_heldout_deterministic():
    seqs = np.arange(200).reshape(100, 2)
    train, held = text.split_train_heldout(seqs, 0.1, seed=3)
    train2, held2 = text.split_train_heldout(seqs, 0.1, seed=3)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(held, held2)
    assert train.shape == (90, 2) and held.shape == (10, 2)
    assert set(train[:, 0]) | set(held[:, 0]) == set(seqs[:, 0])
    assert not set(train[:, 0]) & set(held[:, 0])
    _, held3 = text.split_train_heldout(seqs, 0.1, seed=4)
    assert not np.array_equal(held, held3)
    assert text.split_train_heldout(seqs[:5], 0.01, seed=0)[1].shape == (1, 2)
    with pytest.raises(ValueError):
        text.split_train_heldout(seqs, 1.0, seed=0)


# --------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------
def test_mask_tokens_statistics():
    vocab = 1000
    ids = random_rows(np.random.default_rng(0), 4000, 64, vocab)
    special = [PAD, UNK, CLS, SEP, MASK]
    out = mlm.mask_tokens(ids, np.random.default_rng(1), vocab, MASK, special)
    pos, tgt, w = out["mlm_positions"], out["mlm_ids"], out["mlm_weights"]
    assert pos.shape == tgt.shape == w.shape == (4000, 10)  # ceil(0.15 * 64) = 10.
    assert (out["input_ids"].dtype, pos.dtype, tgt.dtype, w.dtype) == (
        np.int32,
        np.int32,
        np.int32,
        np.float32,
    )
    sel = w > 0
    rows = np.broadcast_to(np.arange(4000)[:, None], pos.shape)
    # Targets are the original tokens; none is special or padding.
    np.testing.assert_array_equal(tgt[sel], ids[rows[sel], pos[sel]])
    assert not np.isin(tgt[sel], special).any()
    assert np.all(pos[~sel] == 0) and np.all(tgt[~sel] == 0)
    # Positions distinct and ascending within each row.
    assert np.all(sel[:, :-1] >= sel[:, 1:])  # Real predictions first, padding slots last.
    assert np.all(np.diff(pos, axis=1)[sel[:, 1:]] > 0)
    # ~15% of the maskable positions predicted.
    candidates = ~np.isin(ids, special)
    frac = sel.sum() / candidates.sum()
    assert abs(frac - 0.15) < 0.01, frac
    # Unselected positions are untouched.
    changed = out["input_ids"] != ids
    selected_map = np.zeros_like(candidates)
    selected_map[rows[sel], pos[sel]] = True
    assert not changed[~selected_map].any()
    # 80 / 10 / 10 among the selected.
    new = out["input_ids"][rows[sel], pos[sel]]
    orig = tgt[sel]
    n = sel.sum()
    masked = np.mean(new == MASK)
    random = np.mean((new != MASK) & (new != orig))
    kept = np.mean(new == orig)
    assert abs(masked - 0.8) < 0.015, masked
    assert abs(random - 0.1) < 0.015, random
    assert abs(kept - 0.1) < 0.015, kept
    assert n > 15_000
    assert not np.isin(new[new != MASK], special).any()  # Random tokens are never special.


def test_mask_tokens_edge_cases():
    special = [PAD, CLS, SEP, MASK]
    ids = np.array([[CLS, SEP, PAD, PAD], [CLS, 7, SEP, PAD]], np.int32)
    out = mlm.mask_tokens(ids, np.random.default_rng(0), 20, MASK, special, max_predictions=3)
    np.testing.assert_array_equal(out["mlm_weights"], [[0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(out["mlm_positions"][1], [1, 0, 0])
    np.testing.assert_array_equal(out["mlm_ids"][1], [7, 0, 0])
    # max_predictions caps the count; 1-D input keeps its rank.
    row = np.arange(10, 50, dtype=np.int32)
    out = mlm.mask_tokens(row, np.random.default_rng(0), 60, MASK, special, 0.5, 4)
    assert out["input_ids"].shape == (40,) and out["mlm_weights"].sum() == 4


def test_mask_tokens_deterministic():
    ids = random_rows(np.random.default_rng(0), 8, 32, 100)
    a = mlm.mask_tokens(ids, np.random.default_rng(7), 100, MASK, [PAD, CLS, SEP])
    b = mlm.mask_tokens(ids, np.random.default_rng(7), 100, MASK, [PAD, CLS, SEP])
    c = mlm.mask_tokens(ids, np.random.default_rng(8), 100, MASK, [PAD, CLS, SEP])
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["input_ids"], c["input_ids"])


# --------------------------------------------------------------------------------------------
# Compatibility checks
# --------------------------------------------------------------------------------------------
def test_check_vocab_compat(minilm_dir, minilm_tokenizer):
    vocab_txt = os.path.join(minilm_dir, "vocab.txt")
    mlm.check_vocab_compat(minilm_tokenizer, vocab_txt)
    mlm.check_vocab_compat(minilm_dir, minilm_tokenizer)
    base = {token: i for i, token in enumerate(TINY_VOCAB)}
    mlm.check_vocab_compat(tiny_tokenizer(), base)
    with pytest.raises(ValueError, match="sizes differ: student has 13 tokens, teacher has 30522"):
        mlm.check_vocab_compat(base, vocab_txt)
    swapped = dict(base, cat=7, sat=6)
    with pytest.raises(ValueError, match="token id 6 is 'sat' in the student"):
        mlm.check_vocab_compat(swapped, base)
    special = dict(base, **{"[MASK]": 5, "the": 4})
    with pytest.raises(ValueError, match=r"special token '\[MASK\]' has id 5 in the student"):
        mlm.check_vocab_compat(special, base)


def test_check_seq_len():
    from bort_jax.arch import Spec, check_seq_len

    check_seq_len(512, Spec(max_positions=512))
    with pytest.raises(ValueError, match="seq_len=513 exceeds the model.s 512 usable"):
        check_seq_len(513, Spec(max_positions=512))
    with pytest.raises(ValueError, match="max_seq_len=513 exceeds the model.s 512 usable"):
        check_seq_len(513, Spec(max_positions=514, position_offset=2), "max_seq_len")
    with pytest.raises(ValueError, match=">= 3"):
        check_seq_len(2, Spec())
