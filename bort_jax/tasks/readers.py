"""File readers for the official GLUE, SuperGLUE and RACE release layouts.

Layouts:
    * GLUE (Wang et al., 2019), as written by ``download_glue_data.py``: ``<Task>/<split>.tsv``
      with ``<Task>`` in CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI; MNLI splits are
      ``train``, ``dev_matched``, ``dev_mismatched``, ``test_matched``, ``test_mismatched``.
      Files are tab separated with no quoting (many fields begin with ``"``), so they are read
      with ``csv.QUOTE_NONE``. MRPC begins with a UTF-8 BOM (all files are read as
      ``utf-8-sig``). CoLA train/dev have no header and four columns (source, label, mark,
      sentence); CoLA test has an ``index, sentence`` header. Test files have no label column.
    * SuperGLUE (Wang et al., 2019b): ``<Task>/{train,val,test}.jsonl``, one JSON object a line.
      MultiRC nests questions and answers per passage; each answer becomes one example.
    * RACE (Lai et al., 2017): ``RACE/<split>/<level>/*.txt``, with ``<level>`` in middle, high;
      each file is one JSON article with ``article``, ``questions``, ``options``, ``answers``.

``data_dir`` may be the task directory itself (``glue_data/SST-2``), its parent
(``glue_data``) or a root holding ``glue/`` and ``superglue/`` (or ``RACE/``) sub-directories.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from bort_jax.tasks.core import Example, Label, Task
from bort_jax.tasks.registry import get_task

PathLike = Union[str, os.PathLike]

_SPLIT_ALIASES = {
    "val": "dev",
    "valid": "dev",
    "validation": "dev",
    "validation_matched": "dev_matched",
    "validation_mismatched": "dev_mismatched",
    "matched": "dev_matched",
    "mismatched": "dev_mismatched",
}
_BENCHMARK_DIRS = {
    "glue": ("glue", "glue_data"),
    "superglue": ("superglue", "super_glue"),
    "race": (),
}
_COLA_COLUMNS = ("source", "label", "mark", "sentence")


@dataclasses.dataclass(frozen=True)
class _TsvSpec:
    """Column names of a GLUE TSV: text columns, label column and id column."""

    text_cols: tuple[str, ...]
    label_col: str
    idx_col: Optional[str]


_TSV_SPECS = {
    "cola": _TsvSpec(("sentence",), "label", "index"),
    "sst2": _TsvSpec(("sentence",), "label", "index"),
    "mrpc": _TsvSpec(("#1 String", "#2 String"), "Quality", "index"),
    "stsb": _TsvSpec(("sentence1", "sentence2"), "score", "index"),
    "qqp": _TsvSpec(("question1", "question2"), "is_duplicate", "id"),
    "mnli": _TsvSpec(("sentence1", "sentence2"), "gold_label", "index"),
    "qnli": _TsvSpec(("question", "sentence"), "label", "index"),
    "rte": _TsvSpec(("sentence1", "sentence2"), "label", "index"),
    "wnli": _TsvSpec(("sentence1", "sentence2"), "label", "index"),
}


# --------------------------------------------------------------------------- shared helpers


def canonical_split(task: Task, split: str) -> str:
    """Maps ``split`` (``'validation'``, ``'val'``, ...) to one of ``task.splits``.

    Raises:
        ValueError: the split does not exist for this task (MNLI has no plain ``'dev'``).
    """
    key = split.strip().lower().replace("-", "_")
    key = _SPLIT_ALIASES.get(key, key)
    if key not in task.splits:
        raise ValueError(
            f"task {task.name!r} has no split {split!r}; valid splits: {', '.join(task.splits)}"
        )
    return key


def parse_label(task: Task, raw: Any) -> Label:
    """Converts a raw label (name, digit string, int, bool or float) to a canonical label.

    Classification / multiple choice: a label name (``'entailment'``) or an integer index
    (``1``, ``'1'``, ``True``) in ``[0, num_labels)`` gives an ``int``. Regression: a float.

    Raises:
        ValueError: unknown name, index out of range, or non-numeric regression target.
    """
    if task.is_regression:
        if isinstance(raw, bool):
            raise ValueError(f"regression target must be a number, got {raw!r}")
        return float(raw)
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip()
        if text in task.label_names:
            return task.label_names.index(text)
        if not re.fullmatch(r"-?\d+", text):
            raise ValueError(
                f"unknown label {raw!r}; expected one of {list(task.label_names)} or an index"
            )
        raw = int(text)
    if isinstance(raw, int) and 0 <= raw < task.num_labels:
        return raw
    raise ValueError(f"label {raw!r} out of range for {task.num_labels} labels")


def _parse_idx(raw: str) -> Union[int, str]:
    """Source ids as ``int`` when they are decimal, else the stripped string."""
    text = raw.strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _natural_key(path: Path) -> tuple:
    """Sort key that orders ``2.txt`` before ``10.txt``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", path.name))


def _resolve(task: Task, data_dir: PathLike, relative: str) -> Path:
    """Finds ``relative`` under the task directory implied by ``data_dir``.

    Tries ``data_dir/relative``, ``data_dir/<Task>/relative`` and
    ``data_dir/<benchmark>/<Task>/relative``.

    Raises:
        FileNotFoundError: naming the first candidate path and the others tried.
    """
    base = Path(data_dir)
    candidates = [base / relative, base / task.dir_name / relative]
    candidates += [base / b / task.dir_name / relative for b in _BENCHMARK_DIRS[task.benchmark]]
    for path in candidates:
        if path.exists():
            return path
    others = ", ".join(str(p) for p in candidates[1:])
    raise FileNotFoundError(f"{task.name}: file not found: {candidates[0]} (also tried {others})")


class _RowSink:
    """Collects examples; raises on malformed rows, or skips them when not strict."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path, self.strict = path, strict
        self.examples: list[Example] = []
        self.skipped = 0

    def bad(self, line: int, message: str) -> None:
        """Reports a malformed record at ``line``."""
        if self.strict:
            raise ValueError(f"{self.path}:{line}: {message}")
        self.skipped += 1

    def finish(self) -> list[Example]:
        """Warns about skipped records and returns the examples."""
        if self.skipped:
            warnings.warn(f"{self.path}: skipped {self.skipped} malformed record(s)", stacklevel=3)
        return self.examples


# --------------------------------------------------------------------------- GLUE TSV


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yields ``(line_number, fields)`` of a quoting-free TSV, skipping blank lines."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for row in reader:
                if row:
                    yield reader.line_num, row
        except csv.Error as err:
            raise ValueError(f"{path}:{reader.line_num}: {err}") from err


def _glue_header(
    task: Task, rows: Iterator[tuple[int, list[str]]]
) -> tuple[tuple[str, ...], Iterator[tuple[int, list[str]]]]:
    """Splits off the header row; CoLA train/dev get their implicit 4-column header."""
    first = next(rows, None)
    if first is None:
        return (), rows
    if task.name == "cola" and first[1][0].strip() != "index":
        return _COLA_COLUMNS, itertools.chain([first], rows)
    return tuple(c.strip() for c in first[1]), rows


def _read_glue(task: Task, path: Path, strict: bool) -> list[Example]:
    """Reads one GLUE TSV file into examples (``label=None`` without a label column)."""
    spec = _TSV_SPECS[task.name]
    header, rows = _glue_header(task, _tsv_rows(path))
    sink = _RowSink(path, strict)
    if not header:
        return sink.finish()
    col = {name: i for i, name in enumerate(header)}
    missing = [c for c in spec.text_cols if c not in col]
    if missing:
        raise ValueError(f"{path}:1: header {list(header)} lacks column(s) {missing}")
    label_i = col.get(spec.label_col)
    idx_i = col.get(spec.idx_col) if spec.idx_col else None
    for counter, (line, row) in enumerate(rows):
        if len(row) != len(header):
            sink.bad(line, f"expected {len(header)} tab-separated fields, got {len(row)}")
            continue
        try:
            label = None if label_i is None else parse_label(task, row[label_i])
        except ValueError as err:
            sink.bad(line, str(err))
            continue
        texts = [row[col[c]] for c in spec.text_cols]
        sink.examples.append(
            Example(
                text_a=texts[0],
                text_b=texts[1] if len(texts) > 1 else None,
                label=label,
                idx=counter if idx_i is None else _parse_idx(row[idx_i]),
            )
        )
    return sink.finish()


# --------------------------------------------------------------------------- SuperGLUE JSONL


def _pair(task: Task, rec: dict) -> list[Example]:
    """Flat records whose text pair is ``task.text_fields`` (GLUE; BoolQ, CB, RTE)."""
    names = task.text_fields
    return [
        Example(
            text_a=rec[names[0]],
            text_b=rec[names[1]] if len(names) > 1 else None,
            label=_record_label(task, rec),
            idx=rec["idx"],
        )
    ]


def _copa(task: Task, rec: dict) -> list[Example]:
    """COPA: premise + question type, two choices, label = index of the right choice."""
    return [
        Example(
            text_a=rec["premise"],
            text_b=rec["question"],
            choices=[rec["choice1"], rec["choice2"]],
            label=_record_label(task, rec),
            idx=rec["idx"],
            meta={"question": rec["question"]},
        )
    ]


def _wic(task: Task, rec: dict) -> list[Example]:
    """WiC: the two sentences; the target word and its offsets go to ``meta``."""
    meta = {k: rec[k] for k in ("word", "start1", "end1", "start2", "end2") if k in rec}
    return [
        Example(
            text_a=rec["sentence1"],
            text_b=rec["sentence2"],
            label=_record_label(task, rec),
            idx=rec["idx"],
            meta=meta,
        )
    ]


def wsc_text_b(span1_text: str, span2_text: str) -> str:
    """Second segment for WSC: ``'<pronoun> refers to <candidate>'``."""
    return f"{span2_text} refers to {span1_text}"


def _wsc(task: Task, rec: dict) -> list[Example]:
    """WSC: the text, plus :func:`wsc_text_b` of the two spans; spans go to ``meta``."""
    target = rec["target"]
    return [
        Example(
            text_a=rec["text"],
            text_b=wsc_text_b(target["span1_text"], target["span2_text"]),
            label=_record_label(task, rec),
            idx=rec["idx"],
            meta=dict(target),
        )
    ]


def multirc_text_b(question: str, answer: str) -> str:
    """Second segment for MultiRC: the question followed by the candidate answer."""
    return f"{question} {answer}"


def _multirc(task: Task, rec: dict) -> list[Example]:
    """MultiRC: one example per (question, answer); ``group`` is the question id."""
    passage = rec["passage"]
    out = []
    for q in passage["questions"]:
        group = f"{rec['idx']}-{q['idx']}"
        for a in q["answers"]:
            out.append(
                Example(
                    text_a=passage["text"],
                    text_b=multirc_text_b(q["question"], a["text"]),
                    label=_record_label(task, a),
                    idx=a["idx"],
                    group=group,
                    meta={
                        "paragraph_idx": rec["idx"],
                        "question_idx": q["idx"],
                        "question": q["question"],
                        "answer": a["text"],
                    },
                )
            )
    return out


def _record_label(task: Task, rec: dict) -> Optional[Label]:
    """The parsed ``label`` of a JSON record, ``None`` when absent (test files)."""
    return parse_label(task, rec["label"]) if "label" in rec else None


_RECORD_CONVERTERS: dict[str, Callable[[Task, dict], list[Example]]] = {
    "copa": _copa,
    "multirc": _multirc,
    "wic": _wic,
    "wsc": _wsc,
}


def record_examples(task: Task, rec: dict) -> list[Example]:
    """The examples of one GLUE / SuperGLUE record in the official SuperGLUE JSONL layout.

    Flat records (GLUE, BoolQ, CB, RTE) read ``task.text_fields``; COPA, WiC, WSC (spans
    nested under ``target``) and MultiRC (one passage with its questions and answers) have
    their own layouts. A record without ``label`` is unlabeled (``label=None``). Both
    :func:`read_split` and :func:`bort_jax.tasks.tfds_reader.read_tfds` convert through here.

    Raises:
        KeyError: a field is missing. ValueError: the label is invalid.
    """
    return _RECORD_CONVERTERS.get(task.name, _pair)(task, rec)


def _read_superglue(task: Task, path: Path, strict: bool) -> list[Example]:
    """Reads one SuperGLUE JSONL file into examples."""
    sink = _RowSink(path, strict)
    with open(path, encoding="utf-8-sig") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
                if not isinstance(rec, dict):
                    raise ValueError("record is not a JSON object")
                sink.examples.extend(record_examples(task, rec))
            except KeyError as err:
                sink.bad(line, f"missing field {err}")
            except (ValueError, TypeError) as err:
                sink.bad(line, str(err))
    return sink.finish()


# --------------------------------------------------------------------------- RACE


def _race_article(task: Task, path: Path, level: str) -> list[Example]:
    """All questions of one RACE article file; ``group`` is ``'<level>/<file stem>'``."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
        article, questions, options = data["article"], data["questions"], data["options"]
    except KeyError as err:
        raise ValueError(f"{path}: missing field {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    answers = data.get("answers")
    if len(options) != len(questions) or (answers is not None and len(answers) != len(questions)):
        raise ValueError(f"{path}: questions, options and answers differ in length")
    group = f"{level}/{path.stem}"
    out = []
    for i, (question, opts) in enumerate(zip(questions, options)):
        if len(opts) != task.num_choices:
            raise ValueError(
                f"{path}: question {i} has {len(opts)} options, expected {task.num_choices}"
            )
        try:
            label = None if answers is None else parse_label(task, answers[i])
        except ValueError as err:
            raise ValueError(f"{path}: question {i}: {err}") from None
        out.append(
            Example(
                text_a=article,
                text_b=question,
                choices=list(opts),
                label=label,
                idx=f"{group}-{i}",
                group=group,
                meta={"level": level, "article_id": data.get("id", path.name)},
            )
        )
    return out


def _read_race(task: Task, data_dir: PathLike, split: str) -> list[Example]:
    """Reads ``<split>/<level>/*.txt`` for each level in ``task.subsets`` (sorted naturally)."""
    examples: list[Example] = []
    for level in task.subsets:
        level_dir = _resolve(task, data_dir, f"{split}/{level}")
        files = sorted(level_dir.glob("*.txt"), key=_natural_key)
        if not files:
            raise FileNotFoundError(f"{task.name}: no *.txt article files in {level_dir}")
        for path in files:
            examples.extend(_race_article(task, path, level))
    return examples


# --------------------------------------------------------------------------- public entry


def split_filename(task: Task, split: str) -> str:
    """File name of ``split`` in the official layout (``'dev.tsv'``, ``'val.jsonl'``)."""
    split = canonical_split(task, split)
    if task.benchmark == "superglue":
        return f"{'val' if split == 'dev' else split}.jsonl"
    if task.benchmark == "glue":
        return f"{split}.tsv"
    return split


def read_split(
    task: Union[str, Task], data_dir: PathLike, split: str, *, strict: bool = True
) -> list[Example]:
    """Reads one split of a task from its official file layout.

    Args:
        task: a :class:`Task` or a registry name (``'sst-2'``, ``'superglue_rte'``, ``'race'``).
        data_dir: task directory, its parent, or a root with ``glue/``/``superglue/`` inside.
        split: ``'train'``, ``'dev'`` (or ``'validation'``/``'val'``), ``'test'``; MNLI uses
            ``'dev_matched'``, ``'dev_mismatched'``, ``'test_matched'``, ``'test_mismatched'``.
        strict: if True (default) a malformed row raises; if False it is skipped with a
            warning (the 2018 QQP release has a few rows with missing tabs).

    Returns:
        Examples in file order. Labels are canonical ids (floats for STS-B); ``None`` for
        unlabeled test files.

    Raises:
        FileNotFoundError: the split file (or RACE directory) does not exist; names the path.
        ValueError: unknown task or split, or a malformed row (message gives file and line).
    """
    task = get_task(task)
    split = canonical_split(task, split)
    if task.benchmark == "race":
        return _read_race(task, data_dir, split)
    path = _resolve(task, data_dir, split_filename(task, split))
    if task.benchmark == "glue":
        return _read_glue(task, path, strict)
    return _read_superglue(task, path, strict)
