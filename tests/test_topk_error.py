"""The top-k KD error measurement (benchmarks/topk_error.py) on synthetic logits."""

import numpy as np

from benchmarks import topk_error


def test_topk_error_vanishes_at_full_vocabulary_and_shrinks_with_k():
    rng = np.random.default_rng(0)
    n, p, v, temp = 3, 4, 40, 2.0
    teacher = (3 * rng.standard_normal((n, p, v))).astype(np.float32)
    student = rng.standard_normal((n, p, v)).astype(np.float32)
    weights = np.ones((n, p), np.float32)
    weights[1, 2:] = 0
    variants = topk_error.topk_variants(teacher, [2, 8, v], temp)
    assert set(variants) == {"full fp16", "top-2", "top-8", f"top-{v}"}
    assert variants["top-8"]["values"].dtype == np.float16
    res = topk_error.kd_errors(student, teacher, variants, weights, temp)
    assert res["reference"]["loss"] > 0
    full = res[f"top-{v}"]  # k = V: the exact loss, up to float16 values
    assert full["loss_rel_err"] < 1e-3 and full["grad_rel_err"] < 1e-2
    assert res["top-2"]["loss"] <= res["reference"]["loss"] + 1e-6  # a lower bound
    assert res["top-2"]["grad_rel_err"] > res["top-8"]["grad_rel_err"] > full["grad_rel_err"]
    assert res["top-2"]["loss_rel_err"] > res["top-8"]["loss_rel_err"]
    # the same logits as the reference: no error at all
    same = topk_error.kd_errors(student, teacher, {"x": {"logits": teacher}}, weights, temp)
    assert same["x"]["loss_rel_err"] == 0 and same["x"]["grad_rel_err"] == 0
