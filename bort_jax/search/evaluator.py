"""Calling the expensive error e(ξ) of an OSE search: cache, validation, counting, progress.

Context: de Wynter, arXiv 2010.08512 — the error surrogate e is obtained by proxy-training each
candidate, which is the only expensive step of the search (see docs/fptas.md). Both `fptas` and
`exhaustive` call e through an `Evaluator`, which

* looks the candidate up in an optional cache first (the cache protocol is ``get(key)`` returning
  the stored value or None, and ``put(key, value)``; a plain dict works too);
* validates every value, fresh or cached, with the same rule: e(ξ) must be a finite number > 0.
  A fresh invalid value is an error of e (policy ``on_error``); a cached invalid value (NaN, inf,
  ≤ 0, not a number) is treated as a miss: e is called again and the cache entry overwritten;
* counts calls to e, cache hits and rejected cache entries;
* drives an optional tqdm progress bar;
* evaluates a batch of candidates concurrently (`many`, up to ``parallel`` calls of e at a time
  on a thread pool). The candidate-parallel search gives each call its own device group (the
  e of `bort_jax.extract` takes a free sub-mesh from a queue), so threads only dispatch: the
  devices do the work. Outcomes are returned, never raised, so the caller decides when a
  failure matters (a speculative candidate's failure may never be needed).
"""

from __future__ import annotations

import concurrent.futures
import math
from typing import Any, Callable, Hashable, Sequence

Candidate = Hashable
CostFn = Callable[[Candidate], float]
# (value, None) on success; (None, exception) when e failed or returned an invalid value.
Outcome = tuple[float | None, BaseException | None]


def candidate_key(candidate: Candidate) -> str:
    """Default cache key: the candidate's repr (stable for NamedTuples and dataclasses)."""
    return repr(candidate)


def valid_error(value: Any) -> float | None:
    """``float(value)`` if it is a finite number > 0 (a usable error e(ξ)), else None."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


class Evaluator:
    """Calls e through an optional cache, counts calls, handles failures, drives a progress bar.

    Attributes:
      calls: calls made to e (cache hits excluded).
      hits: valid cached values used instead of calling e.
      rejected: cached values found invalid (NaN, inf, ≤ 0, not a number) and recomputed.
      parallel: at most this many calls of e run at once in `many` (1: one after another).
    """

    def __init__(
        self,
        e: CostFn,
        cache: Any,
        key: Callable[[Candidate], str],
        on_error: str,
        progress: bool,
        total: int,
        desc: str,
        parallel: int = 1,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise ValueError(f"parallel must be a positive int, got {parallel!r}")
        self.e, self.cache, self.key, self.on_error = e, cache, key, on_error
        self.parallel = parallel
        self.calls = 0
        self.hits = 0
        self.rejected = 0
        self.bar = None
        self._pool = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="cand")

    def __call__(self, candidate: Candidate) -> tuple[float | None, str | None]:
        """(e(ξ), None) on success, (None, message) on a skipped failure."""
        return self.settle(candidate, self.many([candidate])[0])

    def settle(self, candidate: Candidate, outcome: Outcome) -> tuple[float | None, str | None]:
        """Apply the ``on_error`` policy to an outcome of `many`: raise, or (None, message)."""
        value, exc = outcome
        if exc is None:
            return value, None
        if self.on_error == "raise":
            self.close()
            raise exc
        return None, f"{type(exc).__name__}: {exc}"

    def many(self, candidates: Sequence[Candidate]) -> list[Outcome]:
        """Outcomes of e for ``candidates`` (in order): cache first, then up to ``parallel``
        concurrent calls. Valid fresh values are cached in candidate order (deterministic)."""
        out: list[Outcome | None] = [None] * len(candidates)
        misses = []
        for idx, c in enumerate(candidates):
            value = self._lookup(c)
            if value is None:
                misses.append(idx)
                continue
            self.hits += 1
            self._tick()
            out[idx] = (value, None)
        self.calls += len(misses)
        if len(misses) > 1 and self.parallel > 1:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.parallel, thread_name_prefix="candidate"
                )
            futures = [self._pool.submit(self._compute, candidates[idx]) for idx in misses]
            fresh = [f.result() for f in futures]
        else:
            fresh = [self._compute(candidates[idx]) for idx in misses]
        for idx, outcome in zip(misses, fresh):
            if outcome[1] is None:
                self._store(candidates[idx], outcome[0])
            self._tick()
            out[idx] = outcome
        return out  # type: ignore[return-value]

    def _compute(self, candidate: Candidate) -> Outcome:
        try:
            value = float(self.e(candidate))
            if valid_error(value) is None:
                raise ValueError(f"e({candidate!r}) = {value}; errors must be finite and > 0")
        except Exception as exc:  # noqa: BLE001 - policy decided by on_error in `settle`
            return None, exc
        return value, None

    def _store(self, candidate: Candidate, value: float) -> None:
        if self.cache is None:
            return
        put = getattr(self.cache, "put", None)
        if put is not None:
            put(self.key(candidate), value)
        else:
            self.cache[self.key(candidate)] = value

    def _lookup(self, candidate: Candidate) -> float | None:
        """A valid cached value, or None (absent, or present but invalid: then counted)."""
        if self.cache is None:
            return None
        raw = self.cache.get(self.key(candidate))
        if raw is None:
            return None
        value = valid_error(raw)
        if value is None:
            self.rejected += 1
        return value

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def postfix(self, **values: float) -> None:
        """Show the current figures (best W, bound) next to the progress bar."""
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()})

    def close(self) -> None:
        """Close the progress bar and the thread pool (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
