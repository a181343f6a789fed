"""The one batch source, row helpers and prefetcher (bort_jax/data/batching.py)."""

import numpy as np
import pytest

from bort_jax.data import batching


def _rows(n: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(n, dtype=np.int32)[:, None].repeat(2, 1), "y": np.arange(n) * 10}


def test_continuous_stream_covers_each_epoch_once_and_straddles():
    n, b = 10, 4
    source = batching.epoch_batches(_rows(n), b, seed=3)
    seen = np.concatenate([source(s)["y"] // 10 for s in range(5)])  # 20 rows = 2 epochs
    assert sorted(seen[:n]) == list(range(n)) and sorted(seen[n:]) == list(range(n))
    assert not np.array_equal(seen[:n], seen[n:])  # epochs reshuffled
    # step 2 takes rows 8, 9 of epoch 0 and rows 0, 1 of epoch 1
    perm0 = batching.epoch_permutation(n, 3, 0)
    perm1 = batching.epoch_permutation(n, 3, 1)
    np.testing.assert_array_equal(source(2)["y"] // 10, np.r_[perm0[8:], perm1[:2]])
    np.testing.assert_array_equal(source(2)["x"][:, 0] * 10, source(2)["y"])


def test_drop_remainder_uses_whole_batches_per_epoch():
    n, b = 10, 4  # 2 steps per epoch, 2 rows skipped each epoch
    source = batching.epoch_batches(_rows(n), b, seed=0, drop_remainder=True)
    perm1 = batching.epoch_permutation(n, 0, 1)
    np.testing.assert_array_equal(source(3)["y"] // 10, perm1[4:8])
    assert len(set(np.concatenate([source(s)["y"] for s in range(2)]))) == 8


def test_stateless_seeded_and_transformed():
    a = batching.epoch_batches(_rows(7), 3, seed=1)
    b = batching.epoch_batches(_rows(7), 3, seed=1)
    c = batching.epoch_batches(_rows(7), 3, seed=2)
    np.testing.assert_array_equal(a(5)["y"], b(5)["y"])  # a "restarted" source agrees
    assert any(not np.array_equal(a(s)["y"], c(s)["y"]) for s in range(4))
    doubled = batching.epoch_batches(_rows(7), 3, seed=1, transform=lambda r: {"y": r["y"] * 2})
    np.testing.assert_array_equal(doubled(5)["y"], a(5)["y"] * 2)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="disagree"):
        batching.num_rows({"a": np.zeros(3), "b": np.zeros(4)})
    with pytest.raises(ValueError, match="exceeds the 3 rows"):
        batching.epoch_batches(_rows(3), 4, 0, drop_remainder=True)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        batching.epoch_batches(_rows(3), 0, 0)
    with pytest.raises(ValueError, match="keys"):
        batching.concat({"a": np.zeros(1)}, {"b": np.zeros(1)})


def test_row_helpers():
    rows = _rows(5)
    part = batching.take(rows, [4, 0])
    np.testing.assert_array_equal(part["y"], [40, 0])
    both = batching.concat(None, part, {"x": np.zeros((1, 2), np.float64), "y": np.array([7])})
    assert batching.num_rows(both) == 3 and both["x"].dtype == np.int32
    assert batching.select(rows, ["y", "missing"]).keys() == {"y"}
    fixed = batching.fixed_batches(rows, 2)
    assert [f["y"].tolist() for f in fixed] == [[0, 10], [20, 30]]
    assert len(batching.fixed_batches(rows, 9)) == 1  # one batch of all 5 rows


def test_prefetcher_order_resume_and_errors():
    source = batching.epoch_batches(_rows(9), 2, seed=0)
    full = list(batching.Prefetcher(source, 0, 6))
    assert [s for s, _ in full] == list(range(6))
    resumed = list(batching.Prefetcher(batching.epoch_batches(_rows(9), 2, seed=0), 4, 6))
    for (_, a), (_, b) in zip(full[4:], resumed):
        np.testing.assert_array_equal(a["y"], b["y"])

    def failing(step):
        if step == 2:
            raise RuntimeError("boom")
        return {"step": np.array(step)}

    it = iter(batching.Prefetcher(failing, 0, 5))
    assert next(it)[0] == 0 and next(it)[0] == 1
    with pytest.raises(RuntimeError, match="boom"):
        next(it)
