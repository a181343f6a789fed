"""Step time of KD training when batches come from the host vs when they are on device.

  python -m benchmarks.feed --out=benchmarks/results/feed_cpu.json
  python -m benchmarks.feed --batch=64 --seq_len=128 --vocab=50265 --positions=20   # bert_large

The student (default: the Bort shape D4/A8/H1024/I768) takes `train.make_train_step` steps of
the logit-KD objective (`distill.make_loss_fn`: 0.1·MLM + 0.5·T²·KL at T = 2, as
configs/bert_large.py's proxy) against full teacher logits [B, P, V] float16 read from a
memory-mapped `.npy` cache (what the teacher cache serves; bert_large at B = 64, P = 20,
V = 50,265 is 129 MB per step). Three ways to feed it, timed side by side in one run:

  resident   one batch placed on device once and reused (no feeding at all: the floor);
  host-fed   the previous loop: a thread gathers the rows from the memory-map, the loop hands
             the host arrays to the step (the host-to-device copy sits in the step's dispatch);
  prefetch   `batching.Prefetcher` with `place`: the thread gathers *and* places each batch
             on device, two steps ahead (what `train.train` does now).

Each repeat runs `--steps` steps and waits for the last; the per-step time is the median over
`--repeats` repeats (compilation and a warm-up repeat excluded). Ratios are to `resident`.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import types
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import common
from bort_jax import distill, plan, train
from bort_jax.arch import Arch, Spec
from bort_jax.data import batching

MODES = ("resident", "host-fed", "prefetch")


def _memmapped(arrays: dict[str, np.ndarray], directory: str) -> dict[str, np.ndarray]:
    """`arrays` written as .npy files and mapped back read-only (as the teacher cache)."""
    out = {}
    for k, v in arrays.items():
        path = os.path.join(directory, f"{k}.npy")
        np.save(path, v)
        out[k] = np.load(path, mmap_mode="r")
    return out


def run(args: types.SimpleNamespace) -> dict:
    arch = Arch.parse(args.arch)
    spec = Spec(vocab_size=args.vocab, max_positions=max(512, args.seq_len))
    kd = distill.KDWeights(mlm=0.1, hidden=0.0, logit=0.5, temperature=2.0)
    rows = args.batch * args.rows_per_batch
    data = plan.synthetic_data(
        rows, args.seq_len, args.positions, common.MINILM, spec, (), True, 0, 2.0, seed=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = dataclasses.replace(data, teacher_train=_memmapped(data.teacher_train, tmp))
        student = distill.build_student(arch, data, spec, kd, seed=0)
        tx = train.make_optimizer(train.OptimConfig(learning_rate=1e-5), 10**6)
        step = train.make_train_step(student.loss_fn, tx)
        source = distill.train_batches(data, args.batch, 0)
        batch_bytes = sum(np.asarray(v).nbytes for v in source(0).values())
        params = jax.tree_util.tree_map(jnp.array, student.params)  # a copy: donated
        state = {"s": train.init_state(params, tx, 0), "next": 0}
        resident = jax.device_put(source(0))
        device = next(iter(resident["input_ids"].devices()))

        def steps(mode: str) -> float:
            """Seconds for `args.steps` steps fed by `mode`, waiting for the last one."""
            start = state["next"]
            stop = start + args.steps
            state["next"] = stop
            t0 = time.perf_counter()
            if mode == "resident":
                feed = ((s, resident) for s in range(start, stop))
            elif mode == "host-fed":
                feed = batching.Prefetcher(source, start, stop)
            else:
                place = lambda b: jax.device_put(dict(b), device)  # noqa: E731
                feed = batching.Prefetcher(source, start, stop, place=place)
            s_ = state["s"]
            for _, b in feed:
                s_, m = step(s_, b)
            jax.block_until_ready(m["loss"])
            state["s"] = s_
            return time.perf_counter() - t0

        state["s"], m = step(state["s"], resident)  # compile
        jax.block_until_ready(m["loss"])
        for mode in MODES:  # warm-up: page cache, thread start, allocator
            steps(mode)
        meter = common.BusyMeter()
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(args.repeats):  # interleaved, so a load change hits every mode alike
            for mode in MODES:
                times[mode].append(steps(mode) / args.steps)
        others = meter.stop()[1]
    med = {m: float(np.median(t)) for m, t in times.items()}
    peak = common.matmul_peak(n=args.peak_n) if args.peak_n else None
    sflops = plan.step_flops(
        arch, spec, args.batch, args.seq_len, args.positions, teacher_hidden=arch.hidden
    )
    return {
        "arch": str(arch),
        "batch": args.batch,
        "seq_len": args.seq_len,
        "positions": args.positions,
        "vocab": args.vocab,
        "batch_mb": batch_bytes / 1e6,
        "steps_per_repeat": args.steps,
        "repeats": args.repeats,
        "step_gflop": sflops / 1e9,
        "peak_fp32": peak,
        "rows": [
            {
                "mode": m,
                "step_s": med[m],
                "min_s": float(np.min(times[m])),
                "vs_resident": med[m] / med["resident"],
                "gflops": sflops / med[m] / 1e9,
                "all": times[m],
            }
            for m in MODES
        ],
        "others_busy": others,
        "machine": common.machine_info(),
        "command": common.command_line("benchmarks.feed"),
    }


def markdown(res: dict) -> str:
    peak = res["peak_fp32"]
    lines = [
        f"Student {res['arch']}, batch {res['batch']} × {res['seq_len']}, full teacher logits "
        f"[{res['batch']}, {res['positions']}, {res['vocab']}] float16 from a memory-map "
        f"({res['batch_mb']:.1f} MB per batch); median of {res['repeats']} repeats × "
        f"{res['steps_per_repeat']} steps"
        + (f"; fp32 matmul peak {peak['gflops']:.1f} GFLOP/s" if peak else ""),
        "",
        "| feed | step (s) | best (s) | × resident | GFLOP/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['mode']} | {r['step_s']:.4f} | {r['min_s']:.4f} | {r['vs_resident']:.3f} | "
            f"{r['gflops']:.1f} |"
        )
    busy = res["others_busy"]
    if busy is not None:
        lines.append(f"\nOther processes took {100 * busy:.0f}% of the CPUs meanwhile.")
    return "\n".join(lines)


_FLAGS = (
    flags.DEFINE_string("arch", "4,8,1024,768", "student D,A,H,I"),
    flags.DEFINE_integer("batch", 8, "sequences per step"),
    flags.DEFINE_integer("seq_len", 128, "tokens per sequence"),
    flags.DEFINE_integer("positions", 20, "masked positions per row (teacher logits per row)"),
    flags.DEFINE_integer("vocab", 50265, "vocabulary (RoBERTa-large: 50,265)"),
    flags.DEFINE_integer("rows_per_batch", 8, "rows in the cache, in batches"),
    flags.DEFINE_integer("steps", 4, "steps per timed repeat"),
    flags.DEFINE_integer("repeats", 5, "timed repeats (median)"),
    flags.DEFINE_integer("peak_n", 0, "side of the fp32 peak matmul (0: not measured)"),
    flags.DEFINE_string("out", "", "JSON path; the Markdown goes next to it (.md)"),
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = common.flag_values(_FLAGS)
    if args.repeats < 3 or args.steps < 1:
        raise app.UsageError("need --repeats >= 3 and --steps >= 1")
    res = run(args)
    common.write_result(res, markdown(res), args.out)


if __name__ == "__main__":
    app.run(main)
