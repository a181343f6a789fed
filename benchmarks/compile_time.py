"""Compile time of the KD train step against depth, unrolled vs scanned layers, and the share of
a search's wall time that goes to compiling.

  python -m benchmarks.compile_time --out=benchmarks/results/compile_cpu.json
  python -m benchmarks.compile_time --depths=2,4 --repeats=1 --search=   # quick check

Part 1 (compile table). The program compiled is the real proxy-training step: the jitted
`train.make_train_step` (value_and_grad + global-norm + AdamW update, state donated) of
`distill.make_loss_fn` (MLM CE at the masked positions + hidden-state KD of all D+1 student
hidden states through learned [H, H_t] projections) of the student `Bert` that
`distill.build_student` builds (teacher's vocabulary, MLM head, no pooler, dropout 0 as in
`proxy.ProxyConfig`), at a fixed width (default H=256, A=4, I=1024, batch 8 × 128 tokens, 20
masked positions, a MiniLM-shaped teacher: 30,522-token vocabulary, D_t=6, H_t=384). For each
depth and layout (`Bert(scan_layers=False)`: layers unrolled; `True`: `nn.scan`), `--repeats`
times: `jax.clear_caches()`, a fresh `make_train_step`, then `.lower()` on abstract inputs
(trace + lowering to StableHLO) and `.compile()` (XLA), each timed; the median of the sums
is reported. The persistent compilation cache is off. `--step_repeats > 0` also times the
compiled step (median, compile excluded) on zero-filled state, so that a faster compile is not
bought with a slower step.

Part 2 (search share, `--search=unrolled,scanned`). Runs the embedded default extraction's
smoke config (`configs/default.py`, `get_config("smoke")`, `extract.extract`, fresh temporary
workdir, compilation cache off; `proxy.model.scan_layers` set per mode) with `jax.monitoring`
listeners on JAX's three compile events (jaxpr trace, lowering to MLIR, XLA backend compile).
Their time spans are merged (nested traces counted once); "compile" below = time inside any
of them. Each `proxy.proxy_error` call (one candidate) is timed, and its compile seconds are
the merged spans inside its window; run = wall − compile.

Timings on a shared machine: each phase records `others`, the share of the machine's CPU time
that other processes took meanwhile (`common.BusyMeter`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import tempfile
import time
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
from absl import app, flags

from benchmarks import common
from benchmarks.common import BusyMeter, machine_info, time_fn, wait_for_quiet, write_result
from bort_jax import distill, proxy, train
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, stack_layers

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
MODES = {
    "unrolled": dict(scan_layers=False),
    "scanned": dict(scan_layers=True),
    "scanned_remat": dict(scan_layers=True, remat=True),
}


# ------------------------------------------------------------------------- part 1: the table


@dataclasses.dataclass(frozen=True)
class Problem:
    """Fixed width and batch of the compile table; the teacher is MiniLM-shaped."""

    heads: int = 4
    hidden: int = 256
    intermediate: int = 1024
    batch: int = 8
    seq_len: int = 128
    positions: int = 20
    vocab: int = 30522
    teacher_depth: int = 6
    teacher_hidden: int = 384


def kd_step(arch: Arch, prob: Problem, mode: str) -> tuple[Any, Any, Any]:
    """(jitted train step, abstract state, abstract batch) of the KD student `arch`.

    Mirrors `distill.build_student` + `train.train` without materialising the model: the
    parameters are `jax.eval_shape` of `distill.init_student` (stacked for scanned modes), the
    batch the shapes of `common.synthetic_kd`'s (a MiniLM-shaped teacher of `prob`'s depth,
    width and vocabulary).
    """
    layout = MODES[mode]
    spec = distill.student_spec(Spec(vocab_size=prob.vocab, max_positions=512))
    model = Bert(arch, spec, mlm_head=True, dropout_rate=0.0, attention_dropout_rate=0.0, **layout)
    teacher = dataclasses.replace(
        common.MINILM, depth=prob.teacher_depth, hidden=prob.teacher_hidden
    )
    data, batch = common.synthetic_kd(
        prob.batch, prob.seq_len, prob.positions, teacher, vocab=prob.vocab
    )
    loss_fn = distill.make_loss_fn(model, data, distill.KDWeights())
    tx = train.make_optimizer(proxy.ProxyConfig().optim, 100)

    def init_state():
        params = distill.init_student(arch, spec, prob.teacher_hidden, seed=0)
        if layout["scan_layers"]:
            params = {**params, "student": stack_layers(params["student"], arch.depth)}
        return train.init_state(params, tx, 0)

    state = jax.eval_shape(init_state)
    batch = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), batch)
    return train.make_train_step(loss_fn, tx), state, batch


def compile_once(arch: Arch, prob: Problem, mode: str) -> tuple[dict[str, float], Any]:
    """One cold compile: {'lower_s', 'compile_s', 'total_s'} and the compiled step."""
    jax.clear_caches()
    step, state, batch = kd_step(arch, prob, mode)
    t0 = time.perf_counter()
    lowered = step.lower(state, batch)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return {"lower_s": t1 - t0, "compile_s": t2 - t1, "total_s": t2 - t0}, compiled


def step_seconds(
    compiled: Any, arch: Arch, prob: Problem, mode: str, repeats: int
) -> dict[str, Any]:
    """Median seconds of the compiled step on zero-filled state (values do not change speed)."""
    _, state, batch = kd_step(arch, prob, mode)
    zeros = lambda s: jnp.zeros(s.shape, s.dtype)  # noqa: E731
    holder = {"state": jax.tree_util.tree_map(zeros, state)}
    batch = jax.tree_util.tree_map(zeros, batch)

    def run(b):
        holder["state"], metrics = compiled(holder["state"], b)  # the state is donated
        return metrics["loss"]

    t = time_fn(run, batch, repeats=repeats, warmup=1)
    return {"median_s": t["median_s"], "min_s": t["min_s"], "others_busy": t["others_busy"]}


def compile_table(
    depths: list[int],
    modes: list[str],
    prob: Problem,
    repeats: int,
    step_repeats: int,
    quiet_wait_s: float = 0.0,
) -> list[dict[str, Any]]:
    rows = []
    for depth in depths:
        arch = Arch(depth, prob.heads, prob.hidden, prob.intermediate)
        for mode in modes:
            if quiet_wait_s:
                wait_for_quiet(max_wait_s=quiet_wait_s)
            meter = BusyMeter()
            tries, compiled = [], None
            for _ in range(repeats):
                timing, compiled = compile_once(arch, prob, mode)
                tries.append(timing)
            others = meter.stop()[1]
            row = {
                "depth": depth,
                "mode": mode,
                "arch": str(arch),
                "tries": tries,
                "others_busy": others,
            }
            for key in ("lower_s", "compile_s", "total_s"):
                row[key] = statistics.median(t[key] for t in tries)
            if step_repeats:
                row["step"] = step_seconds(compiled, arch, prob, mode, step_repeats)
            rows.append(row)
            print(
                f"  D={depth:>2} {mode:<13} lower {row['lower_s']:6.2f} s  compile "
                f"{row['compile_s']:6.2f} s  total {row['total_s']:6.2f} s"
                + (f"  step {row['step']['median_s'] * 1e3:7.1f} ms" if step_repeats else "")
                + f"  others {others or 0:.0%}",
                flush=True,
            )
    return rows


# ------------------------------------------------------------------- part 2: search share


class CompileSpans:
    """Collects the time spans of JAX's compile events (trace, lowering, XLA compile)."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.backend: list[tuple[float, float, str]] = []  # XLA compiles: (start, end, name)

    def __call__(self, event: str, start: float, end: float, **kwargs: Any) -> None:
        if event in COMPILE_EVENTS:
            self.spans.append((start, end))
        if event == COMPILE_EVENTS[-1]:
            self.backend.append((start, end, str(kwargs.get("fun_name", "?"))))

    def backend_by_function(self, lo: float, hi: float, top: int = 6) -> dict[str, Any]:
        """XLA compiles that started in [lo, hi]: count, and seconds by jitted function name
        (the `top` largest; eager ops compile as one small program per primitive and shape)."""
        by: dict[str, float] = {}
        inside = [(a, b, n) for a, b, n in self.backend if lo <= a <= hi]
        for a, b, n in inside:
            by[n] = by.get(n, 0.0) + b - a
        ranked = sorted(by.items(), key=lambda kv: -kv[1])
        return {
            "programs": len(inside),
            "seconds": sum(b - a for a, b, _ in inside),
            "top": {n: round(t, 3) for n, t in ranked[:top]},
        }

    @contextlib.contextmanager
    def listening(self) -> Iterator[CompileSpans]:
        jax.monitoring.register_event_time_span_listener(self)
        try:
            yield self
        finally:
            jax.monitoring.unregister_event_time_span_listener(self)

    def seconds(self, lo: float = float("-inf"), hi: float = float("inf")) -> float:
        """Length of the union of the spans, clipped to [lo, hi] (wall-clock `time.time()`)."""
        total, cur_lo, cur_hi = 0.0, None, None
        for a, b in sorted((max(a, lo), min(b, hi)) for a, b in self.spans):
            if b <= a:
                continue
            if cur_hi is None or a > cur_hi:
                total += 0.0 if cur_hi is None else cur_hi - cur_lo
                cur_lo, cur_hi = a, b
            else:
                cur_hi = max(cur_hi, b)
        return total + (0.0 if cur_hi is None else cur_hi - cur_lo)


def search_share(mode: str) -> dict[str, Any]:
    """Smoke extraction with compile spans recorded; per-candidate wall/compile/run seconds."""
    from bort_jax import extract
    from configs import default as default_config

    config = default_config.get_config("smoke")
    config.compilation_cache = ""
    config.proxy.model.scan_layers = MODES[mode]["scan_layers"]
    spans, candidates = CompileSpans(), []
    real = proxy.proxy_error

    def timed_proxy_error(arch, *args, **kwargs):
        lo = time.time()
        result = real(arch, *args, **kwargs)
        hi = time.time()
        candidates.append(
            {
                "arch": str(arch),
                "wall_s": hi - lo,
                "compile_s": spans.seconds(lo, hi),
                "error": result.error,
                "xla_compiles": spans.backend_by_function(lo, hi),
            }
        )
        return result

    jax.clear_caches()
    proxy.proxy_error = timed_proxy_error  # extract calls proxy.proxy_error (module attribute)
    meter = BusyMeter()
    try:
        with tempfile.TemporaryDirectory() as workdir, spans.listening():
            lo = time.time()
            summary = extract.extract(config, workdir)
            hi = time.time()
    finally:
        proxy.proxy_error = real
    others = meter.stop()[1]
    for c in candidates:
        c["run_s"] = c["wall_s"] - c["compile_s"]
    cand_wall = sum(c["wall_s"] for c in candidates)
    cand_compile = sum(c["compile_s"] for c in candidates)
    total_compile = spans.seconds(lo, hi)
    return {
        "mode": mode,
        "wall_s": hi - lo,
        "compile_s": total_compile,
        "xla_compiles": spans.backend_by_function(lo, hi),
        "compile_share": total_compile / (hi - lo),
        "candidates_wall_s": cand_wall,
        "candidates_compile_s": cand_compile,
        "candidates_compile_share": cand_compile / cand_wall if cand_wall else None,
        "candidates": candidates,
        "others_busy": others,
        "chosen": summary.get("chosen"),
        "config": "configs/default.py:smoke (compilation_cache=False, "
        f"proxy.model.scan_layers={MODES[mode]['scan_layers']})",
    }


# ------------------------------------------------------------------------------- output


def markdown(res: dict[str, Any]) -> str:
    prob = res["problem"]
    lines = [
        f"KD train step, ⟨D, A{prob['heads']}, H{prob['hidden']}, I{prob['intermediate']}⟩,"
        f" batch {prob['batch']} × {prob['seq_len']}, {prob['positions']} masked positions,"
        f" vocab {prob['vocab']}, teacher D{prob['teacher_depth']}/H{prob['teacher_hidden']}"
        f"; median of {res['repeats']} cold compiles (seconds)",
        "",
    ]
    modes = res["modes"]
    rows = {(r["depth"], r["mode"]): r for r in res["table"]}
    with_step = any("step" in r for r in res["table"])
    head = ["D"] + [f"{m} lower + compile" for m in modes]
    if "unrolled" in modes and "scanned" in modes:
        head.append("unrolled / scanned")
    if with_step:
        head += [f"{m} step ms" for m in modes]
    head.append("others")
    lines += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for depth in res["depths"]:
        cells = [str(depth)]
        for m in modes:
            r = rows[(depth, m)]
            cells.append(f"{r['lower_s']:.2f} + {r['compile_s']:.2f} = **{r['total_s']:.2f}**")
        if "unrolled" in modes and "scanned" in modes:
            ratio = rows[(depth, "unrolled")]["total_s"] / rows[(depth, "scanned")]["total_s"]
            cells.append(f"{ratio:.2f}×")
        if with_step:
            cells += [f"{rows[(depth, m)]['step']['median_s'] * 1e3:.0f}" for m in modes]
        others = [rows[(depth, m)]["others_busy"] for m in modes]
        cells.append(f"{max(o or 0 for o in others):.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    for s in res["search"]:
        lines += [
            "",
            f"Search share ({s['config']}): wall {s['wall_s']:.1f} s, compile "
            f"{s['compile_s']:.1f} s = **{s['compile_share']:.0%}**; inside the "
            f"{len(s['candidates'])} proxy trainings {s['candidates_compile_s']:.1f} of "
            f"{s['candidates_wall_s']:.1f} s = **{s['candidates_compile_share']:.0%}** "
            f"(others {s['others_busy'] or 0:.0%})",
            "",
            "| candidate | wall s | compile s | run s | compile share |",
            "|---|---:|---:|---:|---:|",
        ]
        for c in s["candidates"]:
            lines.append(
                f"| {c['arch']} | {c['wall_s']:.2f} | {c['compile_s']:.2f} | "
                f"{c['run_s']:.2f} | {c['compile_s'] / c['wall_s']:.0%} |"
            )
    return "\n".join(lines)


_FLAGS = (
    flags.DEFINE_string("depths", "2,4,8,12,16,24", "student depths, comma-separated"),
    flags.DEFINE_string("modes", "unrolled,scanned", f"comma-separated, of {', '.join(MODES)}"),
    flags.DEFINE_integer("heads", 4, "student heads"),
    flags.DEFINE_integer("hidden", 256, "student width"),
    flags.DEFINE_integer("intermediate", 1024, "student feed-forward width"),
    flags.DEFINE_integer("batch", 8, "sequences per step"),
    flags.DEFINE_integer("seq_len", 128, "tokens per sequence"),
    flags.DEFINE_integer("repeats", 3, "cold compiles per cell (median)"),
    flags.DEFINE_integer("step_repeats", 0, "also time the compiled step (>= 5 runs; 0 = off)"),
    flags.DEFINE_string(
        "search", "unrolled,scanned", "modes of the smoke-extraction compile share ('' = skip)"
    ),
    flags.DEFINE_float(
        "quiet_wait_s", 0.0, "before each cell and search, wait up to this long for an idle machine"
    ),
    flags.DEFINE_string("out", "", "JSON path; the Markdown goes next to it (.md)"),
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = common.flag_values(_FLAGS)
    jax.config.update("jax_enable_compilation_cache", False)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes + [m for m in args.search.split(",") if m] if m not in MODES]
    if unknown:
        raise app.UsageError(f"unknown mode(s) {unknown}; use {', '.join(MODES)}")
    depths = [int(d) for d in args.depths.split(",") if d]
    prob = Problem(
        heads=args.heads,
        hidden=args.hidden,
        intermediate=args.intermediate,
        batch=args.batch,
        seq_len=args.seq_len,
        positions=-(-3 * args.seq_len // 20),
    )  # ceil(0.15 L), as data/mlm.py
    t0 = time.perf_counter()
    print("compile table:", flush=True)
    table = compile_table(depths, modes, prob, args.repeats, args.step_repeats, args.quiet_wait_s)
    search = []
    for mode in [m for m in args.search.split(",") if m]:
        print(f"smoke extraction ({mode}):", flush=True)
        if args.quiet_wait_s:
            wait_for_quiet(max_wait_s=args.quiet_wait_s)
        search.append(search_share(mode))
        print(
            f"  wall {search[-1]['wall_s']:.1f} s, compile {search[-1]['compile_s']:.1f} s "
            f"({search[-1]['compile_share']:.0%})",
            flush=True,
        )
    res = {
        "problem": dataclasses.asdict(prob),
        "depths": depths,
        "modes": modes,
        "repeats": args.repeats,
        "table": table,
        "search": search,
        "seconds": time.perf_counter() - t0,
        "machine": machine_info(),
        "command": common.command_line("benchmarks.compile_time"),
    }
    write_result(res, markdown(res), args.out)  # JSON + the Markdown beside it


if __name__ == "__main__":
    app.run(main)
