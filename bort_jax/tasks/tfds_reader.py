"""Reader for the TensorFlow Datasets builds of GLUE, SuperGLUE and RACE.

Builders: ``glue/<task>`` and ``super_glue/<task>`` (features and label orders as in the
official releases, Wang et al. 2019a/b) and ``race/{middle,high}`` (Lai et al., 2017; one
record per article). ``tensorflow_datasets`` is an optional dependency (``pip install
bort_jax[tfds]``) and is imported only inside :func:`read_tfds`.

TFDS marks unlabeled (test) records with label ``-1``; they become ``label=None``. GLUE and
SuperGLUE records are brought to the official JSONL layout (:func:`official_record`) and
converted by the file reader's :func:`bort_jax.tasks.readers.record_examples`.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional, Union

import numpy as np

from bort_jax.tasks.core import Example, Task
from bort_jax.tasks.readers import canonical_split, parse_label, record_examples
from bort_jax.tasks.registry import get_task

_INSTALL_HINT = (
    "read_tfds needs tensorflow_datasets; install it with "
    "`pip install 'bort_jax[tfds]'` (or `pip install tensorflow-datasets "
    "tensorflow-cpu`), or read the official files with read_split"
)


def tfds_split(task: Task, split: str) -> str:
    """TFDS split name for a canonical split (``'dev'`` -> ``'validation'``; RACE keeps
    ``'dev'``; MNLI ``'dev_matched'`` -> ``'validation_matched'``)."""
    split = canonical_split(task, split)
    if task.benchmark == "race":
        return split
    return split.replace("dev", "validation", 1) if split.startswith("dev") else split


def _py(value: Any) -> Any:
    """Numpy scalars/arrays and bytes (as yielded by ``tfds.as_numpy``) to Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_py(v) for v in value.tolist()] if value.ndim else _py(value.item())
    if isinstance(value, (list, tuple)):
        return [_py(v) for v in value]
    if isinstance(value, dict):
        return {k: _py(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return _py(value.item())
    return value


_WSC_SPAN_KEYS = ("span1_index", "span1_text", "span2_index", "span2_text")


def official_record(task: Task, rec: dict) -> dict:
    """A TFDS GLUE / SuperGLUE record in the official JSONL layout that
    :func:`bort_jax.tasks.readers.record_examples` reads.

    TFDS marks unlabeled records with label ``-1`` (dropped here: no label); it flattens
    WSC's spans (nested back under ``target``) and MultiRC to one record per answer, with
    ``idx = {paragraph, question, answer}`` (nested back as one passage, one question, one
    answer).
    """
    rec = dict(rec)
    raw = rec.get("label")
    if raw is not None and not isinstance(raw, bool) and raw == -1:
        del rec["label"]
    if task.name == "wsc":
        rec["target"] = {k: rec.pop(k) for k in _WSC_SPAN_KEYS}
    elif task.name == "multirc":
        ids = rec["idx"]
        answer = {"idx": ids["answer"], "text": rec["answer"]}
        if "label" in rec:
            answer["label"] = rec["label"]
        question = {"idx": ids["question"], "question": rec["question"], "answers": [answer]}
        passage = {"text": rec["paragraph"], "questions": [question]}
        rec = {"idx": ids["paragraph"], "passage": passage}
    return rec


def _race(task: Task, rec: dict, level: str) -> list[Example]:
    """RACE: one article record to one example per question."""
    article_id = rec.get("example_id") or ""
    group = f"{level}/{article_id}"
    answers = rec.get("answers") or [None] * len(rec["questions"])
    return [
        Example(
            text_a=rec["article"],
            text_b=q,
            choices=list(opts),
            label=None if a is None else parse_label(task, a),
            idx=f"{group}-{i}",
            group=group,
            meta={"level": level, "article_id": article_id},
        )
        for i, (q, opts, a) in enumerate(zip(rec["questions"], rec["options"], answers))
    ]


def _import_tfds():
    """Imports ``tensorflow_datasets`` or raises ``ImportError`` with an install hint."""
    try:
        return importlib.import_module("tensorflow_datasets")
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err


def read_tfds(task: Union[str, Task], split: str, data_dir: Optional[str] = None) -> list[Example]:
    """Reads one split of a task from TensorFlow Datasets.

    Args:
        task: a :class:`Task` or registry name.
        split: canonical split (``'train'``, ``'dev'``, ``'test'``, MNLI ``'dev_matched'``,
            ...) or its TFDS spelling (``'validation'``).
        data_dir: TFDS data directory (``None``: the TFDS default).

    Returns:
        Examples laid out as :func:`bort_jax.tasks.readers.read_split` lays them out. RACE
        reads every builder of the task (``race/middle`` then ``race/high``).

    Raises:
        ImportError: ``tensorflow_datasets`` is not installed (with an install hint).
        ValueError: unknown task or split.
    """
    task = get_task(task)
    name = tfds_split(task, split)
    tfds = _import_tfds()
    examples: list[Example] = []
    for builder in task.tfds_names:
        # download=False: nothing is fetched at run time; missing data is an error
        dataset = tfds.load(builder, split=name, data_dir=data_dir, download=False)
        for raw in tfds.as_numpy(dataset):
            rec = _py(raw)
            if task.benchmark == "race":
                examples.extend(_race(task, rec, builder.split("/", 1)[1]))
            else:
                examples.extend(record_examples(task, official_record(task, rec)))
    return examples
