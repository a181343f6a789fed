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
* drives an optional tqdm progress bar.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Hashable

Candidate = Hashable
CostFn = Callable[[Candidate], float]


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
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.e, self.cache, self.key, self.on_error = e, cache, key, on_error
        self.calls = 0
        self.hits = 0
        self.rejected = 0
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="cand")

    def __call__(self, candidate: Candidate) -> tuple[float | None, str | None]:
        """(e(ξ), None) on success, (None, message) on a skipped failure."""
        value = self._lookup(candidate)
        if value is not None:
            self.hits += 1
            self._tick()
            return value, None
        try:
            self.calls += 1
            value = float(self.e(candidate))
            if valid_error(value) is None:
                raise ValueError(f"e({candidate!r}) = {value}; errors must be finite and > 0")
        except Exception as exc:  # noqa: BLE001 - policy decided by on_error
            if self.on_error == "raise":
                self.close()
                raise
            self._tick()
            return None, f"{type(exc).__name__}: {exc}"
        if self.cache is not None:
            put = getattr(self.cache, "put", None)
            if put is not None:
                put(self.key(candidate), value)
            else:
                self.cache[self.key(candidate)] = value
        self._tick()
        return value, None

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
        """Close the progress bar (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
