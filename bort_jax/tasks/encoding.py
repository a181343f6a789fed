"""Task examples -> token arrays for the encoder, and batch trimming.

Arrays follow one convention across the project: a dict with a shared leading row axis;
`input_ids` / `attention_mask` / `token_type_ids` are int32 [N, L] ([N, K, L] for multiple
choice, one row per choice) and `label` is [N].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bort_jax import hf
from bort_jax.tasks.core import Example, Task

Arrays = dict[str, np.ndarray]
INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def head_width(task: Task) -> int:
    """Output width of the Bert head: 1 per choice for multiple choice, else num_labels."""
    return 1 if task.is_multiple_choice else task.num_labels


def choice_text(example: Example, choice: str) -> str:
    """Second segment of a (context, choice) pair: the question (if any) then the choice."""
    return f"{example.text_b} {choice}" if example.text_b else choice


def encode_examples(
    tokenizer: Any, task: Task, examples: Sequence[Example], max_len: int
) -> Arrays:
    """Token arrays and labels of `examples`.

    Returns:
        input_ids / attention_mask / token_type_ids: int32 [N, L] ([N, K, L] for multiple
        choice, one row per choice) and 'label' [N]: int32 class/choice ids, float32 targets
        for regression (omitted when any example is unlabelled).
    """
    if task.is_multiple_choice:
        k = task.num_choices
        if any(len(ex.choices or ()) != k for ex in examples):
            raise ValueError(f"{task.name}: every example needs {k} choices")
        texts_a = [ex.text_a for ex in examples for _ in range(k)]
        texts_b = [choice_text(ex, c) for ex in examples for c in ex.choices]
        flat = hf.encode(tokenizer, texts_a, texts_b, max_len)
        arrays = {key: v.reshape(len(examples), k, max_len) for key, v in flat.items()}
    else:
        pair = any(ex.text_b is not None for ex in examples)
        arrays = hf.encode(
            tokenizer,
            [ex.text_a for ex in examples],
            [ex.text_b or "" for ex in examples] if pair else None,
            max_len,
        )
    if all(ex.label is not None for ex in examples):
        dtype = np.float32 if task.is_regression else np.int32
        arrays["label"] = np.asarray([ex.label for ex in examples], dtype)
    return arrays


def trim(arrays: Mapping[str, np.ndarray], bucket: int) -> Arrays:
    """Drop trailing all-padding columns, keeping a multiple of `bucket` (0: unchanged).

    The token axis is the last one of every input key; 'label' and others are untouched.
    """
    if not bucket:
        return dict(arrays)
    full = np.shape(arrays["input_ids"])[-1]
    used = int(np.max(np.sum(np.asarray(arrays["attention_mask"]) != 0, axis=-1), initial=1))
    length = min(full, bucket * math.ceil(used / bucket))
    return {k: (np.asarray(v)[..., :length] if k in INPUT_KEYS else v) for k, v in arrays.items()}
