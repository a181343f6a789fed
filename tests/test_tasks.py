"""Tests for bort_jax.tasks: registry, readers (real GLUE/SuperGLUE files and fixtures), TFDS
field mapping (with a fake ``tensorflow_datasets``), label remapping and metrics.

Real files: the slices in ``tests/fixtures/data`` always; the whole files (their counts are in
``docs/data.md``) only in ``full_data`` tests, when ``BORT_DATA_DIR`` is set.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bort_jax import tasks as T


def _label_counts(examples: list[T.Example]) -> dict:
    return dict(Counter(e.label for e in examples))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    return _write(path, "".join(json.dumps(r) + "\n" for r in records))


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    "alias,canonical",
    [
        ("sst2", "sst2"),
        ("SST-2", "sst2"),
        ("glue/sst2", "sst2"),
        ("MNLI", "mnli"),
        ("cb", "cb"),
        ("CB", "cb"),
        ("superglue_rte", "superglue_rte"),
        ("super_glue/rte", "superglue_rte"),
        ("rte", "rte"),
        ("STS-B", "stsb"),
        ("CoLA", "cola"),
        ("race", "race"),
        ("RACE-m", "race_m"),
        ("race_high", "race_h"),
        ("MultiRC", "multirc"),
    ],
)
def test_get_task_aliases(alias, canonical):
    assert T.get_task(alias).name == canonical


def test_get_task_unknown_lists_valid_names():
    with pytest.raises(ValueError) as err:
        T.get_task("sst3")
    for name in ("sst2", "mnli", "superglue_rte", "race"):
        assert name in str(err.value)


def test_task_definitions():
    assert len(T.GLUE_TASKS) == 9 and len(T.SUPERGLUE_TASKS) == 7
    for task in T.TASKS.values():
        assert task.primary_metric in task.metric_names
    stsb = T.get_task("stsb")
    assert stsb.kind == "regression" and stsb.num_labels == 1 and stsb.label_range == (0, 5)
    mnli = T.get_task("mnli")
    assert mnli.label_names == ("entailment", "neutral", "contradiction")
    assert mnli.eval_splits == ("dev_matched", "dev_mismatched")
    assert T.get_task("copa").num_choices == 2 and T.get_task("race").num_choices == 4
    assert T.get_task("race_m").subsets == ("middle",)
    assert T.get_task("cb").metric_names == ("f1_macro", "accuracy")
    assert T.get_task("multirc").metric_names == ("f1a", "em")
    assert T.get_task("cola").metric_names == ("mcc",)
    assert T.get_task("mrpc").primary_metric == "f1"
    with pytest.raises(ValueError):
        T.Task(
            name="bad",
            benchmark="glue",
            kind="classification",
            label_names=("a",),
            num_labels=2,
            metric_names=("accuracy",),
            primary_metric="accuracy",
            text_fields=("x",),
            dir_name="X",
        )


def test_canonical_split():
    assert T.canonical_split(T.get_task("sst2"), "validation") == "dev"
    assert T.canonical_split(T.get_task("cb"), "val") == "dev"
    assert T.canonical_split(T.get_task("mnli"), "validation_mismatched") == "dev_mismatched"
    with pytest.raises(ValueError, match="dev_matched"):
        T.canonical_split(T.get_task("mnli"), "dev")


# --------------------------------------------------------------------------- real files
# Slices of the real files live in tests/fixtures/data (tests/fixtures/README.md); the
# whole files, when present, in $BORT_DATA_DIR (docs/data.md; tests marked full_data).

# (task, split, rows, {label: count}) of the slices in tests/fixtures/data.
SLICES = [
    ("cola", "train", 65, {1: 49, 0: 16}),
    ("cola", "dev", 65, {1: 45, 0: 20}),
    ("sst2", "train", 65, {1: 28, 0: 37}),
    ("sst2", "dev", 65, {1: 32, 0: 33}),
    ("mrpc", "train", 65, {1: 39, 0: 26}),
    ("mrpc", "dev", 65, {1: 44, 0: 21}),
    ("rte", "train", 65, {0: 30, 1: 35}),  # 0 = entailment
    ("rte", "dev", 65, {0: 32, 1: 33}),
    ("wnli", "train", 65, {1: 33, 0: 32}),
    ("wnli", "dev", 65, {1: 28, 0: 37}),
    ("qnli", "dev", 70, {0: 37, 1: 33}),
    ("cb", "train", 65, {0: 48, 1: 16, 2: 1}),  # entailment/contradiction/neutral
    ("cb", "dev", 56, {0: 23, 1: 28, 2: 5}),  # the whole file
    ("superglue_rte", "train", 65, {0: 30, 1: 35}),
    ("superglue_rte", "dev", 65, {0: 32, 1: 33}),
    ("copa", "dev", 65, {0: 34, 1: 31}),
    ("wic", "dev", 65, {0: 33, 1: 32}),
]
SLICE_STSB = [("train", 66), ("dev", 65)]

# (task, split, rows, {label: count}) of the whole files, from docs/data.md.
FULL_FILES = [
    ("cola", "train", 8551, {1: 6023, 0: 2528}),
    ("cola", "dev", 1043, {1: 721, 0: 322}),
    ("sst2", "train", 67349, {1: 37569, 0: 29780}),
    ("sst2", "dev", 872, {1: 444, 0: 428}),
    ("mrpc", "train", 3668, {1: 2474, 0: 1194}),
    ("mrpc", "dev", 408, {1: 279, 0: 129}),
    ("rte", "train", 2490, {0: 1249, 1: 1241}),
    ("rte", "dev", 277, {0: 146, 1: 131}),
    ("wnli", "train", 635, {1: 312, 0: 323}),
    ("wnli", "dev", 71, {1: 31, 0: 40}),
    ("qnli", "dev", 5463, {0: 2702, 1: 2761}),
    ("cb", "train", 250, {0: 115, 1: 119, 2: 16}),
    ("cb", "dev", 56, {0: 23, 1: 28, 2: 5}),
    ("superglue_rte", "train", 2490, {0: 1249, 1: 1241}),
    ("superglue_rte", "dev", 277, {0: 146, 1: 131}),
    ("copa", "dev", 100, {0: 55, 1: 45}),
    ("wic", "dev", 638, {0: 319, 1: 319}),
]
FULL_STSB = [("train", 5749), ("dev", 1500)]
QNLI_STRAY_QUOTES = [694, 3428, 3479, 3529, 4080]  # sentence starts with a stray '"'


def _check_file(data: Path, name: str, split: str, rows: int, counts: dict) -> None:
    """Row and label counts of one split; every example has the task's text fields."""
    examples = T.read_split(name, data, split)
    assert len(examples) == rows
    assert _label_counts(examples) == counts
    task = T.get_task(name)
    for ex in examples:
        assert isinstance(ex.text_a, str) and ex.text_a
        assert (ex.text_b is None) == (len(task.text_fields) == 1)


def _check_stsb(data: Path, split: str, rows: int) -> None:
    """STS-B: float scores spanning the whole 0-5 range, two sentences per row."""
    examples = T.read_split("sts-b", data / "glue" / "STS-B", split)
    scores = np.array([e.label for e in examples])
    assert len(examples) == rows and scores.dtype == np.float64
    assert scores.min() == 0.0 and scores.max() == 5.0
    assert all(e.text_b for e in examples)


def _check_details(data: Path, cola_dev_rows: int) -> None:
    """Format quirks that hold for the whole files and for their slices alike."""
    # CoLA dev: no header and no final newline; the last row must still be read.
    raw = (data / "glue" / "CoLA" / "dev.tsv").read_bytes()
    assert raw.startswith(b"gj04\t1\t\t") and not raw.endswith(b"\n")
    cola = T.read_split("cola", data / "glue", "dev")
    assert len(cola) == cola_dev_rows
    assert cola[0].text_a == "The sailors rode the breeze clear of the rocks."
    assert cola[-1].text_a == "John talked to Bill about himself." and cola[-1].label == 1
    assert cola[-1].idx == cola_dev_rows - 1
    # MRPC: BOM stripped from the header, quotes kept as-is (QUOTE_NONE), untokenized text.
    assert (data / "glue" / "MRPC" / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t")
    mrpc = T.read_split("mrpc", data, "dev")
    assert mrpc[0].text_b.startswith('"The foodservice pie business')
    assert 'whom he called "the witness", of' in T.read_split("mrpc", data, "train")[0].text_a
    # QNLI: the stray leading quote of row 694 (and four others) is kept.
    qnli = {e.idx: e for e in T.read_split("qnli", data, "validation")}
    assert qnli[694].text_b.startswith('" Luis Walter Alvarez') and qnli[694].label == 1
    assert all(qnli[i].text_b.startswith('" ') for i in QNLI_STRAY_QUOTES)
    # SST-2 keeps the trailing space of the official text.
    assert T.read_split("sst2", data, "dev")[0].text_a.endswith("journey . ")
    # WiC keeps word and offsets; COPA has two choices.
    wic = T.read_split("wic", data, "val")[0]
    assert wic.meta["word"] == "class" and wic.label == 0
    assert wic.text_a[wic.meta["start1"] : wic.meta["end1"]] == "class"
    copa = T.read_split("copa", data, "val")[0]
    assert copa.choices == ["The toilet filled with water.", "Water flowed from the spout."]
    assert copa.text_b == "effect" and copa.label == 1
    # A root holding glue/ and superglue/ picks the right RTE release per task.
    for split in ("train", "dev"):
        glue = T.read_split("rte", data, split)
        sg = T.read_split("superglue_rte", data, split)
        assert [e.label for e in glue] == [e.label for e in sg] and glue[0].idx == sg[0].idx


def _make_slices(src: Path, out: Path) -> dict[str, bytes]:
    """Runs tests/fixtures/make_task_slices.py on ``src``; returns {relative path: bytes}."""
    script = Path(__file__).resolve().parent / "fixtures" / "make_task_slices.py"
    done = subprocess.run(
        [sys.executable, str(script), str(src), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return _tree_bytes(out)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by its path relative to ``root``."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("name,split,rows,counts", SLICES)
def test_slice_counts(task_data_dir, name, split, rows, counts):
    _check_file(task_data_dir, name, split, rows, counts)
    assert sorted(counts) == list(range(T.get_task(name).num_labels))  # every label present


@pytest.mark.parametrize("split,rows", SLICE_STSB)
def test_slice_stsb(task_data_dir, split, rows):
    _check_stsb(task_data_dir, split, rows)


def test_slice_details(task_data_dir):
    _check_details(task_data_dir, cola_dev_rows=65)
    # The slices stay within the size the README of tests/fixtures promises.
    assert sum(len(b) for b in _tree_bytes(task_data_dir).values()) < 500_000


def test_slices_regenerate_from_themselves(task_data_dir, tmp_path):
    # Every selection rule keeps the same rows of a slice as of the whole file, so slicing
    # the slices is the identity: the script, its file list and the fixtures agree.
    assert _make_slices(task_data_dir, tmp_path) == _tree_bytes(task_data_dir)


@pytest.mark.full_data
@pytest.mark.parametrize("name,split,rows,counts", FULL_FILES)
def test_full_file_counts(full_data_dir, name, split, rows, counts):
    _check_file(full_data_dir, name, split, rows, counts)


@pytest.mark.full_data
@pytest.mark.parametrize("split,rows", FULL_STSB)
def test_full_stsb(full_data_dir, split, rows):
    _check_stsb(full_data_dir, split, rows)


@pytest.mark.full_data
def test_full_details(full_data_dir):
    _check_details(full_data_dir, cola_dev_rows=1043)


@pytest.mark.full_data
def test_slices_are_cut_from_full_files(full_data_dir, task_data_dir, tmp_path):
    assert _make_slices(full_data_dir, tmp_path) == _tree_bytes(task_data_dir)


def test_missing_file_names_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.tsv"):
        T.read_split("cola", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"val\.jsonl"):
        T.read_split("cb", tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="middle"):
        T.read_split("race", tmp_path, "dev")


# --------------------------------------------------------------------------- GLUE fixtures

_MNLI_HEAD = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse"
    "\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2"
)


def _mnli_row(i: int, s1: str, s2: str, labels: list[str]) -> str:
    parse = "( x )"
    return (
        "\t".join([str(i), "1", f"{i}e", "fiction", parse, parse, parse, parse, s1, s2, *labels])
        + "\n"
    )


def test_mnli_fixture(tmp_path):
    head = _MNLI_HEAD + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
    rows = [
        ("A man sleeps.", "A person rests.", "entailment"),
        ("A dog runs.", "A cat sits.", "contradiction"),
        ('"Quoted start', "Maybe.", "neutral"),
    ]
    text = head + "".join(_mnli_row(i, a, b, [g] * 5 + [g]) for i, (a, b, g) in enumerate(rows))
    _write(tmp_path / "MNLI" / "dev_matched.tsv", text)
    _write(tmp_path / "MNLI" / "dev_mismatched.tsv", text)
    _write(tmp_path / "MNLI" / "test_matched.tsv", _MNLI_HEAD + "\n" + _mnli_row(0, "P.", "H.", []))
    dev = T.read_split("mnli", tmp_path, "dev_matched")
    assert [e.label for e in dev] == [0, 2, 1]  # entailment, contradiction, neutral (GLUE order)
    assert dev[2].text_a == '"Quoted start' and dev[1].text_b == "A cat sits."
    assert len(T.read_split("mnli", tmp_path / "MNLI", "validation_mismatched")) == 3
    test = T.read_split("mnli", tmp_path, "test_matched")
    assert len(test) == 1 and test[0].label is None and test[0].text_b == "H."


def test_qqp_fixture_and_malformed_rows(tmp_path):
    head = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    good = "7\t1\t2\tHow do I cook rice?\tWhat is the way to cook rice?\t1\n"
    bad = '"\tWas this row broken?\t0\n'
    _write(tmp_path / "QQP" / "train.tsv", head + good + bad + good)
    with pytest.raises(ValueError, match=r"train\.tsv:3: expected 6"):
        T.read_split("qqp", tmp_path, "train")
    with pytest.warns(UserWarning, match="skipped 1"):
        lenient = T.read_split("qqp", tmp_path, "train", strict=False)
    assert len(lenient) == 2 and lenient[0].idx == 7 and lenient[0].label == 1
    _write(tmp_path / "QQP" / "test.tsv", "id\tquestion1\tquestion2\n0\tA?\tB?\n")
    test = T.read_split("qqp", tmp_path, "test")
    assert test[0].label is None and (test[0].text_a, test[0].text_b) == ("A?", "B?")


def test_glue_bad_label_and_test_headers(tmp_path):
    _write(
        tmp_path / "RTE" / "train.tsv",
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tmaybe\n",
    )
    with pytest.raises(ValueError, match=r"train\.tsv:3: unknown label 'maybe'"):
        T.read_split("rte", tmp_path, "train")
    # CoLA test has a header (index, sentence); train/dev do not.
    _write(tmp_path / "CoLA" / "test.tsv", "index\tsentence\n0\tBill left.\n1\tLeft Bill.\n")
    test = T.read_split("cola", tmp_path, "test")
    assert [(e.idx, e.text_a, e.label) for e in test] == [
        (0, "Bill left.", None),
        (1, "Left Bill.", None),
    ]
    _write(tmp_path / "CoLA" / "train.tsv", "src\t1\t\tOk.\nsrc\t0\t*\n")
    with pytest.raises(ValueError, match=r"train\.tsv:2: expected 4"):
        T.read_split("cola", tmp_path, "train")
    _write(
        tmp_path / "STS-B" / "test.tsv",
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\n"
        "0\tmain-news\theadlines\t2016\t0001\tnone\tnone\tA b.\tC d.\n",
    )
    assert T.read_split("stsb", tmp_path, "test")[0].label is None


# --------------------------------------------------------------------------- SuperGLUE fixtures


def test_boolq_fixture(tmp_path):
    _write_jsonl(
        tmp_path / "BoolQ" / "val.jsonl",
        [
            {"question": "is the sky blue", "passage": "The sky is blue.", "idx": 0, "label": True},
            {"question": "is fire cold", "passage": "Fire is hot.", "idx": 1, "label": False},
        ],
    )
    _write_jsonl(tmp_path / "BoolQ" / "test.jsonl", [{"question": "q", "passage": "p", "idx": 0}])
    dev = T.read_split("boolq", tmp_path, "dev")
    assert [(e.text_a, e.text_b, e.label) for e in dev] == [
        ("is the sky blue", "The sky is blue.", 1),
        ("is fire cold", "Fire is hot.", 0),
    ]
    assert T.read_split("boolq", tmp_path, "test")[0].label is None


def test_multirc_fixture(tmp_path):
    record = {
        "idx": 3,
        "version": 1.1,
        "passage": {
            "text": "Sam has a red car and a blue bike.",
            "questions": [
                {
                    "question": "What color is the car?",
                    "idx": 0,
                    "answers": [
                        {"text": "red", "idx": 0, "label": 1},
                        {"text": "blue", "idx": 1, "label": 0},
                    ],
                },
                {
                    "question": "What does Sam have?",
                    "idx": 1,
                    "answers": [
                        {"text": "a car", "idx": 2, "label": 1},
                        {"text": "a bike", "idx": 3, "label": 1},
                        {"text": "a boat", "idx": 4, "label": 0},
                    ],
                },
            ],
        },
    }
    _write_jsonl(tmp_path / "MultiRC" / "train.jsonl", [record])
    ex = T.read_split("multirc", tmp_path, "train")
    assert len(ex) == 5
    assert [e.group for e in ex] == ["3-0", "3-0", "3-1", "3-1", "3-1"]
    assert [e.label for e in ex] == [1, 0, 1, 1, 0]
    assert ex[0].text_a == "Sam has a red car and a blue bike."
    assert ex[0].text_b == "What color is the car? red" and ex[4].meta["answer"] == "a boat"
    # Predicting all-true: q0 wrong (blue), q1 wrong (boat) -> EM 0; TP=3, FP=2, FN=0 -> F1a 6/8.
    got = T.compute_metrics(
        "multirc", np.ones(5, int), [e.label for e in ex], groups=[e.group for e in ex]
    )
    assert got == pytest.approx({"f1a": 0.75, "em": 0.0})


def test_wsc_fixture_and_bad_json(tmp_path):
    rec = {
        "text": "Mark told Pete many lies about himself. He should have been truthful.",
        "target": {"span1_index": 0, "span1_text": "Mark", "span2_index": 7, "span2_text": "He"},
        "idx": 0,
        "label": True,
    }
    path = _write_jsonl(tmp_path / "WSC" / "train.jsonl", [rec])
    ex = T.read_split("wsc", tmp_path, "train")[0]
    assert ex.label == 1 and ex.text_a == rec["text"] and ex.text_b == "He refers to Mark"
    assert ex.meta["span2_index"] == 7
    path.write_text(json.dumps(rec) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"train\.jsonl:2"):
        T.read_split("wsc", tmp_path, "train")
    path.write_text(json.dumps({"text": "x", "idx": 0}) + "\n")
    with pytest.raises(ValueError, match=r"train\.jsonl:1: missing field 'target'"):
        T.read_split("wsc", tmp_path, "train")


# --------------------------------------------------------------------------- RACE fixture


def _race_article(aid: str, answers: list[str]) -> dict:
    n = len(answers)
    return {
        "id": aid,
        "article": f"Article {aid}.",
        "answers": answers,
        "questions": [f"Q{i} _ ." for i in range(n)],
        "options": [[f"o{i}{c}" for c in "ABCD"] for i in range(n)],
    }


def test_race_fixture(tmp_path):
    root = tmp_path / "RACE" / "dev"
    for name, answers in [("1", ["B"]), ("10", ["D", "A"]), ("2", ["C"])]:
        _write(
            root / "middle" / f"{name}.txt", json.dumps(_race_article(f"middle{name}.txt", answers))
        )
    _write(root / "high" / "5.txt", json.dumps(_race_article("high5.txt", ["A"])))
    both = T.read_split("race", tmp_path, "dev")
    # Natural order within a level: 1, 2, 10; then high.
    assert [e.idx for e in both] == [
        "middle/1-0",
        "middle/2-0",
        "middle/10-0",
        "middle/10-1",
        "high/5-0",
    ]
    assert [e.label for e in both] == [1, 2, 3, 0, 0]
    assert both[2].choices == ["o0A", "o0B", "o0C", "o0D"] and both[2].text_b == "Q0 _ ."
    assert both[2].group == both[3].group == "middle/10"
    assert len(T.read_split("race_m", tmp_path / "RACE", "dev")) == 4
    assert len(T.read_split("race-h", tmp_path, "dev")) == 1
    bad = _race_article("high6.txt", ["A"])
    bad["options"] = [["only", "three", "options"]]
    _write(root / "high" / "6.txt", json.dumps(bad))
    with pytest.raises(ValueError, match=r"6\.txt.*3 options"):
        T.read_split("race_h", tmp_path, "dev")


# --------------------------------------------------------------------------- TFDS (faked)


def _fake_tfds(monkeypatch, data: dict) -> list:
    calls: list = []

    def load(name, split, data_dir=None, download=True):
        assert download is False  # nothing is fetched at run time
        calls.append((name, split, data_dir))
        return data[(name, split)]

    module = types.ModuleType("tensorflow_datasets")
    module.load = load
    module.as_numpy = lambda ds: iter(ds)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls


def test_read_tfds_field_mapping(monkeypatch):
    data = {
        ("glue/mnli", "validation_matched"): [
            {"premise": b"P.", "hypothesis": b"H.", "label": np.int64(2), "idx": np.int32(4)}
        ],
        ("glue/sst2", "test"): [{"sentence": b"fine .", "label": np.int64(-1), "idx": 0}],
        ("glue/stsb", "train"): [
            {"sentence1": b"a", "sentence2": b"b", "label": np.float32(3.5), "idx": 1}
        ],
        ("super_glue/cb", "validation"): [
            {"premise": b"x", "hypothesis": b"y", "label": np.int64(1), "idx": 0}
        ],
        ("super_glue/copa", "train"): [
            {
                "premise": b"p",
                "choice1": b"c1",
                "choice2": b"c2",
                "question": b"cause",
                "label": np.int64(1),
                "idx": 9,
            }
        ],
        ("super_glue/multirc", "validation"): [
            {
                "paragraph": b"text",
                "question": b"q?",
                "answer": b"ans",
                "label": np.int64(1),
                "idx": {"paragraph": np.int32(0), "question": np.int32(2), "answer": np.int32(5)},
            }
        ],
        ("super_glue/wsc", "train"): [
            {
                "text": b"Mark lied. He",
                "span1_index": 0,
                "span2_index": 2,
                "span1_text": b"Mark",
                "span2_text": b"He",
                "label": np.int64(0),
                "idx": 0,
            }
        ],
        ("race/middle", "dev"): [
            {
                "article": b"Art.",
                "questions": np.array([b"Q1", b"Q2"], dtype=object),
                "options": np.array(
                    [[b"a", b"b", b"c", b"d"], [b"e", b"f", b"g", b"h"]], dtype=object
                ),
                "answers": np.array([b"B", b"D"], dtype=object),
                "example_id": b"middle7.txt",
            }
        ],
        ("race/high", "dev"): [],
    }
    calls = _fake_tfds(monkeypatch, data)
    mnli = T.read_tfds("mnli", "dev_matched", data_dir="/tfds")
    assert mnli == [T.Example(text_a="P.", text_b="H.", label=2, idx=4)]
    assert calls[-1] == ("glue/mnli", "validation_matched", "/tfds")
    assert T.read_tfds("sst-2", "test")[0] == T.Example(text_a="fine .", label=None, idx=0)
    stsb = T.read_tfds("stsb", "train")[0]
    assert stsb.label == pytest.approx(3.5) and isinstance(stsb.label, float)
    assert T.read_tfds("cb", "validation")[0].label == 1
    copa = T.read_tfds("copa", "train")[0]
    assert (copa.choices, copa.text_b, copa.label) == (["c1", "c2"], "cause", 1)
    mrc = T.read_tfds("multirc", "dev")[0]
    assert (mrc.text_a, mrc.text_b, mrc.group, mrc.idx) == ("text", "q? ans", "0-2", 5)
    wsc = T.read_tfds("wsc", "train")[0]
    assert wsc.text_b == "He refers to Mark" and wsc.label == 0
    race = T.read_tfds("race", "dev")
    assert [c[0] for c in calls[-2:]] == ["race/middle", "race/high"]
    assert [(e.text_b, e.label, e.choices[0], e.group) for e in race] == [
        ("Q1", 1, "a", "middle/middle7.txt"),
        ("Q2", 3, "e", "middle/middle7.txt"),
    ]


def test_read_tfds_missing_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match="pip install"):
        T.read_tfds("sst2", "train")


# --------------------------------------------------------------------------- labels


def test_remap_labels_mnli_roberta_order():
    # roberta-large-mnli columns: (contradiction, neutral, entailment).
    logits = np.array([[5.0, 1.0, 0.0], [0.0, 1.0, 7.0]], dtype=np.float32)
    glue = T.remap_labels(logits, T.MNLI_LABELS_HF_ROBERTA, T.MNLI_LABELS)
    np.testing.assert_array_equal(glue, [[0.0, 1.0, 5.0], [7.0, 1.0, 0.0]])
    # ids: roberta 0 (contradiction) -> GLUE 2, roberta 2 (entailment) -> GLUE 0.
    np.testing.assert_array_equal(
        T.remap_labels(np.array([0, 1, 2]), T.MNLI_LABELS_HF_ROBERTA, T.MNLI_LABELS), [2, 1, 0]
    )
    assert (
        np.argmax(glue, axis=1).tolist()
        == T.remap_labels(
            np.argmax(logits, axis=1), T.MNLI_LABELS_HF_ROBERTA, T.MNLI_LABELS
        ).tolist()
    )
    with pytest.raises(ValueError):
        T.remap_labels(np.array([0]), ("a", "b"), ("a", "c"))
    with pytest.raises(ValueError):
        T.remap_labels(np.array([3]), T.MNLI_LABELS, T.MNLI_LABELS_HF_ROBERTA)


# --------------------------------------------------------------------------- metrics


def test_accuracy_and_f1():
    assert T.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    # TP=2 (pos 0,4), FP=1 (pos 1), FN=1 (pos 2): F1 = 2*2 / (2*2 + 1 + 1) = 2/3.
    assert T.f1_binary([1, 1, 0, 0, 1], [1, 0, 1, 0, 1]) == pytest.approx(2 / 3)
    assert T.f1_binary([0, 0], [0, 0]) == 0.0  # no positives at all: 0, not NaN


def test_f1_macro_three_classes():
    labels, preds = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    # class 0: TP1 FP1 FN1 -> 2/4; class 1: TP2 FP1 FN0 -> 4/5; class 2: TP1 FP0 FN1 -> 2/3.
    # mean = (1/2 + 4/5 + 2/3) / 3 = 59/90.
    assert T.f1_macro(preds, labels) == pytest.approx(59 / 90)
    # Forcing a class that never occurs adds an F1 of 0 to the mean.
    assert T.f1_macro(preds, labels, classes=range(4)) == pytest.approx(59 / 120)


def test_matthews_corrcoef():
    preds, labels = [1, 1, 1, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 1, 1, 0]
    # TP=3 (0,1,6) TN=3 (3,4,7) FP=1 (2) FN=1 (5): (3*3 - 1*1) / sqrt(4*4*4*4) = 8/16.
    assert T.matthews_corrcoef(preds, labels) == pytest.approx(0.5)
    # 3 classes: C = [[1,1,0],[0,2,0],[1,0,1]], t=(2,2,2), q=(2,3,1), c=4, s=6:
    # (4*6 - (4+6+2)) / sqrt((36-14) * (36-12)) = 12 / sqrt(528).
    assert T.matthews_corrcoef([0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2]) == pytest.approx(
        12 / math.sqrt(528)
    )
    assert T.matthews_corrcoef([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0  # constant predictions
    assert T.matthews_corrcoef([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(1.0)


def test_pearson_spearman():
    # x=(1,2,3), y=(2,4,7): dx=(-1,0,1), dy=(-7/3,-1/3,8/3); sum dxdy=5, sum dx^2=2,
    # sum dy^2=114/9 -> r = 5 / sqrt(2 * 114/9) = 15 / sqrt(228).
    assert T.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(15 / math.sqrt(228))
    # constant input: r undefined -> NaN, as Spearman (and scipy)
    assert math.isnan(T.pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(T.pearson([1, 2, 3], [4, 4, 4]))
    assert math.isnan(T.pearson([1.0], [2.0]))
    np.testing.assert_allclose(T.average_ranks([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    np.testing.assert_allclose(T.average_ranks([3, 1, 3, 3]), [3, 1, 3, 3])
    # ranks x=(1,2.5,2.5,4), y=(1,3,2,4); deviations from 2.5: dx=(-1.5,0,0,1.5),
    # dy=(-1.5,.5,-.5,1.5); sum dxdy=4.5, sum dx^2=4.5, sum dy^2=5 -> 4.5/sqrt(22.5)=sqrt(.9).
    assert T.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    assert T.spearman([1, 2, 3, 4], [10, 9, 2, 1]) == pytest.approx(-1.0)
    # constant input: every rank equal, rho undefined -> NaN (scipy's convention)
    assert math.isnan(T.spearman([5, 5, 5], [1, 2, 3]))
    assert math.isnan(T.spearman([1, 2, 3], [0.5, 0.5, 0.5]))
    assert math.isnan(T.spearman([1.0], [2.0]))


def test_is_better_ranks_nan_last():
    nan = float("nan")
    assert T.is_better(nan, None) and T.is_better(0.1, None)  # anything beats no best yet
    assert T.is_better(-1.0, nan) and not T.is_better(nan, -1.0)  # NaN is the worst value
    assert not T.is_better(nan, nan) and not T.is_better(0.5, 0.5)  # ties keep the earlier
    assert T.is_better(0.6, 0.5) and not T.is_better(0.4, 0.5)
    assert max([0.2, nan, 0.7, nan], key=T.metric_rank) == 0.7
    # a constant prediction on STS-B: the primary metric is NaN, not a number to select on
    got = T.compute_metrics("stsb", np.full((4, 1), 2.5), [1, 3, 2, 4])
    assert math.isnan(got["pearson"]) and math.isnan(got["spearman"])


def test_multirc_metrics():
    groups = ["q1", "q1", "q2", "q2", "q2", "q3"]
    labels = [1, 0, 1, 1, 0, 0]
    preds = [1, 0, 1, 0, 0, 1]
    # q1 all right, q2 wrong at pos 3, q3 wrong at pos 5 -> EM = 1/3.
    assert T.multirc_exact_match(preds, labels, groups) == pytest.approx(1 / 3)
    # TP=2 (0,2), FP=1 (5), FN=1 (3) -> F1a = 4/6.
    assert T.multirc_f1a(preds, labels) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="groups"):
        T.compute_metrics("multirc", preds, labels)


def test_compute_metrics_per_task():
    # CoLA from logits: argmax -> (1,1,1,0,0,0,1,0), the MCC=0.5 case above.
    logits = np.array([[0, 1], [0, 1], [0, 1], [1, 0], [1, 0], [1, 0], [0, 1], [1, 0]], float)
    assert T.compute_metrics("cola", logits, [1, 1, 0, 0, 0, 1, 1, 0]) == pytest.approx(
        {"mcc": 0.5}
    )
    assert T.compute_metrics("mrpc", [1, 1, 0, 0, 1], [1, 0, 1, 0, 1]) == pytest.approx(
        {"f1": 2 / 3, "accuracy": 0.6}
    )
    got = T.compute_metrics("stsb", np.array([[1.0], [2.0], [2.0], [3.0]]), [1, 3, 2, 4])
    assert got["spearman"] == pytest.approx(math.sqrt(0.9))
    assert set(got) == {"pearson", "spearman"}
    # CB: macro-F1 over all 3 classes.
    assert T.compute_metrics("cb", [0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2]) == pytest.approx(
        {"f1_macro": 59 / 90, "accuracy": 4 / 6}
    )
    assert T.compute_metrics("race", np.eye(4)[[0, 1, 2, 3]], [0, 1, 3, 3]) == {"accuracy": 0.75}
    with pytest.raises(ValueError):
        T.compute_metrics("sst2", [1, 0], [1])
    with pytest.raises(ValueError):
        T.compute_metrics("mnli", np.zeros((2, 2)), [0, 1])
