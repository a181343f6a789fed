"""Cost plan of an extraction before any expensive step: bytes, memory, seconds.

`plan(config, workdir)` works from shapes alone (no checkpoint weights, no teacher pass, no
corpus): the teacher's `Arch`/`Spec` come from `<teacher_dir>/config.json` when it exists (the
installed MiniLM for `teacher_dir=''` and `source_dir=''`), else from `teacher_family` (the
argument, or `config.teacher_family`), one of `FAMILIES`; the source's likewise (`source_family`,
else assumed as large as the teacher). N = `config.max_sequences` rows is an upper bound: the
corpus may pack into fewer.

Teacher cache on disk (`distill.prepare` → `teacher_cache`; exactly `distill.teacher_output_specs`
summed over the train and held-out splits, so N rows in all), P = ceil(0.15·L) MLM slots:

  hidden        N · S · L · H_t · 2   (float16; S = |stored_layers(depths)|, 0 when kd.hidden = 0)
  mlm_logits    N · P · V · 2         (float16; logit KD, kd.top_k = 0)
  topk_values   N · P · k · 2,  topk_ids N · P · k · 4,  rest_logmass N · P · 4   (kd.top_k = k)

plus one `.npy` header per array and meta.json (`HEADER_BYTES` each). The static-masked inputs
(input_ids, attention_mask, token_type_ids: N·L·4 bytes each; mlm_positions, mlm_ids,
mlm_weights: N·P·4 each) are held in host RAM, not on disk.

Peak host memory = inputs + teacher and source params (fp32; the source only when it is another
checkpoint) + one teacher-pass chunk of its outputs (`TEACHER_CHUNK` rows; the cache itself is
memory-mapped and not counted as RAM). Peak device memory = max(teacher pass, proxy step of the
candidate that needs most), fp32:

  teacher pass  = 4·params_t + 4·C·L·(4H + I + A·L) (one live layer) + stored outputs of C rows
                  in fp32 + C·P·V·4 (MLM logits); C = `TEACHER_CHUNK`
  proxy step    = 16·params_s (params, grads, 2 AdamW moments) + one batch + activations
  activations   = 4·B·L·[D·(10H + 2I + 2A·L) + 4H] + 4·B·P·V·(3 with full-logit KD, else 2)
                  (fp32, kept for the backward pass)

where 10H + 2I + 2A·L per token and layer counts the layer input, Q, K, V, attention output,
two LayerNorm inputs, the FFN input/output, the FFN activation before and after GELU, and the
attention scores and probabilities. On a CPU backend device memory is host memory, so
`check_fits` compares their sum with the host's.

Measured seconds per proxy step (`measure=True`): the smallest, median and largest candidates
by training FLOPs (3 × forward matmul FLOPs, MLM head at the P slots) each compile and run the
real proxy step (`train.make_train_step` on `distill.build_student`'s loss) on synthetic rows of
the right shapes (a step's cost does not depend on the values); the median of `repeats` timed
steps. A shape whose step exceeds `max_measure_flops` (`MEASURE_FLOPS`: 2·10¹⁰ on a CPU) runs
with the batch (then the sequence length) scaled down and is extrapolated by the FLOP ratio, and
the plan says so (an over-estimate when a small batch leaves the machine idle). Per-candidate
seconds/step is t(ξ) = c0 + c1·F(ξ), least squares on the measured points.
Projected search time (worst case: every candidate is evaluated, or `config.max_evaluations`):

  teacher pass (teacher forward FLOPs / the measured FLOP rate)
  + Σ_ξ steps · t(ξ)  + Σ_ξ held-out batches · t(ξ)/3  + |Ξ| · 2 · compile seconds.

The latency-model calibration (`latency_points` compilations) and the corpus tokenisation are
not included. The FPTAS usually evaluates far fewer candidates (docs/fptas.md §2.6): the worst
case is what a budget must allow.
"""

from __future__ import annotations

import json
import math
import statistics
import types
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from bort_jax import arch as A
from bort_jax import distill, hf, hub, precision
from bort_jax.data import mlm
from bort_jax.extract_config import ExtractConfig
from bort_jax.plan.costs import (
    HEADER_BYTES,
    MASK_PROB,
    TEACHER_CHUNK,
    activation_bytes,
    n_split,
    step_flops,
    student_params,
)
from bort_jax.plan.machine import (
    check_fits,
    device_memory,
    disk_free,
    host_memory,
    nearest_existing,
)
from bort_jax.plan.measure import (
    MEASURE_FLOPS,
    TeacherOutputs,
    fit_seconds_model,
    measure_shapes,
    synthetic_data,
    time_step,
)
from bort_jax.plan.report import GB, Plan, PlanError, StepTime, as_dict, gb
from bort_jax.search.space import build_space

__all__ = [
    "FAMILIES",
    "GB",
    "HEADER_BYTES",
    "MASK_PROB",
    "MEASURE_FLOPS",
    "TEACHER_CHUNK",
    "Plan",
    "PlanError",
    "StepTime",
    "TeacherOutputs",
    "activation_bytes",
    "as_dict",
    "check",
    "check_fits",
    "describe",
    "device_memory",
    "disk_free",
    "fit_note",
    "fit_seconds_model",
    "host_memory",
    "machine_limits",
    "measure_shapes",
    "model_shape",
    "n_split",
    "nearest_existing",
    "plan",
    "step_flops",
    "student_params",
    "synthetic_data",
    "time_step",
]

FAMILIES: dict[str, tuple[A.Arch, A.Spec]] = {
    "bert-base": (A.BERT_BASE, A.BERT_SPEC),
    "bert-large": (A.BERT_LARGE, A.BERT_SPEC),
    "roberta-base": (A.BERT_BASE, A.ROBERTA_SPEC),
    "roberta-large": (A.BERT_LARGE, A.ROBERTA_SPEC),
    "minilm-l6": (A.MINILM_L6, A.MINILM_SPEC),
}


def model_shape(
    directory: str, family: str | None, what: str, fallback: tuple[A.Arch, A.Spec] | None = None
) -> tuple[A.Arch, A.Spec, str]:
    """(Arch, Spec, description) from `<directory>/config.json`, else the named family.

    Raises PlanError naming the missing checkpoint and the family field when neither is given.
    """
    cfg = Path(hub.resolve(directory, files=hub.CONFIG_ONLY)) / "config.json" if directory else None
    if cfg is not None and cfg.is_file():
        arch, spec = hf.config_to_arch_spec(json.loads(cfg.read_text()), str(cfg))
        return arch, spec, directory
    if family:
        if family not in FAMILIES:
            raise PlanError(f"config.{what}_family={family!r}; known: {sorted(FAMILIES)}")
        return (*FAMILIES[family], f"{family} (family shapes)")
    if fallback is not None:
        return (*fallback, "assumed as large as the teacher")
    raise PlanError(
        f"no {what} checkpoint (config.json) at {directory!r}: set config.{what}_dir, or "
        f"config.{what}_family to one of {sorted(FAMILIES)}"
    )


def _row_bytes(specs: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, int]:
    return {k: math.prod(shape) * np.dtype(dt).itemsize for k, (shape, dt) in specs.items()}


def _cache_present(cache_dir: Path, specs: dict[str, tuple[tuple[int, ...], np.dtype]]) -> bool:
    """A complete entry (meta.json) whose arrays have exactly the planned shapes and dtypes."""
    want = {k: (list(s), str(np.dtype(d))) for k, (s, d) in specs.items()}
    for meta in sorted(cache_dir.glob("*/meta.json")):
        try:
            arrays = json.loads(meta.read_text())["arrays"]
            if {k: (v["shape"], v["dtype"]) for k, v in arrays.items()} == want:
                return True
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return False


def plan(
    config: Any,
    workdir: str,
    *,
    measure: bool = True,
    teacher_family: str | None = None,
    source_family: str | None = None,
    repeats: int = 3,
    max_measure_flops: float | None = None,
) -> Plan:
    """The cost plan of `extract.extract(config, workdir)` (module docstring: formulas).

    measure=False skips the timings (pure arithmetic, no JAX work). max_measure_flops: the
    largest training step run as is (None: `MEASURE_FLOPS` of this backend); bigger shapes are
    scaled down and extrapolated.
    """
    config = ExtractConfig.from_config(config)
    cands = build_space(config.grid).candidates()
    pcfg = config.proxy
    kd = pcfg.kd
    source_dir = config.source_dir or ("" if config.require_source else hf.minilm_path())
    teacher_dir = config.teacher_dir or source_dir
    source_family = source_family or config.source_family
    t_arch, t_spec, t_desc = model_shape(
        teacher_dir, teacher_family or config.teacher_family, "teacher"
    )
    s_arch, s_spec, _ = model_shape(source_dir, source_family, "source", fallback=(t_arch, t_spec))
    seq_len = int(config.max_seq_len)
    A.check_seq_len(seq_len, t_spec)
    if not config.max_sequences:
        raise PlanError(
            "config.max_sequences=0 (the whole corpus): the plan needs a row count; set it"
        )
    n = int(config.max_sequences)
    slots = mlm.default_max_predictions(seq_len, MASK_PROB)
    want_logits = kd.logit > 0
    layers = (
        distill.stored_layers(sorted({c.depth for c in cands}), t_arch.depth, kd.layer_map)
        if kd.hidden
        else ()
    )
    top_k = kd.top_k if want_logits else 0
    teacher = distill.Teacher(hf.Checkpoint(t_arch, t_spec, {}, {}, teacher_dir, True), None)

    def specs(rows: int) -> dict:
        shapes = {
            "input_ids": types.SimpleNamespace(shape=(rows, seq_len)),
            "mlm_positions": types.SimpleNamespace(shape=(rows, slots)),
        }
        return distill.teacher_output_specs(
            teacher, shapes, want_logits, layers=layers, top_k=top_k
        )

    n_train, n_held = n_split(n, float(config.heldout_fraction))
    split_specs = {
        f"{p}_{k}": v
        for p, r in (("train", n_train), ("heldout", n_held))
        for k, v in specs(r).items()
    }
    cache_bytes: dict[str, int] = {}
    for name, b in _row_bytes(split_specs).items():
        key = name.split("_", 1)[1]
        cache_bytes[key] = cache_bytes.get(key, 0) + b
    input_bytes = {k: n * seq_len * 4 for k in distill.INPUT_KEYS[:3]}
    input_bytes |= {k: n * slots * 4 for k in distill.INPUT_KEYS[3:]}

    cache_dir = Path(workdir) / "teacher_cache"
    present = _cache_present(cache_dir, split_specs)
    disk = 0 if present else sum(cache_bytes.values()) + HEADER_BYTES * (len(split_specs) + 1)
    disk += 4 * max(A.param_count(c, s_spec)["total"] for c in cands)  # chosen_hf, at most

    # device: the teacher pass, and one proxy step of the candidate that needs the most
    row_out = _row_bytes(specs(1))
    teacher_params = A.param_count(t_arch, t_spec, mlm_head=want_logits)["total"]
    h, i, a = t_arch.hidden, t_arch.intermediate, t_arch.heads
    teacher_dev = (
        4 * teacher_params
        + 4 * TEACHER_CHUNK * seq_len * (4 * h + i + a * seq_len)
        + TEACHER_CHUNK * sum(4 * math.prod(shape) for shape, _ in specs(1).values())
        + (4 * TEACHER_CHUNK * slots * t_spec.vocab_size if want_logits else 0)
    )
    bsz = pcfg.batch_size
    batch_bytes = bsz * (sum(input_bytes.values()) // n + sum(row_out.values()))
    full_logits = want_logits and not top_k
    cdt = precision.compute_dtype(pcfg.dtype, "proxy.dtype")
    cast = cdt.itemsize if cdt != jnp.float32 else 0  # per-step low-precision weight copies

    def train_dev(c: A.Arch) -> int:
        n = student_params(c, t_spec, t_arch.hidden)
        return (
            16 * n  # float32 params, grads, Adam m and v, whatever the computation dtype
            + cast * n
            + batch_bytes
            + activation_bytes(c, t_spec.vocab_size, bsz, seq_len, slots, full_logits, cdt)
        )

    largest = max(cands, key=lambda c: (train_dev(c), c))
    device_bytes = {"teacher pass": teacher_dev, f"proxy step {largest}": train_dev(largest)}
    separate_source = bool(
        (config.teacher_dir and config.teacher_dir != source_dir) or source_family
    )
    host_bytes = {
        "inputs": sum(input_bytes.values()),
        "teacher params": 4 * A.param_count(t_arch, t_spec, mlm_head=True)["total"],
        "source params": 4 * A.param_count(s_arch, s_spec, mlm_head=True)["total"]
        if separate_source
        else 0,
        "teacher chunk": TEACHER_CHUNK * sum(row_out.values()),
    }
    notes = [
        f"N = config.max_sequences = {n} is an upper bound (the corpus may pack into fewer)",
        f"teacher/source shapes: {t_desc}",
    ]
    out = Plan(
        n_candidates=len(cands),
        n_sequences=n,
        seq_len=seq_len,
        max_predictions=slots,
        teacher=teacher_dir or t_desc,
        teacher_arch=t_arch,
        input_bytes=input_bytes,
        teacher_cache_bytes=cache_bytes,
        cache_dir=str(cache_dir),
        cache_present=present,
        disk_bytes=disk,
        largest=largest,
        host_bytes=host_bytes,
        device_bytes=device_bytes,
        notes=notes,
    )
    if measure:
        if max_measure_flops is None:
            import jax

            max_measure_flops = MEASURE_FLOPS.get(jax.default_backend(), MEASURE_FLOPS["gpu"])
        shapes = TeacherOutputs(t_arch, t_spec, layers, top_k)
        _measure(out, cands, shapes, config, repeats, max_measure_flops)
    return out


def _measure(
    out: Plan,
    cands: list[A.Arch],
    teacher: TeacherOutputs,
    config: ExtractConfig,
    repeats: int,
    max_measure_flops: float,
) -> None:
    """Fill `out.step_times`, `seconds_model`, `search_seconds` (see the module docstring)."""
    t_arch, t_spec, layers, top_k = teacher.arch, teacher.spec, teacher.layers, teacher.top_k
    pcfg = config.proxy
    L, P, B = out.seq_len, out.max_predictions, pcfg.batch_size
    full = lambda c: step_flops(c, t_spec, B, L, P)  # noqa: E731
    for arch in measure_shapes(cands, full):
        b, length = B, L
        while step_flops(arch, t_spec, b, length, P) > max_measure_flops and (b > 1 or length > 8):
            if b > 1:
                b = max(1, b // 2)
            else:
                length = max(8, length // 2)
        slots = mlm.default_max_predictions(length, MASK_PROB)
        data = synthetic_data(
            b, length, slots, t_arch, t_spec, layers, pcfg.kd.logit > 0, top_k, pcfg.kd.temperature
        )
        sec, comp = time_step(arch, data, t_spec, pcfg, repeats)
        f_run = step_flops(arch, t_spec, b, length, slots)
        scaled = (b, length) != (B, L)
        out.step_times.append(
            StepTime(
                arch,
                sec * full(arch) / f_run if scaled else sec,
                sec,
                comp,
                full(arch),
                (b, length),
                scaled,
            )
        )
    if any(t.extrapolated for t in out.step_times):
        out.notes.append(
            f"shapes over {max_measure_flops:.3g} training FLOPs/step were measured scaled down "
            "(batch, then sequence length) and extrapolated by the FLOP ratio: an upper bound, "
            "since a small step's fixed overhead is scaled up too"
        )
    f = np.array([t.flops for t in out.step_times], float)
    s = np.array([t.seconds for t in out.step_times], float)
    out.seconds_model = fit_seconds_model(f, s)
    c0, c1 = out.seconds_model
    t = {c: c0 + c1 * full(c) for c in cands}
    n_eval = len(cands)
    if config.max_evaluations:
        n_eval = min(n_eval, int(config.max_evaluations))
    worst = sorted(cands, key=lambda c: -t[c])[:n_eval]  # the costliest n_eval candidates
    _, n_held = n_split(out.n_sequences, float(config.heldout_fraction))
    held_batches = max(n_held // B, 1)
    rate = float(f.sum() / s.sum())  # achieved FLOP/s of the measured steps
    t_flops = A.flops(t_arch, L, out.n_sequences, t_spec)
    if pcfg.kd.logit > 0:
        t_flops += out.n_sequences * 2 * P * (t_arch.hidden**2 + t_arch.hidden * t_spec.vocab_size)
    out.n_evaluations, out.flop_rate, out.teacher_flops = n_eval, rate, t_flops
    out.search_seconds = {
        "teacher pass": t_flops / rate,
        "proxy steps": sum(pcfg.num_steps * t[c] for c in worst),
        "held-out eval": sum(held_batches * t[c] / 3 for c in worst),
        "compile": n_eval * 2 * statistics.mean(x.compile_seconds for x in out.step_times),
    }


# ---------------------------------------------------------------------------------------------
# The check against this machine (`plan.machine`)
# ---------------------------------------------------------------------------------------------
def machine_limits(workdir: str) -> dict[str, int | None]:
    return {
        "disk_free": disk_free(Path(workdir) / "teacher_cache"),
        "host_mem": host_memory(),
        "device_mem": device_memory(),
    }


def check(config: Any, workdir: str) -> Plan | None:
    """The unmeasured plan of `config`, checked against this machine (PlanError if too big).

    None (nothing checked) when `config.max_sequences` = 0: the row count is then unknown
    until the corpus is packed.
    """
    config = ExtractConfig.from_config(config)
    if not config.max_sequences:
        return None
    p = plan(config, workdir, measure=False)
    check_fits(p, **machine_limits(workdir))
    return p


def fit_note(p: Plan, workdir: str) -> str:
    """'fits this machine (...)' or the PlanError message."""
    lim = machine_limits(workdir)
    try:
        check_fits(p, **lim)
    except PlanError as err:
        return f"does NOT fit: {err}"
    dev = "shared with host" if lim["device_mem"] is None else gb(lim["device_mem"])
    return (
        f"fits this machine (disk free {gb(lim['disk_free'])}, host memory "
        f"{gb(lim['host_mem'])}, device memory {dev})"
    )


def describe(p: Plan, workdir: str) -> str:
    return p.markdown() + f"- verdict: {fit_note(p, workdir)}\n"
