"""Candidate-parallel look-ahead of the search loop [ours] (see `fptas`, "Candidate-parallel
search"): rounds of up to k concurrent e-calls, the one the loop asked for plus k − 1 guesses.

The loop consumes e-values only when it asks for them, so for the same e-values the evaluation
sequence, bounds, stop, choice and guarantee equal the sequential search's; guesses it never
asks for are computed, cached and counted (`Lookahead.unused`).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Sequence

import numpy as np

from bort_jax.search.evaluator import Evaluator

Candidate = Hashable


class Lookahead:
    """E-values for the search loop, fetched in concurrent rounds of up to ``parallel``.

    ``get(k, speculate)`` returns candidate k's outcome; when it is not at hand, one round
    evaluates k together with ``speculate(k)`` (candidates the loop may ask for next) through
    `Evaluator.many`. Outcomes not asked for stay at hand; at the end they are the speculative
    evaluations the search did not need.
    """

    def __init__(self, evaluator: Evaluator, cands: Sequence[Candidate]) -> None:
        self.evaluator, self.cands = evaluator, cands
        self.at_hand: dict[int, Any] = {}
        self.rounds = 0

    def get(self, k: int, speculate: Callable[[int], list[int]]) -> tuple[float | None, str | None]:
        if k not in self.at_hand:
            batch = [k]
            if self.evaluator.parallel > 1:
                extra = [j for j in speculate(k) if j != k and j not in self.at_hand]
                batch += list(dict.fromkeys(extra))[: self.evaluator.parallel - 1]
            outcomes = self.evaluator.many([self.cands[j] for j in batch])
            self.at_hand.update(zip(batch, outcomes))
            self.rounds += 1
        return self.evaluator.settle(self.cands[k], self.at_hand.pop(k))

    @property
    def unused(self) -> int:
        """Speculative e-calls whose values the search never asked for."""
        return len(self.at_hand)


def speculate(
    first: int,
    pending: np.ndarray,
    ub: np.ndarray,
    size: np.ndarray,
    down: Sequence[np.ndarray],
    count: int,
    pick: Callable[[int, np.ndarray], int],
) -> list[int]:
    """Up to ``count`` candidates the loop may ask for after ``first`` (candidate-parallel).

    Repeatedly: ξ* = the largest-UB candidate among the pending ones outside the down-sets of
    the candidates already chosen (the bounds a round's results leave unchanged), then its
    step-4 choice ``pick(ξ*, pending)``. A guess only: correctness never depends on it.
    """
    avail = pending.copy()
    avail[first] = False
    avail[down[first]] = False
    picks: list[int] = []
    while len(picks) < count:
        todo = np.flatnonzero(avail)
        if todo.size == 0:
            break
        top = ub[todo].max()
        tied = todo[ub[todo] == top]
        star = int(tied[size[tied] == size[tied].max()][0])
        j = pick(star, pending)
        avail[star] = False
        if j != first and j not in picks and pending[j]:
            picks.append(j)
            avail[j] = False
            avail[down[j]] = False
    return picks
