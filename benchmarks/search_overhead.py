"""Overhead of the OSE search itself (everything but e): numpy order/bounds vs Python loops.

  python -m benchmarks.search_overhead                       # default sizes 100 … 5,000
  python -m benchmarks.search_overhead --sizes=10x10x10 --repeats=5 --slow_max_n=0

The search (`bort_jax.search.fptas.fptas`, docs/fptas.md) computes the order ⪯ between all pairs
of candidates, trims, then alternates bound updates with calls to e. With a real e (proxy
training, minutes per call) that overhead is noise; with many candidates it was not: the
pairwise Python loops cost ~2.6 µs per pair, 83 s for 4,913 candidates before the first e call.

Instance: a grid of three monotone integer axes (``--sizes`` as AxBxC, n = A·B·C candidates),
p = 1 + 3a + 2b + 1.5c, i = 1 + a² + 2b² + 0.5c², and a cheap error obeying assumption M,
e = 0.05 + 3·p^(−1/2) (`synthetic.capacity_instance`); objective W = (p_ref/p)^α (i_ref/i)^β
(e_ref/e)^γ with ``--objective`` = α,β,γ, at ``--eps``.

Three code paths, timed side by side in one process (wall clock of the whole `fptas` call, and
of the part before its first call to e):
  old        — the committed Python implementation at ``--baseline_rev`` (read with `git show`;
               skipped when git or the revision is unavailable);
  generic    — the current code with the order given as an opaque function (`leq=lambda a, b:
               space.leq(a, b)`), i.e. the pairwise fallback for a custom ``leq``;
  vectorised — the current code with the grid's own order (numpy dominance matrix).
Each path reports the median of ``--repeats`` runs (``--slow_repeats`` for old/generic, which are
skipped above ``--slow_max_n`` candidates). Every path must choose the same candidate after the
same sequence of e calls; the table says so per row and the run fails otherwise.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from absl import app, flags

from benchmarks import common
from bort_jax.files import atomic_write_json
from bort_jax.search import fptas as F
from bort_jax.search import space as SP
from bort_jax.search import synthetic as S

_REPO = Path(__file__).resolve().parents[1]  # `git show` of the baseline runs here

BASELINE_REV = "321099e"  # last commit with the pure-Python order, trimming and bounds


def make_instance(shape: tuple[int, ...]) -> tuple[SP.SearchSpace, S.SyntheticInstance]:
    """The benchmark grid (three monotone axes) and its cheap instance (see module doc)."""
    space = SP.grid(**{f"a{k}": tuple(range(1, m + 1)) for k, m in enumerate(shape)})
    weights_p, weights_i = (3.0, 2.0, 1.5), (1.0, 2.0, 0.5)

    def p(c: tuple[int, ...]) -> float:
        return 1.0 + sum(w * v for w, v in zip(weights_p, c))

    def i(c: tuple[int, ...]) -> float:
        return 1.0 + sum(w * v * v for w, v in zip(weights_i, c))

    inst = S.capacity_instance(
        "grid", space.candidates(), p, i, a=0.05, b=3.0, power=0.5, leq=space.leq
    )
    return space, inst


def load_baseline(rev: str) -> Any | None:
    """The module bort_jax/search/fptas.py as of git revision ``rev``, or None."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:bort_jax/search/fptas.py"],
            cwd=_REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    name = f"_fptas_baseline_{rev}"
    module = types.ModuleType(name)
    module.__file__ = f"{rev}:bort_jax/search/fptas.py"
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


class TimedError:
    """Wraps e: records the e-call sequence and the time of the first call."""

    def __init__(self, fn: Callable[[Any], float]) -> None:
        self.fn, self.seen, self.first = fn, [], None

    def __call__(self, c: Any) -> float:
        if self.first is None:
            self.first = time.perf_counter()
        self.seen.append(c)
        return self.fn(c)


def time_path(run: Callable[[Callable], Any], e: Callable, repeats: int) -> dict[str, Any]:
    """Median wall time of ``run(e)`` and of its part before the first e call."""
    totals, firsts, outcome = [], [], None
    for _ in range(repeats):
        timed = TimedError(e)
        t0 = time.perf_counter()
        res = run(timed)
        totals.append(time.perf_counter() - t0)
        firsts.append((timed.first or time.perf_counter()) - t0)
        outcome = (res.chosen, tuple(timed.seen))
    return {
        "seconds": statistics.median(totals),
        "to_first_e": statistics.median(firsts),
        "runs": totals,
        "outcome": outcome,
        "evaluations": len(outcome[1]),
    }


def bench_size(
    shape: tuple[int, ...], objective: F.WCoefficient, args: types.SimpleNamespace, old: Any | None
) -> dict[str, Any]:
    """Time the three paths on one grid; the row of the table (``identical``: same outcome)."""
    space, inst = make_instance(shape)
    n = len(inst.candidates)

    def new(leq: Callable) -> Callable[[Callable], Any]:
        return lambda e: F.fptas(
            inst.candidates,
            inst.p,
            inst.i,
            e,
            args.eps,
            objective=objective,
            options=F.SearchOptions(leq=leq),
        )

    paths: dict[str, dict[str, Any]] = {}
    slow = n <= args.slow_max_n
    if old is not None and slow:
        old_objective = old.WCoefficient(objective.alpha, objective.beta, objective.gamma)
        paths["old"] = time_path(
            lambda e: old.fptas(
                inst.candidates, inst.p, inst.i, e, args.eps, objective=old_objective, leq=space.leq
            ),
            inst.e.fn,
            args.slow_repeats,
        )
    if slow:
        paths["generic"] = time_path(
            new(lambda a, b: space.leq(a, b)), inst.e.fn, args.slow_repeats
        )
    paths["vectorised"] = time_path(new(space.leq), inst.e.fn, args.repeats)
    outcomes = {v["outcome"] for v in paths.values()}
    return {
        "shape": "x".join(map(str, shape)),
        "n": n,
        "identical": len(outcomes) == 1,
        "evaluations": paths["vectorised"]["evaluations"],
        "paths": {k: {kk: vv for kk, vv in v.items() if kk != "outcome"} for k, v in paths.items()},
    }


def parse_shape(text: str) -> tuple[int, ...]:
    shape = tuple(int(v) for v in text.lower().split("x"))
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"size {text!r}: want AxBxC with positive ints")
    return shape


_FLAGS = (
    flags.DEFINE_string(
        "sizes",
        "5x5x4,10x10x5,10x10x10,10x20x10,20x25x10",
        "comma-separated grid shapes AxBxC (n = A·B·C candidates)",
    ),
    flags.DEFINE_integer("repeats", 5, "runs per size, vectorised path"),
    flags.DEFINE_integer("slow_repeats", 1, "runs per size, old/generic"),
    flags.DEFINE_integer(
        "slow_max_n", 5000, "skip the old and generic paths above this many candidates"
    ),
    flags.DEFINE_string("objective", "0.5,0.5,4", "alpha,beta,gamma of W"),
    flags.DEFINE_float("eps", 0.1, "the FPTAS' eps"),
    flags.DEFINE_string(
        "baseline_rev", BASELINE_REV, "git revision of the old code path ('' to skip it)"
    ),
    flags.DEFINE_string("out", "", "optional JSON file for the raw timings"),
)


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = common.flag_values(_FLAGS)
    try:
        shapes = [parse_shape(s) for s in args.sizes.split(",") if s]
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    alpha, beta, gamma = (float(v) for v in args.objective.split(","))
    old = load_baseline(args.baseline_rev) if args.baseline_rev else None
    if args.baseline_rev and old is None:
        print(f"(old path skipped: git revision {args.baseline_rev} not readable)")

    rows = []
    for shape in shapes:
        row = bench_size(shape, F.WCoefficient(alpha, beta, gamma), args, old)
        rows.append(row)
        print(
            f"n={row['n']}: "
            + ", ".join(f"{k} {v['seconds']:.3f}s" for k, v in row["paths"].items()),
            flush=True,
        )

    def cell(row: dict, name: str) -> str:
        p = row["paths"].get(name)
        return "–" if p is None else f"{p['seconds']:.2f} ({p['to_first_e']:.2f})"

    def speedup(row: dict, name: str) -> str:
        p = row["paths"].get(name)
        return "–" if p is None else f"{p['seconds'] / row['paths']['vectorised']['seconds']:.0f}×"

    print()
    print(
        f"objective W({alpha:g}, {beta:g}, {gamma:g}), eps = {args.eps:g}; seconds: median "
        f"whole search (before the first e call); old = git {args.baseline_rev or '-'}"
    )
    print()
    print(
        "| n candidates | e-evaluations | old code, s | generic leq, s | vectorised, s "
        "| vectorised vs old | same choice and e-sequence |"
    )
    print("|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['evaluations']} | {cell(r, 'old')} | {cell(r, 'generic')} | "
            f"{cell(r, 'vectorised')} | {speedup(r, 'old')} | "
            f"{'yes' if r['identical'] else 'NO'} |"
        )
    machine = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "loadavg": os.getloadavg(),
    }
    print(f"\nmachine: {machine}")
    if args.out:
        atomic_write_json(
            args.out,
            {
                "command": common.command_line("benchmarks.search_overhead"),
                "machine": machine,
                "rows": rows,
                "objective": [alpha, beta, gamma],
                "eps": args.eps,
                "baseline_rev": args.baseline_rev,
            },
        )
    if not all(r["identical"] for r in rows):
        print("ERROR: the code paths disagree (chosen candidate or e-call sequence)")
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
