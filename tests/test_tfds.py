"""The TFDS paths against the real tensorflow-datasets package, on its mocked data.

``tfds.testing.mock_data`` makes ``tfds.load`` return random examples shaped by each
builder's real feature spec (nothing is downloaded; it needs TensorFlow). Skipped when
tensorflow-datasets is not installed (``pip install -e ".[tfds]"``; docs/data.md).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tokenizers

from bort_jax import hf
from bort_jax.data import text
from bort_jax.tasks import read_tfds

tfds = pytest.importorskip(
    "tensorflow_datasets", reason="tensorflow-datasets not installed (pip install -e '.[tfds]')"
)

WIKI = "wikipedia/20230601.en"


@pytest.fixture(scope="module", autouse=True)
def mocked():
    with tfds.testing.mock_data(num_examples=9):
        yield


def raw_records(name: str, split: str) -> list[dict]:
    """The mocked split as ``tfds.as_numpy`` yields it: the independent reference."""
    return list(tfds.as_numpy(tfds.load(name, split=split, shuffle_files=False)))


def test_tfds_corpus_streams_the_text_feature():
    expected = [r["text"].decode("utf-8") for r in raw_records(WIKI, "train")]
    assert len(expected) == 9 and all(isinstance(d, str) and d for d in expected)
    docs = text.load_corpus(f"tfds:{WIKI}")
    assert iter(docs) is docs  # A one-pass iterator, not a list.
    assert list(docs) == expected
    assert list(text.load_corpus(f"tfds:{WIKI}:train", max_examples=4)) == expected[:4]
    with pytest.raises(KeyError, match="body"):
        next(text.read_tfds(WIKI, text_key="body"))


def test_tfds_corpus_packing_equals_list_packing(minilm_dir):
    tok = tokenizers.Tokenizer.from_file(os.path.join(minilm_dir, "tokenizer.json"))
    ids = hf.special_ids(tok)
    args = (tok, 16, ids["cls"], ids["sep"], ids["pad"])
    docs = list(text.load_corpus(f"tfds:{WIKI}"))
    full = text.pack_stream(text.token_stream(docs, tok), 16, *args[2:])
    assert full.shape[0] > 5
    for max_sequences in (None, 3):
        got = text.tokenize_and_pack(
            text.load_corpus(f"tfds:{WIKI}"), *args, max_sequences=max_sequences
        )
        np.testing.assert_array_equal(got, full[:max_sequences])


def test_task_reader_maps_tfds_features():
    sst2 = raw_records("glue/sst2", "train")
    got = read_tfds("sst2", "train")
    assert [e.text_a for e in got] == [r["sentence"].decode() for r in sst2]
    assert [e.label for e in got] == [int(r["label"]) for r in sst2]
    assert [e.idx for e in got] == [int(r["idx"]) for r in sst2]

    mnli = raw_records("glue/mnli", "validation_matched")
    got = read_tfds("mnli", "dev_matched")
    assert [(e.text_a, e.text_b) for e in got] == [
        (r["premise"].decode(), r["hypothesis"].decode()) for r in mnli
    ]
    assert [e.label for e in got] == [int(r["label"]) for r in mnli]

    stsb = raw_records("glue/stsb", "validation")
    got = read_tfds("stsb", "dev")
    np.testing.assert_allclose([e.label for e in got], [float(r["label"]) for r in stsb])
    assert [e.text_b for e in got] == [r["sentence2"].decode() for r in stsb]

    copa = raw_records("super_glue/copa", "train")
    got = read_tfds("copa", "train")
    assert [e.choices for e in got] == [
        [r["choice1"].decode(), r["choice2"].decode()] for r in copa
    ]
    assert [e.text_a for e in got] == [r["premise"].decode() for r in copa]
    assert [e.label for e in got] == [int(r["label"]) for r in copa]

    multirc = raw_records("super_glue/multirc", "validation")
    got = read_tfds("multirc", "dev")
    assert [e.group for e in got] == [
        f"{int(r['idx']['paragraph'])}-{int(r['idx']['question'])}" for r in multirc
    ]
    assert [e.label for e in got] == [int(r["label"]) for r in multirc]
