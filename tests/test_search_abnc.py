"""The AB^nC check (bort_jax/search/abnc.py): condition 1 on hand-made block costs."""

import pytest

from bort_jax.search.abnc import BlockCost, check_abnc


def test_check_abnc():
    # BERT-like with a 30k vocabulary: embeddings (A) hold more parameters than one layer (B).
    bert = check_abnc(
        {"params": 23_440_896, "flops": 10 * 128 * 768},
        {"params": 7_087_872, "flops": 2 * 128 * 7_077_888},
        (0, 0),
        n_middle=12,
    )
    assert not bert.holds and not bert.cheaper["A<B params"] and bert.cheaper["A<B flops"]
    assert "FAILS" in bert.guarantee and "A<B params" in bert.guarantee
    assert bert.ratios["A<B params"] == pytest.approx(23_440_896 / 7_087_872)
    assert bert.cheaper["A<n·B params"]
    ok = check_abnc(BlockCost(10, 10), BlockCost(100, 100), BlockCost(1, 1))
    assert ok.holds and "holds" in ok.guarantee
    with pytest.raises(ValueError, match="costs_first"):
        check_abnc({"params": 1}, (1, 1), (1, 1))
