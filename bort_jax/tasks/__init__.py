"""Downstream tasks of Bort (de Wynter & Perry, 2020, arXiv:2010.10499): GLUE, SuperGLUE, RACE.

Task registry, readers for the official file layouts and for TFDS, label-order helpers and
numpy metrics. Nothing here imports JAX or TensorFlow.

Example::

    from bort_jax import tasks
    task = tasks.get_task("sst-2")
    dev = tasks.read_split(task, "glue_data", "dev")
    scores = tasks.compute_metrics(task, predictions, [ex.label for ex in dev])
"""

from bort_jax.tasks.core import Example, Task
from bort_jax.tasks.labels import (
    MNLI_LABELS,
    MNLI_LABELS_HF_ROBERTA,
    label_permutation,
    remap_labels,
)
from bort_jax.tasks.metrics import (
    accuracy,
    average_ranks,
    compute_metrics,
    confusion_matrix,
    f1_binary,
    f1_macro,
    is_better,
    matthews_corrcoef,
    metric_rank,
    multirc_exact_match,
    multirc_f1a,
    pearson,
    predictions_from_outputs,
    spearman,
)
from bort_jax.tasks.readers import canonical_split, parse_label, read_split, split_filename
from bort_jax.tasks.registry import (
    GLUE_TASKS,
    RACE_TASKS,
    SUPERGLUE_TASKS,
    TASKS,
    get_task,
    list_tasks,
)
from bort_jax.tasks.tfds_reader import read_tfds, tfds_split

__all__ = [
    "Example",
    "Task",
    "TASKS",
    "GLUE_TASKS",
    "SUPERGLUE_TASKS",
    "RACE_TASKS",
    "get_task",
    "list_tasks",
    "MNLI_LABELS",
    "MNLI_LABELS_HF_ROBERTA",
    "label_permutation",
    "remap_labels",
    "canonical_split",
    "parse_label",
    "read_split",
    "split_filename",
    "read_tfds",
    "tfds_split",
    "accuracy",
    "average_ranks",
    "compute_metrics",
    "confusion_matrix",
    "f1_binary",
    "f1_macro",
    "is_better",
    "matthews_corrcoef",
    "metric_rank",
    "multirc_exact_match",
    "multirc_f1a",
    "pearson",
    "predictions_from_outputs",
    "spearman",
]
