"""XLA:CPU and bfloat16: can a flag route bf16 dots to a native bf16 kernel, and is it faster?

  python -m benchmarks.cpu_bf16 --out=benchmarks/results/cpu_bf16_cpu.json
  python -m benchmarks.cpu_bf16 --configs=default,ynn_dot --forward=         # matmuls only

By default XLA:CPU (jax 0.10.x) *upcasts* a bf16 dot: the optimized HLO converts both
operands to f32, runs an f32 dot (a YNNPACK `__ynn_fusion` of the dot alone) and converts the
result back, so bf16 costs the f32 matmul plus three conversion passes and is never faster
than f32. This script compares, side by side in one run, the flag sets in `CONFIGS` that could
route bf16 dots elsewhere (YNNPACK dot fusions that take bf16 operands, oneDNN, XNNPACK).

`XLA_FLAGS` is read once when jax starts, so every configuration runs in its own subprocess
(`--worker`). Each worker reports:
  route   — how its optimized HLO runs a bf16 [512,1024]@[1024,1024] dot: which kernel
            (`__ynn_fusion`, `__onednn…`, `__xnn_fusion`, plain XLA `dot`) and whether the
            dot's operands inside it are bf16 or were upcast to f32 outside it;
  matmuls — median seconds (`common.time_fn`, compile excluded) of f32 and bf16 jitted
            matmuls of `--matmuls` shapes MxKxN (default 1024×4096 @ 4096×4096 and the three
            BERT-large layer products at B8×L128: QKV/output 1024³, FFN-in 1024×1024×4096,
            FFN-out 1024×4096×1024), and each result's relative error (Frobenius) against
            a NumPy f32 reference computed from the same bf16-rounded operands (first 64 rows);
  forward — median seconds of a `--forward` model (default BERT-large at B1×L128, random
            weights, `bort_jax.latency.compiled_forward`'s model) in f32 and in bf16
            (`dtype = param_dtype = bfloat16`, the f32 weights cast), and the bf16 output's
            relative error against the f32 output.

The workers run one after another (`--rounds` sweeps, the configuration order reversed on
every other sweep so that a slow stretch of the shared machine does not always hit the same
one); per configuration the figure reported is the median over rounds of each worker's median.
A configuration that crashes is reported with its error instead of failing the run.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Sequence

from absl import app, flags

_REPO = Path(__file__).resolve().parents[1]  # the workers run `python -m` from here

YNN = "--xla_cpu_experimental_ynn_fusion_type"
# name -> XLA_FLAGS. Flag names found in jaxlib 0.10.2's libjax_common.so (`strings`);
# fusion-type values are the LIBRARY_FUSION_TYPE_* enum names in the same binary.
CONFIGS: dict[str, str] = {
    "default": "",
    "ynn_dot": f"{YNN}=LIBRARY_FUSION_TYPE_DOT",
    "ynn_dot_eltwise": f"{YNN}=LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_ELTWISE",
    "no_ynn": f"{YNN}=",
    "onednn": f"--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true {YNN}=",
    "onednn_fusion_dot": "--xla_cpu_experimental_onednn_fusion_type=LIBRARY_FUSION_TYPE_DOT "
    f"{YNN}=",
    "xnn_dot": "--xla_cpu_use_xnnpack=true "
    f"--xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_DOT {YNN}=",
}
DEFAULT_MATMULS = "1024x4096x4096,1024x1024x1024,1024x1024x4096,1024x4096x1024"
REF_ROWS = 64


def parse_matmuls(text: str) -> list[tuple[int, int, int]]:
    """'MxKxN,...' -> [(M, K, N), ...]; an error names the bad entry."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError(f"--matmuls entry {item!r}: want MxKxN with positive integers")
        out.append(tuple(int(p) for p in parts))
    return out


# ----------------------------------------------------------------------------------- worker


def dot_route(hlo: str) -> str:
    """How an optimized HLO module runs its (single) dot: kernel kind + operand dtype.

    'ynn_fusion(bf16)' = the library fusion receives bf16 operands (any f32 conversion happens
    inside the kernel); 'ynn_fusion(f32, upcast)' = XLA converted the operands to f32 first.
    """
    entry = hlo[hlo.index("\nENTRY") :]
    kinds = re.findall(r'"kind":"(__[a-z_]+)"', entry) + re.findall(
        r"custom_call_target=\"([^\"]+)\"", entry
    )
    upcast = re.search(r"= f32\[[0-9,]+\]\{[0-9,]+\} fusion\(%a", entry) is not None
    if not kinds:
        kernel = "xla_dot" if " dot(" in entry else "unknown"
    else:
        kernel = "+".join(sorted({k.strip("_") for k in kinds}))
    return f"{kernel}({'f32, upcast' if upcast else 'bf16'})"


def worker(args: types.SimpleNamespace) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks import common
    from bort_jax import arch as arch_lib
    from bort_jax.models.bert import Bert, init_params

    a = jnp.ones((512, 1024), jnp.bfloat16)
    b = jnp.ones((1024, 1024), jnp.bfloat16)
    route = dot_route(jax.jit(jnp.matmul).lower(a, b).compile().as_text())

    matmuls = []
    for m, k, n in parse_matmuls(args.matmuls):
        keys = jax.random.split(jax.random.PRNGKey(0), 2)
        x16 = jax.random.normal(keys[0], (m, k), jnp.float32).astype(jnp.bfloat16)
        w16 = jax.random.normal(keys[1], (k, n), jnp.float32).astype(jnp.bfloat16)
        ref = np.asarray(x16[:REF_ROWS], np.float32) @ np.asarray(w16, np.float32)
        row = {"shape": f"{m}x{k}x{n}", "gflop": 2 * m * k * n / 1e9}
        for name, x, w in (
            ("float32", x16.astype(jnp.float32), w16.astype(jnp.float32)),
            ("bfloat16", x16, w16),
        ):
            compiled, _ = common.compile_fn(jnp.matmul, x, w)
            out = np.asarray(compiled(x, w)[:REF_ROWS], np.float32)
            t = common.time_fn(compiled, x, w, repeats=args.repeats, warmup=1)
            row[name] = {
                "median_s": t["median_s"],
                "min_s": t["min_s"],
                "gflops": row["gflop"] / t["median_s"],
                "rel_err": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
                "others_busy": t["others_busy"],
            }
        row["bf16_speedup"] = row["float32"]["median_s"] / row["bfloat16"]["median_s"]
        matmuls.append(row)

    forward = None
    if args.forward:
        name, shape = args.forward.split("@")
        batch, length = (int(v) for v in shape.lower().split("x"))
        arch, spec = {
            "bert-large": (arch_lib.BERT_LARGE, arch_lib.BERT_SPEC),
            "bert-base": (arch_lib.BERT_BASE, arch_lib.BERT_SPEC),
            "bort": (arch_lib.BORT, arch_lib.BORT_SPEC),
        }[name]
        params = jax.jit(lambda r: init_params(Bert(arch, spec), r))(jax.random.PRNGKey(0))
        ids = jnp.asarray(
            np.random.default_rng(0).integers(0, spec.vocab_size, (batch, length)), jnp.int32
        )
        mask = jnp.ones_like(ids)
        forward = {"model": name, "arch": str(arch), "batch": batch, "seq_len": length}
        outs = {}
        for dname, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
            model = Bert(arch, spec, dtype=dtype, param_dtype=dtype)
            p = jax.tree_util.tree_map(lambda v, dt=dtype: v.astype(dt), params)
            fwd = lambda p, x, m, model=model: model.apply({"params": p}, x, m)["last_hidden_state"]
            compiled, compile_s = common.compile_fn(fwd, p, ids, mask)
            outs[dname] = np.asarray(compiled(p, ids, mask), np.float32)
            t = common.time_fn(compiled, p, ids, mask, repeats=args.repeats, warmup=1)
            forward[dname] = {
                "median_s": t["median_s"],
                "min_s": t["min_s"],
                "compile_s": compile_s,
                "others_busy": t["others_busy"],
            }
        ref = outs["float32"]
        err = np.linalg.norm(outs["bfloat16"] - ref) / np.linalg.norm(ref)
        forward["bf16_rel_err"] = float(err)
        forward["bf16_speedup"] = forward["float32"]["median_s"] / forward["bfloat16"]["median_s"]
    return {
        "route": route,
        "matmuls": matmuls,
        "forward": forward,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": common.load_average(),
    }


# ----------------------------------------------------------------------------------- driver


def run_config(name: str, args: types.SimpleNamespace) -> dict[str, Any]:
    """One worker subprocess with `CONFIGS[name]` as XLA_FLAGS; its JSON, or its error."""
    env = dict(os.environ, XLA_FLAGS=CONFIGS[name])
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.cpu_bf16",
        "--worker",
        f"--matmuls={args.matmuls}",
        f"--forward={args.forward}",
        f"--repeats={args.repeats}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=env,
        cwd=_REPO,
        capture_output=True,
        text=True,
        timeout=args.timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"config": name, "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(config=name, wall_s=time.perf_counter() - t0)
    return res


def _med(values: list[float]) -> float:
    return statistics.median(values)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of each worker's medians, for one configuration."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"config": runs[0]["config"], "error": runs[0]["error"]}
    first = ok[0]
    out = {"config": first["config"], "xla_flags": first["xla_flags"], "route": first["route"]}
    out["matmuls"] = []
    for i, mm in enumerate(first["matmuls"]):
        row = {"shape": mm["shape"], "gflop": mm["gflop"]}
        for d in ("float32", "bfloat16"):
            vals = [r["matmuls"][i][d] for r in ok]
            sec = _med([v["median_s"] for v in vals])
            row[d] = {
                "median_s": sec,
                "gflops": mm["gflop"] / sec,
                "rel_err": max(v["rel_err"] for v in vals),
                "others_busy": max((v["others_busy"] or 0.0) for v in vals),
            }
        row["bf16_speedup"] = row["float32"]["median_s"] / row["bfloat16"]["median_s"]
        out["matmuls"].append(row)
    if first["forward"]:
        fw = {k: first["forward"][k] for k in ("model", "arch", "batch", "seq_len")}
        for d in ("float32", "bfloat16"):
            vals = [r["forward"][d] for r in ok]
            fw[d] = {
                "median_s": _med([v["median_s"] for v in vals]),
                "others_busy": max((v["others_busy"] or 0.0) for v in vals),
            }
        fw["bf16_rel_err"] = max(r["forward"]["bf16_rel_err"] for r in ok)
        fw["bf16_speedup"] = fw["float32"]["median_s"] / fw["bfloat16"]["median_s"]
        out["forward"] = fw
    out["rounds"] = len(ok)
    return out


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"CPU: {m['cpu_model']}, {m['cpus_usable']} usable cores, flags {m['cpu_flags']}; "
        f"jax {m['jax']}. Load average {res['load_before']} before, {res['load_after']} after.",
        "",
        "| config | bf16 dot route | matmul M×K×N | f32 ms | bf16 ms | bf16 speed-up "
        "| f32 rel.err | bf16 rel.err | others |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in res["configs"]:
        if "error" in c:
            lines.append(f"| {c['config']} | **failed**: {c['error'][:120]} | | | | | | | |")
            continue
        for mm in c["matmuls"]:
            f, b = mm["float32"], mm["bfloat16"]
            busy = max(f["others_busy"], b["others_busy"])
            lines.append(
                f"| {c['config']} | {c['route']} | {mm['shape']} | {1e3 * f['median_s']:.1f} | "
                f"{1e3 * b['median_s']:.1f} | {mm['bf16_speedup']:.2f}× | {f['rel_err']:.1e} | "
                f"{b['rel_err']:.1e} | {100 * busy:.0f}% |"
            )
    fw_rows = [c for c in res["configs"] if c.get("forward")]
    if fw_rows:
        fw0 = fw_rows[0]["forward"]
        lines += [
            "",
            f"Forward {fw0['model']} ({fw0['arch']}) B{fw0['batch']}×L{fw0['seq_len']}:",
            "",
            "| config | f32 ms | bf16 ms | bf16 speed-up | bf16 rel.err vs f32 | others |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for c in fw_rows:
            fw = c["forward"]
            busy = max(fw["float32"]["others_busy"], fw["bfloat16"]["others_busy"])
            lines.append(
                f"| {c['config']} | {1e3 * fw['float32']['median_s']:.1f} | "
                f"{1e3 * fw['bfloat16']['median_s']:.1f} | {fw['bf16_speedup']:.2f}× | "
                f"{fw['bf16_rel_err']:.1e} | {100 * busy:.0f}% |"
            )
    lines += ["", "Flags per config:", ""]
    lines += [f"- `{c['config']}`: `{CONFIGS[c['config']] or '(none)'}`" for c in res["configs"]]
    return "\n".join(lines)


_FLAGS = (
    flags.DEFINE_string("configs", ",".join(CONFIGS), f"subset of {list(CONFIGS)}"),
    flags.DEFINE_string("matmuls", DEFAULT_MATMULS, "MxKxN,..."),
    flags.DEFINE_string(
        "forward", "bert-large@1x128", "model@BxL (bert-large|bert-base|bort); '' = none"
    ),
    flags.DEFINE_integer("repeats", 5, "timed calls per worker (>= 5)"),
    flags.DEFINE_integer("rounds", 1, "sweeps over the configurations"),
    flags.DEFINE_float("timeout_s", 600.0, "per worker"),
    flags.DEFINE_string("out", "", "JSON path; the Markdown goes next to it (.md)"),
    flags.DEFINE_boolean("worker", False, "internal: run one configuration, print its JSON"),
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from benchmarks import common

    args = common.flag_values(_FLAGS)
    parse_matmuls(args.matmuls)  # fail on bad input before any work
    if args.forward and not re.fullmatch(r"(bert-large|bert-base|bort)@\d+x\d+", args.forward):
        raise ValueError(f"--forward={args.forward!r}: want model@BxL, e.g. bert-large@1x128")
    if args.repeats < 5:
        raise ValueError(f"--repeats={args.repeats}: need at least 5 timed calls")
    if args.worker:
        print(json.dumps(worker(args)))
        return
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise ValueError(f"--configs: unknown {unknown}; choose from {list(CONFIGS)}")
    if args.rounds < 1:
        raise ValueError(f"--rounds={args.rounds}: need at least 1")

    load_before = common.load_average()
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            res = run_config(name, args)
            runs[name].append(res)
            status = res.get("error") or f"{res['wall_s']:.0f} s, route {res['route']}"
            print(f"# round {r + 1} {name}: {status}", file=sys.stderr, flush=True)
    res = {
        "configs": [combine(runs[n]) for n in names],
        "raw": runs,
        "load_before": load_before,
        "load_after": common.load_average(),
        "machine": common.machine_info(),
        "command": common.command_line("benchmarks.cpu_bf16"),
        "note": "shared 2-core machine: other workers' jobs may run meanwhile ('others')",
    }
    common.write_result(res, markdown(res), args.out)


if __name__ == "__main__":
    app.run(main)
