"""Registry of the GLUE, SuperGLUE and RACE tasks used to fine-tune Bort.

Sources: GLUE (Wang et al., 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform for
Natural Language Understanding"), SuperGLUE (Wang et al., 2019, "SuperGLUE: A Stickier
Benchmark for General-Purpose Language Understanding Systems") and RACE (Lai et al., 2017,
"RACE: Large-scale ReAding Comprehension Dataset From Examinations"). Label orders follow the
TensorFlow Datasets ``glue`` / ``super_glue`` builders, which agree with the order that the
official GLUE files imply (``0``/``1`` columns) and with HF ``datasets``.

Metric names: ``accuracy``, ``f1`` (binary, positive class 1), ``f1_macro``, ``mcc`` (Matthews
correlation), ``pearson``, ``spearman``, ``f1a`` and ``em`` (MultiRC). ``primary_metric`` is the
first metric of the official leaderboard column (e.g. MRPC/QQP: F1, STS-B: Pearson, CB: F1).
"""

from __future__ import annotations

import re

from bort_jax.tasks.core import Task

_BINARY_BOOL = ("False", "True")
_NLI2 = ("entailment", "not_entailment")
_MNLI_SPLITS = ("train", "dev_matched", "dev_mismatched", "test_matched", "test_mismatched")


def _classification(
    benchmark: str,
    tfds_name: str,
    name: str,
    dir_name: str,
    labels: tuple[str, ...],
    metrics: tuple[str, ...],
    text_fields: tuple[str, ...],
    **kwargs,
) -> Task:
    """A classification :class:`Task` of `benchmark`; its first metric is the primary one."""
    return Task(
        name=name,
        benchmark=benchmark,
        kind="classification",
        label_names=labels,
        num_labels=len(labels),
        metric_names=metrics,
        primary_metric=metrics[0],
        text_fields=text_fields,
        dir_name=dir_name,
        tfds_names=(tfds_name,),
        **kwargs,
    )


def _glue(name: str, *args, **kwargs) -> Task:
    """A GLUE classification task (TFDS name ``glue/<name>``)."""
    return _classification("glue", f"glue/{name}", name, *args, **kwargs)


def _superglue(
    name: str,
    dir_name: str,
    labels: tuple[str, ...],
    metrics: tuple[str, ...],
    text_fields: tuple[str, ...],
    tfds: str,
) -> Task:
    """A SuperGLUE classification task (TFDS name ``super_glue/<tfds>``)."""
    return _classification(
        "superglue", f"super_glue/{tfds}", name, dir_name, labels, metrics, text_fields
    )


def _race(name: str, subsets: tuple[str, ...]) -> Task:
    """Builds a RACE :class:`Task` reading the given levels (``'middle'``, ``'high'``)."""
    return Task(
        name=name,
        benchmark="race",
        kind="multiple_choice",
        label_names=("A", "B", "C", "D"),
        num_labels=4,
        metric_names=("accuracy",),
        primary_metric="accuracy",
        text_fields=("article", "question"),
        dir_name="RACE",
        tfds_names=tuple(f"race/{s}" for s in subsets),
        num_choices=4,
        subsets=subsets,
    )


def _build_tasks() -> dict[str, Task]:
    """All registered tasks keyed by canonical name."""
    tasks = [
        _glue("cola", "CoLA", ("unacceptable", "acceptable"), ("mcc",), ("sentence",)),
        _glue("sst2", "SST-2", ("negative", "positive"), ("accuracy",), ("sentence",)),
        _glue(
            "mrpc",
            "MRPC",
            ("not_equivalent", "equivalent"),
            ("f1", "accuracy"),
            ("sentence1", "sentence2"),
        ),
        Task(
            name="stsb",
            benchmark="glue",
            kind="regression",
            label_names=(),
            num_labels=1,
            metric_names=("pearson", "spearman"),
            primary_metric="pearson",
            text_fields=("sentence1", "sentence2"),
            dir_name="STS-B",
            tfds_names=("glue/stsb",),
            label_range=(0.0, 5.0),
        ),
        _glue(
            "qqp",
            "QQP",
            ("not_duplicate", "duplicate"),
            ("f1", "accuracy"),
            ("question1", "question2"),
        ),
        # HF roberta-large-mnli orders these as (contradiction, neutral, entailment); convert
        # its logits with remap_labels(x, MNLI_LABELS_HF_ROBERTA, MNLI_LABELS).
        _glue(
            "mnli",
            "MNLI",
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            ("premise", "hypothesis"),
            splits=_MNLI_SPLITS,
            eval_splits=("dev_matched", "dev_mismatched"),
        ),
        _glue("qnli", "QNLI", _NLI2, ("accuracy",), ("question", "sentence")),
        _glue("rte", "RTE", _NLI2, ("accuracy",), ("sentence1", "sentence2")),
        _glue(
            "wnli",
            "WNLI",
            ("not_entailment", "entailment"),
            ("accuracy",),
            ("sentence1", "sentence2"),
        ),
        _superglue("boolq", "BoolQ", _BINARY_BOOL, ("accuracy",), ("question", "passage"), "boolq"),
        _superglue(
            "cb",
            "CB",
            ("entailment", "contradiction", "neutral"),
            ("f1_macro", "accuracy"),
            ("premise", "hypothesis"),
            "cb",
        ),
        Task(
            name="copa",
            benchmark="superglue",
            kind="multiple_choice",
            label_names=("choice1", "choice2"),
            num_labels=2,
            metric_names=("accuracy",),
            primary_metric="accuracy",
            text_fields=("premise", "question"),
            dir_name="COPA",
            tfds_names=("super_glue/copa",),
            num_choices=2,
        ),
        _superglue(
            "multirc", "MultiRC", _BINARY_BOOL, ("f1a", "em"), ("paragraph", "question"), "multirc"
        ),
        _superglue("superglue_rte", "RTE", _NLI2, ("accuracy",), ("premise", "hypothesis"), "rte"),
        _superglue("wic", "WiC", _BINARY_BOOL, ("accuracy",), ("sentence1", "sentence2"), "wic"),
        _superglue("wsc", "WSC", _BINARY_BOOL, ("accuracy",), ("text",), "wsc"),
        _race("race", ("middle", "high")),
        _race("race_m", ("middle",)),
        _race("race_h", ("high",)),
    ]
    return {t.name: t for t in tasks}


TASKS: dict[str, Task] = _build_tasks()
GLUE_TASKS: tuple[str, ...] = tuple(n for n, t in TASKS.items() if t.benchmark == "glue")
SUPERGLUE_TASKS: tuple[str, ...] = tuple(n for n, t in TASKS.items() if t.benchmark == "superglue")
RACE_TASKS: tuple[str, ...] = tuple(n for n, t in TASKS.items() if t.benchmark == "race")

_SUPERGLUE_SHORT = {"boolq", "cb", "copa", "multirc", "rte", "wic", "wsc"}
_EXTRA_ALIASES = {
    "mnlim": "mnli",
    "mnlimm": "mnli",
    "mnlimatched": "mnli",
    "mnlimismatched": "mnli",
    "racemiddle": "race_m",
    "racehigh": "race_h",
}


def _normalize(name: str) -> str:
    """Lower-cases ``name`` and drops everything but letters and digits."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _build_aliases() -> dict[str, str]:
    """Normalized alias -> canonical name (``'glue/sst-2'`` and ``'SST-2'`` -> ``'sst2'``)."""
    aliases: dict[str, str] = {}
    for name in GLUE_TASKS:
        key = _normalize(name)
        aliases[key] = aliases["glue" + key] = name
    for short in _SUPERGLUE_SHORT:
        canonical = "superglue_rte" if short == "rte" else short
        for prefix in ("superglue", "sg"):
            aliases[prefix + short] = canonical
        if short != "rte":
            aliases[short] = canonical
    for name in RACE_TASKS:
        aliases[_normalize(name)] = name
    aliases.update(_EXTRA_ALIASES)
    return aliases


_ALIASES = _build_aliases()


def get_task(name: str | Task) -> Task:
    """Looks up a task by case-insensitive name.

    Punctuation is ignored, so ``'SST-2'``, ``'sst_2'`` and ``'glue/sst2'`` all give ``sst2``.
    A bare ``'rte'`` is GLUE RTE; SuperGLUE RTE is ``'superglue_rte'`` (or ``'super_glue/rte'``,
    ``'sg-rte'``). A :class:`Task` is returned unchanged.

    Raises:
        ValueError: unknown name; the message lists the valid canonical names.
    """
    if isinstance(name, Task):
        return name
    canonical = _ALIASES.get(_normalize(str(name)))
    if canonical is None:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[canonical]


def list_tasks() -> tuple[str, ...]:
    """Canonical names of all registered tasks."""
    return tuple(TASKS)
