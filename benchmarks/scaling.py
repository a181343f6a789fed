"""Data-parallel weak scaling of the KD proxy train step: throughput and MFU vs device count.

  python -m benchmarks.scaling --out=benchmarks/results/scaling_cpu.json           # CPU
  python -m benchmarks.scaling --dtype=bfloat16 --shapes=bort,bert-base \\
      --per_device_batch=32 --out=$OUT/scaling.json                               # GPU/TPU

The step is the project's own proxy/KD train step, placed the way `train.train` places it
under an active `sharding.Partitioner`: the student `Bert` (teacher vocabulary, MLM head, no
pooler, dropout 0 as in `proxy.ProxyConfig`) with `distill.make_loss_fn`'s objective (MLM CE
at the masked positions + hidden-state KD of all D+1 states through learned projections),
`train.make_train_step` (value_and_grad + AdamW of `ProxyConfig().optim`, state donated), the
state sharded by `Partitioner.tree_shardings` and the batch split by `Partitioner.put_batch`,
on a `MeshConfig(data=N)` mesh of the first N devices. The teacher is MiniLM-shaped
(30,522-token vocabulary, D_t=6, H_t=384); the batch is `bort_jax.plan.synthetic_data`'s random
rows with random float16 teacher hidden states (`common.synthetic_kd`; speed does not depend
on values). `--dtype=bfloat16` sets the student's computation dtype (parameters and
optimizer state stay float32: mixed precision).

Weak scaling: a fixed `--per_device_batch`, global batch = N × per-device batch, for
N = 1, 2, 4, 8 (up to the devices present). Per N and shape: compile (`.lower().compile()`,
recorded, not timed), 1 warm-up step, then `--repeats` timings of `--steps` consecutive steps
(blocking at the end); the median per-step time gives sequences/s, tokens/s and

  MFU = model FLOPs per step / step time / (N × peak FLOP/s per device),
  model FLOPs per step = 3 × forward matmul FLOPs (`arch.flops` of the encoder at the global
  batch, + MLM head at the masked positions + the D+1 KD projections;
  `bort_jax.plan.step_flops`).

Peak per device: a table of dense bf16 figures for known chips (`PEAK_TFLOPS`, matched in
`device_kind`), or `--peak_tflops`. On CPU the peak is *measured* in the same run: a jitted
`--peak_n`² matmul of `--dtype` (`common.matmul_peak`), in the parent process; so is that of an
accelerator the table does not know (best of a ≥ 8192² bfloat16 matmul; named as measured).

Feeding (`--feeds`): 'resident' reuses one placed batch (the compute alone); 'host-fed' places
the host batch (`Partitioner.put_batch`) before every step in the loop, as the loop did before
`batching.Prefetcher` placed batches; 'prefetch' lets that thread place them, two ahead. The
step is compiled once per shape and count; every feed times the same executable. With
`--rows_out` each row is appended (JSON lines, flushed) as soon as it is measured.

CPU: `XLA_FLAGS` must be set before jax starts, so each N runs in its own subprocess with
`--xla_force_host_platform_device_count=N`. Those N "devices" are threads sharing the same
cores, so the CPU figures test that the sharded program compiles and runs (and what the
partitioning costs), not a speed-up; per-device MFU there divides by N × the whole machine's
peak and must fall as 1/N.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax.sharding import NamedSharding, PartitionSpec

from benchmarks import common
from bort_jax import distill, plan, proxy, sharding, train
from bort_jax.arch import Arch, Spec
from bort_jax.data import batching
from bort_jax.models.bert import Bert

_REPO = Path(__file__).resolve().parents[1]  # the workers run `python -m` from here

SHAPES = {  # name -> (D, A, H, I)
    "tiny": (2, 4, 128, 512),
    "bort": (4, 8, 1024, 768),  # arch.BORT
    "bert-base": (12, 12, 768, 3072),  # arch.BERT_BASE
}
# Dense bf16 peak TFLOP/s per device, matched (first hit) as a substring of `device_kind`.
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("v5 lite", 197.0),
    ("v5e", 197.0),
    ("v5p", 459.0),
    ("TPU v5", 459.0),
    ("TPU v4", 275.0),
)
TEACHER = common.MINILM
DEVICE_COUNTS = (1, 2, 4, 8)
FEEDS = ("resident", "host-fed", "prefetch")
FAKE_NOTE = (
    "fake CPU devices (--xla_force_host_platform_device_count) share the same cores: these "
    "figures test the sharded program, not speed-up"
)


def peak_for(device_kind: str) -> float | None:
    """Dense bf16 peak FLOP/s of one device of `device_kind`, or None when unknown."""
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in device_kind.lower():
            return tflops * 1e12
    return None


def masked_positions(seq_len: int) -> int:
    """Masked positions per sequence: 15% of the tokens, at least 1 (BERT's rate)."""
    return max(1, round(0.15 * seq_len))


# ----------------------------------------------------------------------------------- worker


def bench_one(shape: str, n: int, args: types.SimpleNamespace) -> dict[str, Any]:
    """Compile and time the sharded KD step of `shape` on the first `n` devices."""
    arch = Arch(*SHAPES[shape])
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.dtype]
    spec = distill.student_spec(Spec(max_positions=512))
    model = Bert(
        arch, spec, mlm_head=True, dropout_rate=0.0, attention_dropout_rate=0.0, dtype=dtype
    )
    global_batch = args.per_device_batch * n
    positions = masked_positions(args.seq_len)
    data, host_batch = common.synthetic_kd(global_batch, args.seq_len, positions, TEACHER)
    loss_fn = distill.make_loss_fn(model, data, distill.KDWeights())
    tx = train.make_optimizer(proxy.ProxyConfig().optim, 1000)
    part = sharding.Partitioner.from_config(sharding.MeshConfig(data=n), jax.devices()[:n])
    params = distill.init_student(arch, spec, TEACHER.hidden, seed=0)
    with part.activate():
        # As `train.train` does under a partitioner:
        state_sharding = train.state_shardings(part, params, tx, 0)
        metrics_sharding = NamedSharding(part.mesh, PartitionSpec())
        state = train.sharded_state(params, tx, 0, state_sharding)
        step = train.make_train_step(loss_fn, tx, state_sharding, metrics_sharding)
        batch = part.put_batch(host_batch)
        t0 = time.perf_counter()
        compiled = step.lower(state, batch).compile()
        compile_s = time.perf_counter() - t0
        state, metrics = compiled(state, batch)  # warm-up
        loss0 = float(metrics["loss"])
        step_flops = plan.step_flops(
            arch, spec, global_batch, args.seq_len, positions, teacher_hidden=TEACHER.hidden
        )
        rows = []
        for feed in args.feed_modes:
            state, metrics, times, others = _time_feed(
                feed, compiled, state, batch, host_batch, part, args
            )
            step_s = statistics.median(times)
            rows.append(
                {
                    "shape": shape,
                    "arch": str(arch),
                    "feed": feed,
                    "devices": n,
                    "mesh": dict(part.mesh.shape),
                    "global_batch": global_batch,
                    "batch_mb": sum(np.asarray(v).nbytes for v in host_batch.values()) / 1e6,
                    "step_s": step_s,
                    "step_s_all": times,
                    "compile_s": compile_s,
                    "seq_per_s": global_batch / step_s,
                    "tokens_per_s": global_batch * args.seq_len / step_s,
                    "step_tflop": step_flops / 1e12,
                    "achieved_tflops": step_flops / step_s / 1e12,
                    "first_loss": loss0,
                    "last_loss_finite": bool(jnp.isfinite(metrics["loss"])),
                    "others_busy": others,
                    "param_sharding_sample": str(
                        jax.tree_util.tree_leaves(state_sharding.params)[0].spec
                    ),
                }
            )
    return rows


def _time_feed(feed, compiled, state, batch, host_batch, part, args):
    """(state, metrics, per-step seconds of each repeat, others' CPU share) of `feed`:
    'resident' reuses the placed `batch`; 'host-fed' places `host_batch` in the loop before
    every step; 'prefetch' has `batching.Prefetcher` place it in its thread, two ahead."""
    times, meter = [], common.BusyMeter()
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        if feed == "resident":
            feeder = ((s, batch) for s in range(args.steps))
        elif feed == "host-fed":
            feeder = ((s, part.put_batch(host_batch)) for s in range(args.steps))
        else:
            feeder = batching.Prefetcher(lambda s: host_batch, 0, args.steps, place=part.put_batch)
        for _, b in feeder:
            state, metrics = compiled(state, b)
        jax.block_until_ready((state, metrics))
        times.append((time.perf_counter() - t0) / args.steps)
    return state, metrics, times, meter.stop()[1]


def worker(args: types.SimpleNamespace, counts: Sequence[int]) -> list[dict[str, Any]]:
    """Rows of every (device count, shape, feed); each is appended to `--rows_out` (JSON
    lines) as soon as it is measured, so a run cut short keeps what it finished."""
    rows = []
    for n in counts:
        for shape in args.shapes:
            for row in bench_one(shape, n, args):
                print(
                    f"# N={n} {shape} {row['feed']}: {row['step_s'] * 1e3:.1f} ms/step, "
                    f"compile {row['compile_s']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
                _append_row(args.rows_out, row)
                rows.append(row)
    return rows


def _append_row(path: str, row: dict[str, Any]) -> None:
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------------- driver


def run_fake_cpu(n: int, args: types.SimpleNamespace, argv: Sequence[str]) -> list[dict[str, Any]]:
    """One subprocess with `n` fake host devices; its rows (or an error row per shape)."""
    xla = os.environ.get("XLA_FLAGS", "")
    env = dict(
        os.environ,
        XLA_FLAGS=f"{xla} --xla_force_host_platform_device_count={n}".strip(),
        JAX_PLATFORMS="cpu",
    )
    cmd = [sys.executable, "-m", "benchmarks.scaling", *argv, f"--worker_devices={n}"]
    proc = subprocess.run(cmd, env=env, cwd=_REPO, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:  # the worker's stderr (progress, traceback) went to ours
        error = f"exit {proc.returncode} (worker's stderr above)"
        return [{"shape": s, "devices": n, "error": error} for s in args.shapes]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def add_mfu(rows: list[dict[str, Any]], peak: float) -> None:
    """MFU and weak-scaling efficiency (throughput_N / (N · throughput_1)) per row."""
    key = lambda r: (r["shape"], r.get("feed", "resident"))  # noqa: E731
    base = {key(r): r for r in rows if r.get("devices") == 1 and "error" not in r}
    for r in rows:
        if "error" in r:
            continue
        r["mfu"] = r["achieved_tflops"] * 1e12 / (r["devices"] * peak)
        b = base.get(key(r))
        r["weak_eff"] = r["seq_per_s"] / (r["devices"] * b["seq_per_s"]) if b else None


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"KD proxy step, {res['dtype']}, per-device batch {res['per_device_batch']} × "
        f"{res['seq_len']} tokens, data-parallel (MeshConfig(data=N)); backend "
        f"{res['backend']} ({res['device_kind']}); peak {res['peak_tflops']:.3g} TFLOP/s per "
        f"device ({res['peak_source']}).",
    ]
    if res["fake_devices"]:
        lines.append(f"\n**Note:** {FAKE_NOTE}.")
    lines += [
        f"\nLoad average {res['load_before']} before, {res['load_after']} after "
        "(shared machine: other workers' jobs may run meanwhile; 'others' = their share of "
        "the CPU time while timing).",
        "",
        "| shape | ⟨D,A,H,I⟩ | feed | N | global B | step ms | seq/s | tok/s | GFLOP/step "
        "| TFLOP/s | MFU | weak-scaling eff. | compile s | others |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['shape']} | | {r['devices']} | **failed**: {r['error'][:150]} |")
            continue
        eff = f"{100 * r['weak_eff']:.0f}%" if r.get("weak_eff") is not None else "–"
        others = f"{100 * r['others_busy']:.0f}%" if r["others_busy"] is not None else "–"
        lines.append(
            f"| {r['shape']} | {r['arch']} | {r.get('feed', 'resident')} | {r['devices']} | "
            f"{r['global_batch']} | "
            f"{1e3 * r['step_s']:.1f} | {r['seq_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
            f"{1e3 * r['step_tflop']:.2f} | {r['achieved_tflops']:.3g} | {100 * r['mfu']:.1f}% | "
            f"{eff} | {r['compile_s']:.1f} | {others} |"
        )
    return "\n".join(lines)


_FLAGS = (
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "student computation dtype"),
    flags.DEFINE_string("shapes", "tiny,bort", f"subset of {list(SHAPES)}"),
    flags.DEFINE_integer("per_device_batch", 2, "sequences per device"),
    flags.DEFINE_integer("seq_len", 128, "tokens per sequence"),
    flags.DEFINE_integer("steps", 3, "consecutive steps per timing"),
    flags.DEFINE_integer("repeats", 3, "timings per point (median)"),
    flags.DEFINE_string("devices", "1,2,4,8", "device counts (<= devices present)"),
    flags.DEFINE_float("peak_tflops", 0.0, "override the peak table"),
    flags.DEFINE_integer("peak_n", 2048, "CPU peak matmul size"),
    flags.DEFINE_string(
        "feeds",
        "resident",
        "comma-separated: resident (batch placed once), host-fed (placed before each step in "
        "the loop), prefetch (placed by batching.Prefetcher's thread)",
    ),
    flags.DEFINE_string("rows_out", "", "JSON-lines file each row is appended to when done"),
    flags.DEFINE_string("out", "", "JSON path; the Markdown goes next to it (.md)"),
    flags.DEFINE_integer("worker_devices", 0, "internal: time on this many devices, print JSON"),
)


def check_args(args: types.SimpleNamespace) -> None:
    """Errors naming the bad option, before any compilation."""
    args.shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown or not args.shapes:
        raise ValueError(f"--shapes: unknown {unknown}; choose from {list(SHAPES)}")
    for name in ("per_device_batch", "seq_len", "steps", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}={getattr(args, name)}: must be >= 1")
    if args.seq_len > 512:
        raise ValueError(f"--seq_len={args.seq_len}: the student has 512 positions")
    try:
        args.device_counts = [int(v) for v in args.devices.split(",") if v]
    except ValueError as e:
        raise ValueError(f"--devices={args.devices!r}: want comma-separated integers") from e
    if not args.device_counts or min(args.device_counts) < 1:
        raise ValueError(f"--devices={args.devices!r}: want positive counts")
    args.feed_modes = [f for f in args.feeds.split(",") if f]
    bad = [f for f in args.feed_modes if f not in FEEDS]
    if bad or not args.feed_modes:
        raise ValueError(f"--feeds: unknown {bad}; choose from {list(FEEDS)}")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = common.flag_values(_FLAGS)
    check_args(args)
    if args.worker_devices:
        print(json.dumps(worker(args, [args.worker_devices])))
        return
    load_before = common.load_average()
    backend = jax.default_backend()
    kind = jax.devices()[0].device_kind
    fake = backend == "cpu"
    cpu_peak = None
    if args.peak_tflops:
        peak, source = args.peak_tflops * 1e12, "--peak_tflops"
    elif fake:
        cpu_peak = common.matmul_peak(getattr(jnp, args.dtype), n=args.peak_n)
        peak = cpu_peak["gflops"] * 1e9
        source = (
            f"measured in this run: median of a jitted {args.peak_n}² {args.dtype} matmul "
            "on the whole machine"
        )
    else:
        peak = peak_for(kind)
        if peak is None:  # a chip the table does not know: its achieved matmul rate
            measured = common.matmul_peak(jnp.bfloat16, n=max(args.peak_n, 8192))
            peak = measured["gflops_best"] * 1e9
            source = (
                f"{kind!r} not in the table: measured in this run, best of a jitted "
                f"{measured['n']}² bfloat16 matmul (an achieved, not a datasheet, peak)"
            )
        else:
            source = f"dense bf16 table entry for {kind!r}"
        if args.dtype != "bfloat16":
            source += " (float32 run compared to the bf16 peak)"
    if fake:
        counts = args.device_counts
        rows = []
        for n in counts:
            rows += run_fake_cpu(n, args, sys.argv[1:])
    else:
        counts = [n for n in args.device_counts if n <= jax.device_count()]
        rows = worker(args, counts)
    add_mfu(rows, peak)
    res = {
        "dtype": args.dtype,
        "shapes": {s: SHAPES[s] for s in args.shapes},
        "per_device_batch": args.per_device_batch,
        "seq_len": args.seq_len,
        "masked_positions": masked_positions(args.seq_len),
        "steps": args.steps,
        "repeats": args.repeats,
        "backend": backend,
        "device_kind": kind,
        "fake_devices": fake,
        "note": FAKE_NOTE if fake else "real devices",
        "peak_tflops": peak / 1e12,
        "peak_source": source,
        "cpu_peak": cpu_peak,
        "rows": rows,
        "load_before": load_before,
        "load_after": common.load_average(),
        "uptime": _uptime(),
        "machine": common.machine_info(),
        "command": common.command_line("benchmarks.scaling"),
    }
    common.write_result(res, markdown(res), args.out)


if __name__ == "__main__":
    app.run(main)
