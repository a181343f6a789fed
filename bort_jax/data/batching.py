"""Batching: row helpers, the one stateless epoch batcher, the one prefetcher.

A data set is a dict of arrays with a shared leading axis (rows). Every training run in the
project (fine-tuning, distillation / proxy training, Agora, the torus demonstration) draws its
batches from `epoch_batches`, a *stateless* source: the batch of global step `s` depends only on
(data, seed, s), so the data position of a run is its step and a resume from a checkpoint at
step `s` continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

Arrays = dict[str, np.ndarray]
Batch = Mapping[str, np.ndarray]
BatchSource = Callable[[int], Batch]


# ------------------------------------------------------------------------- row helpers


def num_rows(arrays: Mapping[str, np.ndarray]) -> int:
    """Rows of a data set; ValueError naming the keys when they disagree or it is empty."""
    if not arrays:
        raise ValueError("data set has no arrays")
    sizes = {k: int(np.shape(v)[0]) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays disagree on the number of rows: {sizes}")
    return next(iter(sizes.values()))


def take(arrays: Mapping[str, np.ndarray], idx: Sequence[int] | np.ndarray) -> Arrays:
    """Rows `idx` of every array (works on memory-maps: only those rows are read)."""
    idx = np.asarray(idx)
    return {k: np.asarray(v[idx]) for k, v in arrays.items()}


def concat(*datasets: Mapping[str, np.ndarray] | None) -> Arrays:
    """Row-wise concatenation of data sets with the same keys (`None`s are skipped; dtypes
    follow the first data set)."""
    parts = [d for d in datasets if d is not None]
    if not parts:
        raise ValueError("concat needs at least one data set")
    keys = set(parts[0])
    for d in parts[1:]:
        if set(d) != keys:
            raise ValueError(
                f"cannot concatenate data sets with keys {sorted(keys)} and {sorted(d)}"
            )
    first = parts[0]
    return {
        k: np.concatenate(
            [np.asarray(d[k]).astype(np.asarray(first[k]).dtype, copy=False) for d in parts]
        )
        for k in first
    }


def select(arrays: Mapping[str, np.ndarray], keys: Sequence[str]) -> Arrays:
    """The arrays of `keys` that are present, as numpy arrays."""
    return {k: np.asarray(arrays[k]) for k in keys if k in arrays}


# -------------------------------------------------------------------- the batch source


@functools.lru_cache(maxsize=64)
def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The row order of epoch `epoch`: a permutation of range(n) seeded by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_rows(
    step: int, n: int, batch_size: int, seed: int, drop_remainder: bool = False
) -> np.ndarray:
    """Row indices [batch_size] of global step `step`.

    drop_remainder=False: positions step·B … step·B + B − 1 of the concatenation of the
    per-epoch permutations (a batch may straddle two epochs; every row is seen once per
    epoch). drop_remainder=True: epoch e = step // ⌊n/B⌋ uses the first ⌊n/B⌋·B rows of its
    permutation in order (the n mod B others are skipped that epoch).
    """
    if drop_remainder:
        per_epoch = n // batch_size
        epoch, k = divmod(step, per_epoch)
        return epoch_permutation(n, seed, epoch)[k * batch_size : (k + 1) * batch_size]
    pos = step * batch_size + np.arange(batch_size)
    epochs, offsets = np.divmod(pos, n)
    return np.array([epoch_permutation(n, seed, int(e))[o] for e, o in zip(epochs, offsets)])


class EpochBatches:
    """The stateless source of `epoch_batches`: `batch(step)` is the whole (global) batch,
    `batch.local(step, positions)` only the rows `positions` of it (a multi-process run's
    share: `process_local`), read without touching the other rows.

    With a `transform` (it may depend on the whole batch, e.g. trimming padding to the batch's
    longest row) `local` gathers the whole batch, transforms it and then keeps `positions`, so
    every process gets the shape one process would.
    """

    def __init__(self, arrays, batch_size, seed, drop_remainder, transform):
        self.arrays, self.batch_size, self.seed = arrays, batch_size, seed
        self.drop_remainder, self.transform = drop_remainder, transform
        self.n = num_rows(arrays)

    def rows(self, step: int) -> np.ndarray:
        """Data-set row indices [batch_size] of step `step` (`batch_rows`)."""
        return batch_rows(step, self.n, self.batch_size, self.seed, self.drop_remainder)

    def __call__(self, step: int) -> Batch:
        return self.local(step, None)

    def local(self, step: int, positions: np.ndarray | None) -> Batch:
        """Rows `positions` (indices into the batch, None = all) of the batch of `step`."""
        rows = self.rows(step)
        if self.transform is None:
            return take(self.arrays, rows if positions is None else rows[positions])
        out = self.transform(take(self.arrays, rows))
        if positions is None:
            return out
        return {k: np.asarray(v)[positions] for k, v in out.items()}


def epoch_batches(
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    seed: int,
    *,
    drop_remainder: bool = False,
    transform: Callable[[Arrays], Batch] | None = None,
) -> EpochBatches:
    """`batch(step) -> {key: array [batch_size, ...]}`, stateless (see `batch_rows`).

    `transform` post-processes each gathered batch on the host (e.g. trimming padding).
    The source also reads a part of a batch (`EpochBatches.local`), which is how each process
    of a multi-process run reads only its own rows (`process_local`).

    Raises:
      ValueError: empty data, a non-positive batch size, or (drop_remainder) a batch larger
        than the data set.
    """
    n = num_rows(arrays)
    if n == 0:
        raise ValueError("cannot draw batches from an empty data set")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if drop_remainder and batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} rows of the data set")
    return EpochBatches(arrays, batch_size, seed, drop_remainder, transform)


def global_batch_size(source: BatchSource, step: int = 0) -> int:
    """Rows of the (global) batches of `source`: its `batch_size`, else those of `source(step)`."""
    size = getattr(source, "batch_size", None)
    if isinstance(size, int):
        return size
    return num_rows(source(step))


def process_local(source: BatchSource, positions: np.ndarray) -> BatchSource:
    """`step -> rows positions of source(step)`: one process's share of each global batch.

    `positions` are indices into the global batch (e.g. `sharding.Partitioner.process_rows`),
    in the order the process feeds its devices. A source with a `local(step, positions)`
    method (`EpochBatches`) reads only those rows; any other is called whole and cut.
    """
    positions = np.asarray(positions)
    local = getattr(source, "local", None)
    if callable(local):
        return lambda step: local(step, positions)
    return lambda step: {k: np.asarray(v)[positions] for k, v in source(step).items()}


def fixed_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> list[Arrays]:
    """Consecutive full batches of min(batch_size, n) rows, in order (one shape, one compile).

    The n mod batch_size trailing rows are not used. ValueError when there are no rows.
    """
    n = num_rows(arrays)
    size = min(batch_size, n)
    if size <= 0:
        raise ValueError("cannot batch an empty data set")
    return [take(arrays, np.arange(s, s + size)) for s in range(0, n - size + 1, size)]


# --------------------------------------------------------------------------- prefetch


class Prefetcher:
    """Iterates `(step, place(source(step)))` for steps in [start, stop), computed ahead in a
    thread.

    `place` (e.g. `jax.device_put`, `sharding.Partitioner.put_batch`) runs in the thread too,
    so reading the rows (a gather from a memory-mapped cache) and the host-to-device copy of
    step s + 1 … s + `depth` overlap the device's work on step s: the loop receives batches
    already on device, sharded as `place` puts them. At most `depth` placed batches wait in
    the queue (plus the one the thread is placing). `place` None: host batches.

    An exception in `source` or `place` is re-raised in the consuming thread at that step.
    `close()` (or leaving the `with` block, or abandoning the iteration) stops the thread and
    drops the batches it holds.
    """

    def __init__(
        self,
        source: BatchSource,
        start: int,
        stop: int,
        depth: int = 2,
        place: Callable[[Batch], Batch] | None = None,
    ):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(source, start, stop, place), daemon=True
        )
        self._thread.start()

    def _put(self, item) -> bool:
        """Queue `item` unless closed meanwhile; False when closed."""
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: BatchSource, start: int, stop: int, place) -> None:
        for s in range(start, stop):
            if self._stop.is_set():
                return
            try:
                batch = source(s)
                if place is not None:
                    batch = place(batch)
            except Exception as e:  # noqa: BLE001 - surfaced in the main thread
                self._put((s, None, e))
                return
            if not self._put((s, batch, None)):
                return
        self._put(None)  # end of stream

    def __iter__(self) -> Iterator[tuple[int, Batch]]:
        try:
            while (item := self._q.get()) is not None:
                s, batch, err = item
                if err is not None:
                    raise err
                yield s, batch
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread and drop what it queued (idempotent)."""
        self._stop.set()
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)
        while True:  # what the thread put between the drain and its exit
            try:
                self._q.get_nowait()
            except queue.Empty:
                break

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
