"""Error of top-k logit KD against full logits, on a real teacher with a fitted MLM head.

  python -m benchmarks.topk_error --ks=16,64,256 --out=benchmarks/results/topk_error.json

The teacher is all-MiniLM-L6-v2 with its MLM head fitted on the frozen encoder
(`mlm_head.fit_mlm_head`, on the training rows), run over the static-masked held-out rows of
the corpus (`--corpus`: default the embedded one; `distill.prepare`'s split and masking).
Its float32 MLM logits t give the reference loss  L = T² KL(softmax(t/T) ‖ softmax(s/T))
(`losses.logit_kd`) and its gradient g = ∂L/∂s wrt the student logits s. Each variant of
what the cache stores is scored by the relative error of the loss |L' − L| / L and of the
gradient ‖g' − g‖₂ / ‖g‖₂ (over all positions and classes):

  full fp16   the [N, P, V] logits stored as float16 (the full-logit cache: the floor);
  top-k       the k largest logits (float16) + the rest mass (float32), as
              `losses.topk_teacher` / `distill.teacher_outputs` store them, scored by
              `losses.logit_kd_topk` (a lower bound of L: it drops q(rest)·KL(q|rest ‖ p|rest)).

for three students: 'random' (a freshly initialised Bort-shape student, D4/A8/H1024/I768:
where proxy training starts), 'sliced' (the teacher's first two layers with its head: a
student part-way there) and 'near' (the teacher's logits plus N(0, 1) noise: late in
training).
"""

from __future__ import annotations

import dataclasses
import types
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import common
from bort_jax import distill, hf, losses, mlm_head
from bort_jax.arch import Arch
from bort_jax.models.bert import Bert, fresh_params, slice_params


def kd_errors(
    student: np.ndarray,
    reference: np.ndarray,
    variants: Mapping[str, Mapping[str, np.ndarray]],
    weights: np.ndarray,
    temperature: float,
) -> dict[str, dict[str, float]]:
    """{variant: {'loss', 'loss_rel_err', 'grad_rel_err', 'grad_cos'}} plus 'reference'.

    student s [N, P, V]; reference: teacher logits t [N, P, V] (float32: the exact loss);
    variants: {name: {'logits': [N, P, V]}} (full logits, e.g. float16) or {name: {'values',
    'ids', 'rest'}} (a top-k triple, `losses.topk_teacher`); weights [N, P].
    """
    s = jnp.asarray(student, jnp.float32)
    w = jnp.asarray(weights, jnp.float32)
    # every array is an argument: closed over, XLA would constant-fold the [N, P, V] tensors
    full = jax.jit(lambda x, t, w: jax.value_and_grad(losses.logit_kd)(x, t, w, temperature))
    topk = jax.jit(
        lambda x, v, i, r, w: jax.value_and_grad(losses.logit_kd_topk)(x, v, i, r, w, temperature)
    )

    loss, grad = full(s, jnp.asarray(reference, jnp.float32), w)
    gnorm = float(jnp.linalg.norm(grad))
    out = {"reference": {"loss": float(loss), "grad_norm": gnorm}}
    for name, v in variants.items():
        if "logits" in v:
            lv, gv = full(s, jnp.asarray(v["logits"]), w)
        else:
            lv, gv = topk(s, *(jnp.asarray(v[k]) for k in ("values", "ids", "rest")), w)
        diff = float(jnp.linalg.norm(gv - grad))
        out[name] = {
            "loss": float(lv),
            "loss_rel_err": abs(float(lv) - float(loss)) / abs(float(loss)),
            "grad_rel_err": diff / gnorm,
            "grad_cos": float(jnp.vdot(gv, grad)) / (float(jnp.linalg.norm(gv)) * gnorm),
        }
    return out


def topk_variants(logits: np.ndarray, ks: Sequence[int], temperature: float) -> dict:
    """'full fp16' and one top-k triple per k, stored as the teacher cache stores them."""
    t = jnp.asarray(logits, jnp.float32)
    out = {"full fp16": {"logits": np.asarray(t.astype(jnp.float16))}}
    for k in ks:
        tk = jax.jit(losses.topk_teacher, static_argnums=(1, 2))(t, k, temperature)
        out[f"top-{k}"] = {
            "values": np.asarray(tk["values"].astype(jnp.float16)),
            "ids": np.asarray(tk["ids"]),
            "rest": np.asarray(tk["rest"]),
        }
    return out


def _mlm_logits(model: Bert, params, arrays, batch_size: int = 8) -> np.ndarray:
    """MLM logits [N, P, V] float32 at the masked positions of `arrays`."""

    @jax.jit
    def run(p, b):
        return model.apply(
            {"params": p},
            b["input_ids"],
            b["attention_mask"],
            b["token_type_ids"],
            mlm_positions=b["mlm_positions"],
        )["mlm_logits"].astype(jnp.float32)

    n, parts = arrays["input_ids"].shape[0], []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        pad = np.concatenate([idx, np.full(batch_size - len(idx), idx[-1])])
        out = run(params, {k: np.asarray(arrays[k])[pad] for k in distill.INPUT_KEYS})
        parts.append(np.asarray(out)[: len(idx)])
    return np.concatenate(parts)


def run(args: types.SimpleNamespace) -> dict:
    teacher_dir = hf.minilm_path()
    teacher = distill.Teacher.load(teacher_dir)
    kd = distill.KDWeights(hidden=0.0, logit=0.0, temperature=args.temperature)
    data = distill.prepare(  # static-masked rows only: nothing of the teacher is stored
        teacher,
        teacher_dir,
        args.corpus,
        args.seq_len,
        max_sequences=args.max_sequences,
        heldout_fraction=args.heldout_fraction,
        seed=0,
        want_logits=False,
        cache_dir=None,
        kd=kd,
    )
    ck = teacher.checkpoint
    head = mlm_head.fit_mlm_head(ck, data.train, mlm_head.HeadConfig(num_steps=args.head_steps))
    ck = mlm_head.with_head(ck, head)
    spec = dataclasses.replace(ck.spec, pooler=False)
    held = data.heldout
    weights = np.asarray(held["mlm_weights"], np.float32)
    t = _mlm_logits(Bert(ck.arch, spec, mlm_head=True), ck.params, held)
    teacher_mlm_acc = float(
        np.sum((t.argmax(-1) == held["mlm_ids"]) * weights) / max(weights.sum(), 1)
    )
    variants = topk_variants(t, [int(k) for k in args.ks], args.temperature)
    bort = Arch.parse(args.student_arch)
    random_model = Bert(bort, spec, mlm_head=True)
    sliced_arch = dataclasses.replace(ck.arch, depth=2)
    students = {
        "random": _mlm_logits(random_model, fresh_params(random_model, 0), held),
        "sliced": _mlm_logits(
            Bert(sliced_arch, spec, mlm_head=True),
            slice_params(ck.params, ck.arch, sliced_arch),
            held,
        ),
        "near": t + np.random.default_rng(0).standard_normal(t.shape).astype(np.float32),
    }
    results = {
        name: kd_errors(s, t, variants, weights, args.temperature) for name, s in students.items()
    }
    q = jax.nn.softmax(jnp.asarray(t) / args.temperature, -1)
    top_mass = {}
    for k in args.ks:
        mass = jnp.sum(jax.lax.top_k(q, int(k))[0], -1)
        top_mass[str(k)] = float(jnp.sum((1 - mass) * weights) / weights.sum())
    return {
        "teacher": "all-MiniLM-L6-v2 + fitted MLM head",
        "corpus": args.corpus,
        "head_steps": args.head_steps,
        "teacher_heldout_mlm_acc": teacher_mlm_acc,
        "rows": int(held["input_ids"].shape[0]),
        "positions": int(weights.sum()),
        "vocab": int(t.shape[-1]),
        "seq_len": args.seq_len,
        "temperature": args.temperature,
        "ks": [int(k) for k in args.ks],
        "mean_rest_mass": top_mass,
        "students": results,
        "machine": common.machine_info(),
        "command": common.command_line("benchmarks.topk_error"),
    }


def markdown(res: dict) -> str:
    lines = [
        f"Top-k logit KD vs full float32 logits: {res['teacher']} ({res['head_steps']} head "
        f"steps, held-out MLM acc {res['teacher_heldout_mlm_acc']:.3f}), {res['positions']} "
        f"masked positions of {res['rows']} held-out rows × {res['seq_len']}, V = "
        f"{res['vocab']}, T = {res['temperature']}",
        "",
        "| student | teacher outputs | loss | loss rel. err | grad rel. err | grad cos |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for student, rows in res["students"].items():
        lines.append(
            f"| {student} | float32 logits (reference) | {rows['reference']['loss']:.4f} "
            "| 0 | 0 | 1 |"
        )
        for name, r in rows.items():
            if name == "reference":
                continue
            lines.append(
                f"| {student} | {name} | {r['loss']:.4f} | {r['loss_rel_err']:.2e} | "
                f"{r['grad_rel_err']:.2e} | {r['grad_cos']:.5f} |"
            )
    mass = ", ".join(f"k={k}: {v:.3f}" for k, v in res["mean_rest_mass"].items())
    lines.append(f"\nMean teacher mass outside the top k at T: {mass}.")
    return "\n".join(lines)


_FLAGS = (
    flags.DEFINE_list("ks", ["16", "64", "256"], "top-k sizes"),
    flags.DEFINE_string("corpus", "embedded", "text of the rows (`data.text.load_corpus` spec)"),
    flags.DEFINE_integer("seq_len", 128, "tokens per sequence"),
    flags.DEFINE_integer("max_sequences", 96, "sequences of the corpus (0 = all)"),
    flags.DEFINE_float("heldout_fraction", 0.25, "share of rows scored (rest: head fit)"),
    flags.DEFINE_integer("head_steps", 100, "AdamW steps of the MLM head fit"),
    flags.DEFINE_float("temperature", 2.0, "KD temperature (bert_large's proxy: 2.0)"),
    flags.DEFINE_string("student_arch", "4,8,1024,768", "the random student's D,A,H,I"),
    flags.DEFINE_string("out", "", "JSON path; the Markdown goes next to it (.md)"),
)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    args = common.flag_values(_FLAGS)
    res = run(args)
    common.write_result(res, markdown(res), args.out)


if __name__ == "__main__":
    app.run(main)
