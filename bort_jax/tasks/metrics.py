"""Evaluation metrics of GLUE, SuperGLUE and RACE, in pure numpy.

Definitions follow the benchmark papers: GLUE (Wang et al., 2019) uses Matthews correlation
for CoLA, F1 and accuracy for MRPC/QQP, Pearson and Spearman correlation for STS-B and
accuracy elsewhere; SuperGLUE (Wang et al., 2019b) uses accuracy and macro-F1 for CB, and for
MultiRC F1a (binary F1 over all answer options) and exact match (EM: the fraction of
questions whose answer options are all predicted correctly); RACE (Lai et al., 2017) uses
accuracy. Degenerate inputs (a constant input to MCC, no positive examples for F1) give 0.0;
Pearson's and Spearman's correlations of a constant input are NaN (undefined, as scipy; see
:func:`spearman`), and :func:`is_better` ranks NaN below every number when a best model is
picked. Empty inputs raise ``ValueError``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from bort_jax.tasks.core import Task
from bort_jax.tasks.registry import get_task

ArrayLike = Union[np.ndarray, Sequence]


def _pair(predictions: ArrayLike, labels: ArrayLike, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """Flattens both inputs to 1-D arrays of equal, non-zero length ``[N]``."""
    p = np.asarray(predictions, dtype=dtype).reshape(-1)
    y = np.asarray(labels, dtype=dtype).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"predictions and labels differ in size: {p.size} vs {y.size}")
    if p.size == 0:
        raise ValueError("metrics need at least one example")
    return p, y


def _safe_div(num: float, den: float) -> float:
    """``num / den``, or 0.0 when ``den`` is zero."""
    return float(num) / float(den) if den else 0.0


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of exact matches; inputs of shape ``[N]``."""
    p, y = _pair(predictions, labels)
    return float(np.mean(p == y))


def f1_binary(predictions: ArrayLike, labels: ArrayLike, positive: int = 1) -> float:
    """F1 of class ``positive``; inputs ``[N]``. 0.0 when there are no true positives."""
    p, y = _pair(predictions, labels)
    tp = np.sum((p == positive) & (y == positive))
    fp = np.sum((p == positive) & (y != positive))
    fn = np.sum((p != positive) & (y == positive))
    return _safe_div(2 * tp, 2 * tp + fp + fn)


def f1_macro(
    predictions: ArrayLike, labels: ArrayLike, classes: Optional[Sequence[int]] = None
) -> float:
    """Unweighted mean of per-class F1; inputs ``[N]``.

    ``classes`` defaults to the classes seen in either ``labels`` or ``predictions`` (the
    scikit-learn convention); a listed class seen in neither contributes an F1 of 0.
    """
    p, y = _pair(predictions, labels)
    if classes is None:
        classes = np.union1d(p, y).tolist()
    return float(np.mean([f1_binary(p, y, positive=c) for c in classes]))


def confusion_matrix(
    predictions: ArrayLike, labels: ArrayLike, num_classes: Optional[int] = None
) -> np.ndarray:
    """Counts ``C[true, pred]`` of integer ids; shape ``[K, K]``, ``K`` = ``num_classes``."""
    p, y = _pair(predictions, labels)
    p, y = p.astype(np.int64), y.astype(np.int64)
    if min(p.min(), y.min()) < 0:
        raise ValueError("class ids must be non-negative")
    k = int(max(p.max(), y.max())) + 1 if num_classes is None else num_classes
    return np.bincount(y * k + p, minlength=k * k).reshape(k, k)


def matthews_corrcoef(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation coefficient (multi-class R_K form); inputs ``[N]`` of class ids.

    With ``C`` the confusion matrix, ``t = C.sum(1)``, ``q = C.sum(0)``, ``c = trace(C)`` and
    ``s = N``: ``(c*s - t.q) / sqrt((s^2 - q.q) * (s^2 - t.t))``. For two classes this is
    ``(TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))``. 0.0 when either side is constant.
    """
    c = confusion_matrix(predictions, labels).astype(np.float64)
    t, q = c.sum(axis=1), c.sum(axis=0)
    s, correct = c.sum(), np.trace(c)
    den = (s * s - q @ q) * (s * s - t @ t)
    return float((correct * s - t @ q) / np.sqrt(den)) if den > 0 else 0.0


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation of ``[N]`` inputs.

        r = sum_i dx_i dy_i / sqrt(sum_i dx_i^2 * sum_i dy_i^2),   d = value - mean

    Convention: NaN when either input is constant (r is undefined), as :func:`spearman` and
    ``scipy.stats.pearsonr``. One value (N = 1) is constant.
    """
    a, b = _pair(x, y, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(np.clip((a @ b) / den, -1.0, 1.0)) if den > 0 else float("nan")


def average_ranks(x: ArrayLike) -> np.ndarray:
    """1-based ranks of ``[N]`` values; tied values share the mean of their ranks.

    Example: ``[10, 20, 20, 30]`` -> ``[1, 2.5, 2.5, 4]``.
    """
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return v
    order = np.argsort(v, kind="stable")
    sorted_v = v[order]
    run_starts_here = np.r_[True, sorted_v[1:] != sorted_v[:-1]]
    run_of_sorted = np.cumsum(run_starts_here) - 1
    bounds = np.r_[np.flatnonzero(run_starts_here), v.size]
    # A run covering sorted positions [lo, hi) has 1-based ranks lo+1..hi, mean (lo+1+hi)/2.
    run_mean = (bounds[:-1] + 1 + bounds[1:]) / 2.0
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = run_mean[run_of_sorted]
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation of ``[N]`` inputs: the Pearson correlation of their average
    ranks (ties share the mean rank), as ``scipy.stats.spearmanr``.

        rho = sum_i dx_i dy_i / sqrt(sum_i dx_i^2 * sum_i dy_i^2),   d = rank - mean rank

    Convention: NaN when either input is constant (every rank equal, so rho is undefined), as
    scipy; a caller that needs a number decides what a constant means (model selection ranks
    it below every number: :func:`is_better`). One value (N = 1) is constant.
    """
    a, b = _pair(x, y, dtype=np.float64)
    ra, rb = average_ranks(a), average_ranks(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return pearson(ra, rb)


def metric_rank(value: float) -> tuple[bool, float]:
    """Sort key of a metric, larger is better: an undefined value (NaN, e.g. the correlation
    of constant predictions, or an infinity) ranks below every finite number."""
    finite = bool(np.isfinite(value))
    return finite, float(value) if finite else 0.0


def is_better(value: float, best: Optional[float]) -> bool:
    """Whether `value` ranks strictly above `best` (:func:`metric_rank`; so ties keep the
    earlier model, and NaN compares as the worst value). Anything, even NaN, is better than
    no best yet (``best=None``), so a run whose metric is always undefined still has one."""
    return best is None or metric_rank(value) > metric_rank(best)


def multirc_exact_match(predictions: ArrayLike, labels: ArrayLike, groups: Sequence) -> float:
    """MultiRC EM: fraction of question groups with every answer option right; ``[N]``."""
    p, y = _pair(predictions, labels)
    g = np.asarray(groups, dtype=object).reshape(-1)
    if g.size != p.size:
        raise ValueError(f"groups has {g.size} entries, expected {p.size}")
    _, group_ids = np.unique(g.astype(str), return_inverse=True)
    wrong_per_group = np.bincount(group_ids.reshape(-1), weights=(p != y).astype(np.float64))
    return float(np.mean(wrong_per_group == 0))


def multirc_f1a(predictions: ArrayLike, labels: ArrayLike) -> float:
    """MultiRC F1a: binary F1 (positive = True answer) over all answer options; ``[N]``."""
    return f1_binary(predictions, labels, positive=1)


def predictions_from_outputs(task: Union[str, Task], outputs: ArrayLike) -> np.ndarray:
    """Turns model outputs into predictions; ``[N]``.

    Classification / multiple choice: ``[N, num_labels]`` scores are arg-maxed, ``[N]`` ids
    pass through. Regression: ``[N]`` or ``[N, 1]`` values are flattened.
    """
    task = get_task(task)
    out = np.asarray(outputs)
    if task.is_regression:
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.ndim != 1:
            raise ValueError(f"regression outputs must be [N] or [N, 1], got {out.shape}")
        return out.astype(np.float64)
    if out.ndim == 2:
        if out.shape[1] != task.num_labels:
            raise ValueError(
                f"{task.name}: expected scores [N, {task.num_labels}], got {out.shape}"
            )
        return np.argmax(out, axis=1)
    if out.ndim != 1:
        raise ValueError(f"{task.name}: expected ids [N] or scores [N, K], got {out.shape}")
    return out


_PAIR_METRICS = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "f1_macro": f1_macro,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
    "f1a": multirc_f1a,
}


def compute_metrics(
    task: Union[str, Task],
    predictions: ArrayLike,
    labels: ArrayLike,
    groups: Optional[Sequence] = None,
) -> dict[str, float]:
    """All metrics of ``task`` (``task.metric_names``) for one evaluation split.

    Args:
        task: a :class:`Task` or registry name.
        predictions: ``[N]`` class ids / regression values, or ``[N, num_labels]`` scores.
        labels: ``[N]`` gold labels (canonical ids, or floats for STS-B).
        groups: ``[N]`` question ids; required for MultiRC (``Example.group``).

    Returns:
        ``{metric_name: value}``. MNLI: call once per eval split (matched, mismatched).
    """
    task = get_task(task)
    pred = predictions_from_outputs(task, predictions)
    gold = np.asarray(labels, dtype=np.float64 if task.is_regression else None)
    results: dict[str, float] = {}
    for name in task.metric_names:
        if name == "em":
            if groups is None:
                raise ValueError(f"{task.name}: exact match needs groups (question ids)")
            results[name] = multirc_exact_match(pred, gold, groups)
        elif name == "f1_macro":
            results[name] = f1_macro(pred, gold, classes=range(task.num_labels))
        else:
            results[name] = _PAIR_METRICS[name](pred, gold)
    return results
