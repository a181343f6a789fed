"""Core data types for downstream tasks: :class:`Task` and :class:`Example`.

The task set is the one fine-tuned on in Bort (de Wynter & Perry, 2020, "Optimal Subarchitecture
Extraction For BERT", arXiv:2010.10499, Section 5): GLUE (Wang et al., 2019), SuperGLUE (Wang et
al., 2019b) and RACE (Lai et al., 2017).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Mapping, Optional, Union

TaskKind = Literal["classification", "regression", "multiple_choice"]
Benchmark = Literal["glue", "superglue", "race"]

_KINDS = ("classification", "regression", "multiple_choice")
_BENCHMARKS = ("glue", "superglue", "race")


@dataclasses.dataclass(frozen=True)
class Task:
    """Static description of one downstream task.

    Attributes:
        name: canonical registry name, e.g. ``'sst2'`` or ``'superglue_rte'``.
        benchmark: ``'glue'``, ``'superglue'`` or ``'race'``.
        kind: ``'classification'``, ``'regression'`` or ``'multiple_choice'``.
        label_names: label names in canonical (GLUE / SuperGLUE / TFDS) order; label id ``i``
            means ``label_names[i]``. Empty for regression. For multiple choice, one name per
            choice slot (``'A'``..``'D'`` for RACE).
        num_labels: output width of the task head: number of classes, 1 for regression,
            number of choices for multiple choice (one score per choice).
        metric_names: metrics reported by :func:`bort_jax.tasks.compute_metrics`, in
            leaderboard order.
        primary_metric: the metric used to select the best dev checkpoint (the first metric of
            the official leaderboard column).
        text_fields: canonical (TFDS / HF ``datasets``) feature names that feed ``text_a`` and
            ``text_b`` (one or two names).
        dir_name: directory name of the task in the official download layout (``'SST-2'``).
        splits: canonical split names accepted by the readers.
        eval_splits: the dev splits reported for this task (MNLI has matched and mismatched);
            best-dev selection uses ``eval_splits[0]``.
        tfds_names: TFDS builder names (``'glue/sst2'``); RACE has one per level.
        num_choices: number of choices for multiple choice tasks, else ``None``.
        label_range: ``(low, high)`` of regression targets (STS-B: ``(0.0, 5.0)``), else ``None``.
        subsets: data subsets to read (RACE levels: ``('middle', 'high')``); empty otherwise.
    """

    name: str
    benchmark: Benchmark
    kind: TaskKind
    label_names: tuple[str, ...]
    num_labels: int
    metric_names: tuple[str, ...]
    primary_metric: str
    text_fields: tuple[str, ...]
    dir_name: str
    splits: tuple[str, ...] = ("train", "dev", "test")
    eval_splits: tuple[str, ...] = ("dev",)
    tfds_names: tuple[str, ...] = ()
    num_choices: Optional[int] = None
    label_range: Optional[tuple[float, float]] = None
    subsets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {_KINDS}, got {self.kind!r}")
        if self.benchmark not in _BENCHMARKS:
            raise ValueError(f"task {self.name!r}: unknown benchmark {self.benchmark!r}")
        if self.primary_metric not in self.metric_names:
            raise ValueError(
                f"task {self.name!r}: primary metric {self.primary_metric!r} "
                f"not in {self.metric_names}"
            )
        if not 1 <= len(self.text_fields) <= 2:
            raise ValueError(f"task {self.name!r}: text_fields must name one or two fields")
        if not set(self.eval_splits) <= set(self.splits):
            raise ValueError(f"task {self.name!r}: eval_splits {self.eval_splits} not in splits")
        if self.kind == "regression":
            if self.num_labels != 1 or self.label_names:
                raise ValueError(f"task {self.name!r}: regression needs num_labels=1, no names")
        elif self.num_labels != len(self.label_names):
            raise ValueError(
                f"task {self.name!r}: num_labels={self.num_labels} but "
                f"{len(self.label_names)} label names"
            )
        if (self.kind == "multiple_choice") != (self.num_choices is not None):
            raise ValueError(f"task {self.name!r}: num_choices is set iff kind is multiple_choice")
        if self.num_choices is not None and self.num_choices != self.num_labels:
            raise ValueError(f"task {self.name!r}: num_choices must equal num_labels")

    @property
    def is_regression(self) -> bool:
        """True for real-valued targets (STS-B)."""
        return self.kind == "regression"

    @property
    def is_multiple_choice(self) -> bool:
        """True when each example carries ``choices`` and the label is a choice index."""
        return self.kind == "multiple_choice"

    def label_id(self, name: str) -> int:
        """Index of label ``name`` in :attr:`label_names`; ``ValueError`` if unknown."""
        try:
            return self.label_names.index(name)
        except ValueError:
            raise ValueError(
                f"task {self.name!r}: unknown label {name!r}; "
                f"expected one of {list(self.label_names)}"
            ) from None


Label = Union[int, float]


@dataclasses.dataclass(frozen=True)
class Example:
    """One task instance, independent of the source format.

    Attributes:
        text_a: first text segment (sentence, premise, question, passage or article).
        text_b: second text segment, or ``None`` for single-sentence tasks.
        label: class id (int, canonical order of ``Task.label_names``), regression target
            (float), choice index (int) for multiple choice, or ``None`` when unlabeled (test).
        choices: candidate answers for multiple choice tasks (COPA: 2, RACE: 4), else ``None``.
        idx: example id from the source (row ``index`` column, JSON ``idx``, or a row counter
            when the file has none). RACE uses ``'<file id>-<question number>'``.
        group: grouping key for group-level metrics; MultiRC: the question id (for exact
            match), RACE: the article id. ``None`` otherwise.
        meta: extra source fields that do not fit the text pair (WiC word and offsets, WSC
            spans, COPA question type, MultiRC question/answer, ...), or ``None``.
    """

    text_a: str
    text_b: Optional[str] = None
    label: Optional[Label] = None
    choices: Optional[list[str]] = None
    idx: Union[int, str, None] = None
    group: Union[int, str, None] = None
    meta: Optional[Mapping[str, Any]] = None
