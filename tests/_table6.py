"""A 6-candidate OSE table whose published W, picks and random-search statistics are computed
by hand in tests/test_interval.py and tests/test_random_search.py."""

from __future__ import annotations

from typing import NamedTuple


class C(NamedTuple):
    name: str


# name: (p, i, e); T = (max p, max i) = (60, 60). Published W by hand:
#   A (50/60)(40/60)/0.5 = 10/9     B (40/60)(50/60)/0.4 = 25/18 (the optimum)
#   C (30/60)(20/60)/0.25 = 2/3     D (20/60)(30/60)/0.2 = 5/6
#   E (10/60)(10/60)/0.2 = 5/36     F = T: 0
TABLE = {
    "A": (10.0, 20.0, 0.5),
    "B": (20.0, 10.0, 0.4),
    "C": (30.0, 40.0, 0.25),
    "D": (40.0, 30.0, 0.2),
    "E": (50.0, 50.0, 0.2),
    "F": (60.0, 60.0, 0.1),
}
CANDS = [C(n) for n in "DAFCEB"]  # not in size order: the algorithm sorts
W_HAND = {"A": 10 / 9, "B": 25 / 18, "C": 2 / 3, "D": 5 / 6, "E": 5 / 36, "F": 0.0}


def p(c):
    return TABLE[c.name][0]


def i(c):
    return TABLE[c.name][1]


class CountingE:
    def __init__(self):
        self.seen = []

    def __call__(self, c, theta=None):
        self.seen.append((c.name, None if theta is None else dict(theta)))
        base = TABLE[c.name][2]
        return base if theta is None else base * theta["scale"]
