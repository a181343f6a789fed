"""Train-step throughput of a KD student: teacher outputs cached vs recomputed.

  python -m benchmarks.train_throughput --out=benchmarks/results/train_cpu.json
  python -m benchmarks.train_throughput --arch=4,8,1024,768 --batch=8 --seq_len=128

The student (default: the Bort shape D4/A8/H1024/I768, in the teacher's vocabulary) takes
`train.make_train_step` steps of the KD objective of `distill.make_loss_fn` (hidden-state KD
through a learned projection + MLM CE) against all-MiniLM-L6-v2. Two modes, timed side by side
in one run (median of ≥5 steps after warm-up, compilation excluded):
  cached     — teacher outputs read from the float16 memory-mapped cache (what a search does);
  recomputed — the teacher's forward pass runs before every step.
Achieved FLOP/s of the student step = 3 × forward matmul FLOPs (`arch.flops`, + MLM head at the
masked positions + the hidden-KD projections) / step time, against the same process's measured
float32 matmul peak. The AdamW update of the 31M-entry word-embedding table is memory-bound work
that no FLOP count includes.
"""

from __future__ import annotations

import tempfile
import types
from typing import Sequence

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks import common
from benchmarks.common import machine_info, matmul_peak, time_fn, write_result
from bort_jax import distill, hf, plan, train
from bort_jax.arch import Arch, flops


def run(args: types.SimpleNamespace) -> dict:
    teacher_dir = args.teacher_dir or hf.minilm_path()
    teacher = distill.Teacher.load(teacher_dir)
    arch = Arch.parse(args.arch)
    with tempfile.TemporaryDirectory() as cache_dir:
        data = distill.prepare(
            teacher,
            teacher_dir,
            "embedded",
            args.seq_len,
            max_sequences=args.batch * 4,
            heldout_fraction=0.2,
            seed=0,
            want_logits=False,
            cache_dir=cache_dir,
        )
        student = distill.build_student(
            arch, data, teacher.checkpoint.spec, distill.KDWeights(), seed=0
        )
        spec = student.spec
        tx = train.make_optimizer(train.OptimConfig(learning_rate=1e-4), 1000)
        step = train.make_train_step(student.loss_fn, tx)
        batch = distill.train_batches(data, args.batch, 0)(0)
        state = {"s": train.init_state(student.params, tx, 0)}

        def cached_step(b):
            state["s"], m = step(state["s"], b)
            return m["loss"]

        tmodel = teacher.model
        teacher_fwd = jax.jit(
            lambda p, b: jnp.stack(
                tmodel.apply(
                    {"params": p},
                    b["input_ids"],
                    b["attention_mask"],
                    b["token_type_ids"],
                    output_hidden_states=True,
                )["hidden_states"],
                1,
            ).astype(jnp.float16)
        )

        def recomputed_step(b):
            b = dict(b, teacher_hidden=teacher_fwd(teacher.checkpoint.params, b))
            return cached_step(b)

        peak = matmul_peak(jnp.float32, n=args.peak_n, repeats=args.repeats)
        timings = {
            name: time_fn(fn, batch, repeats=args.repeats, warmup=2)
            for name, fn in (("cached", cached_step), ("recomputed", recomputed_step))
        }
    positions = batch["mlm_positions"].shape[1]
    sflops = plan.step_flops(
        arch, spec, args.batch, args.seq_len, positions, teacher_hidden=data.teacher_hidden
    )
    tflops = flops(teacher.checkpoint.arch, args.seq_len, args.batch, spec)
    rows = []
    for name, t in timings.items():
        sec = t["median_s"]
        total = sflops + (tflops if name == "recomputed" else 0)
        rows.append(
            {
                "mode": name,
                "step_s": sec,
                "tokens_per_s": args.batch * args.seq_len / sec,
                "gflops": total / sec / 1e9,
                "pct_peak": 100 * total / sec / 1e9 / peak["gflops"],
                "others_busy": t["others_busy"],
            }
        )
    return {
        "arch": str(arch),
        "teacher": args.teacher_dir or "all-MiniLM-L6-v2 (installed package)",
        "batch": args.batch,
        "seq_len": args.seq_len,
        "student_step_gflop": sflops / 1e9,
        "teacher_forward_gflop": tflops / 1e9,
        "peak_fp32": peak,
        "rows": rows,
        "cache_speedup": timings["recomputed"]["median_s"] / timings["cached"]["median_s"],
        "machine": machine_info(),
        "command": common.command_line("benchmarks.train_throughput"),
    }


def markdown(res: dict) -> str:
    lines = [
        f"Student {res['arch']} (batch {res['batch']} × {res['seq_len']}), teacher "
        f"all-MiniLM-L6-v2; fp32 matmul peak {res['peak_fp32']['gflops']:.1f} GFLOP/s",
        "",
        "| teacher outputs | step (s) | tokens/s | GFLOP/s | % of matmul peak |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['mode']} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | "
            f"{r['gflops']:.1f} | {r['pct_peak']:.0f}% |"
        )
    lines.append(f"\nCache saves {res['cache_speedup']:.2f}× per step (recomputed / cached).")
    return "\n".join(lines)


_FLAGS = (
    flags.DEFINE_string("arch", "4,8,1024,768", "student D,A,H,I"),
    flags.DEFINE_string("teacher_dir", "", "HF teacher directory; '' = installed all-MiniLM-L6-v2"),
    flags.DEFINE_integer("batch", 8, "sequences per step"),
    flags.DEFINE_integer("seq_len", 128, "tokens per sequence"),
    flags.DEFINE_integer("repeats", 5, "timed steps (median)"),
    flags.DEFINE_integer("peak_n", 2048, "side of the peak matmul"),
    flags.DEFINE_string("out", "", "JSON path; the Markdown goes next to it (.md)"),
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = common.flag_values(_FLAGS)
    res = run(args)
    write_result(res, markdown(res), args.out)  # JSON + the Markdown beside it


if __name__ == "__main__":
    app.run(main)
