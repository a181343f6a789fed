"""Agora (de Wynter 2020, arXiv 2010.07990) vs plain fine-tuning on GLUE SST-2 and RTE.

Setting (scarce data): a small student (all-MiniLM-L6-v2 sliced to `student_arch`) is
fine-tuned on `n_train` training examples. The dev split is cut once, by `split_seed`, into
an *agora* half (Agora's evaluation set E: its errors seed the synthetic points, and it
selects the best round) and a *held-out* half that only the report sees
(`bort_jax.agora.split_dev`, disjointness asserted). The labeler is the full MiniLM
fine-tuned once per task (best step chosen on the agora half) on `labeler.train_examples`
training examples: 0 = the student's `n_train` examples (default), -1 = the whole training
split, N = N examples. Both subsets come from the same `data_seed` permutation, so the
student's examples are a subset of a larger labeler set (asserted); the dev split is never
part of either.

For every seed:
  plain   = Agora's round 0: the student fitted on the real examples only;
  agora   = the student of the Agora round with the best agora-half metric;
both scored on the held-out half. Every round restarts from the same initial student and
trains the same number of steps on real + synthetic rows. Synthetic rows: each token
embedding (MiniLM's table) of a misclassified agora-half example is moved uniformly inside a
ball of radius `agora.radius` x the mean nearest-neighbour distance of the training tokens,
decoded to the nearest token, and labelled by the labeler (`bort_jax.agora`).

Optional control (`control_distill`): the student trained on its real rows plus the
labeler's pseudo-labels of random unlabeled training-split sentences (outside the student's
and, where enough remain, the labeler's set; gold labels discarded), as many rows as Agora's
largest synthetic pool. With a labeler trained on more data than the student it separates
Agora's targeted sampling from plain distillation of the labeler.

Outputs in the workdir: agora_glue.json (everything) and agora_glue.md (tables).

    python scripts/agora_glue.py --config=configs/agora_glue.py --workdir=runs/agora_glue
"""
from __future__ import annotations

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs importable


import dataclasses
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bort_jax import agora, hf  # noqa: E402
from bort_jax import finetune as ft  # noqa: E402
from bort_jax.arch import Arch  # noqa: E402
from bort_jax.tasks import Task, compute_metrics, get_task  # noqa: E402

Arrays = dict[str, np.ndarray]


# ------------------------------------------------------------------------------ data


@dataclasses.dataclass
class TaskData:
    """Encoded splits of one task. agora_idx / heldout_idx index the (capped) dev split;
    train_idx / labeler_train_idx index the training split (student / labeler rows)."""

    task: Task
    train: Arrays
    agora_dev: Arrays
    heldout: Arrays
    agora_idx: np.ndarray
    heldout_idx: np.ndarray
    labeler_train: Optional[Arrays] = None      # None = the student's `train`
    train_idx: Optional[np.ndarray] = None
    labeler_train_idx: Optional[np.ndarray] = None
    distill_pool: Optional[Arrays] = None       # unlabeled-text control (gold labels unused)

    @property
    def labeler_rows(self) -> Arrays:
        return self.train if self.labeler_train is None else self.labeler_train

    def sizes(self) -> dict[str, int]:
        return {"train": ft.num_rows(self.train),
                "labeler_train": ft.num_rows(self.labeler_rows),
                "dev": len(self.agora_idx) + len(self.heldout_idx),
                "agora_dev": len(self.agora_idx), "heldout": len(self.heldout_idx)}


def subsample_indices(n: int, limit: int, seed: int) -> np.ndarray:
    """The indices `ft.subsample(examples, limit, seed)` keeps out of n examples (sorted)."""
    if not limit or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def labeler_limit(cfg: Any) -> int:
    """Training examples of the labeler, in `ft.subsample` terms (0 = all).

    `labeler.train_examples`: 0 (or absent) = the student's `n_train`; -1 = all; N > 0 = N.
    """
    n = int(cfg.labeler.get("train_examples", 0) or 0)
    if n < -1:
        raise ValueError(f"labeler.train_examples must be -1, 0 or positive, got {n}")
    return cfg.n_train if n == 0 else (0 if n == -1 else n)


def load_task_data(task: Task, cfg: Any, tokenizer: Any) -> TaskData:
    """Scarce training subset (student), the labeler's training subset (same permutation,
    so a larger one contains the student's), dev split into disjoint agora / held-out
    halves."""
    all_train = ft.load_examples(task, "train", cfg.data_dir)
    train_idx = subsample_indices(len(all_train), cfg.n_train, cfg.data_seed)
    train_ex = ft.subsample(all_train, cfg.n_train, cfg.data_seed)
    assert train_ex == [all_train[i] for i in train_idx]
    lab_limit = labeler_limit(cfg)
    lab_idx = subsample_indices(len(all_train), lab_limit, cfg.data_seed)
    if len(lab_idx) >= len(train_idx):
        assert set(train_idx.tolist()) <= set(lab_idx.tolist()), \
            "the student's training rows must be a subset of the labeler's"
    dev_ex = ft.subsample(ft.load_examples(task, task.eval_splits[0], cfg.data_dir),
                          cfg.max_dev_examples, cfg.data_seed)
    agora_idx, heldout_idx = agora.split_dev(len(dev_ex), cfg.agora_fraction, cfg.split_seed)
    agora.assert_disjoint(agora_idx, heldout_idx)
    assert len(agora_idx) + len(heldout_idx) == len(dev_ex)
    dev = ft.encode_examples(tokenizer, task, dev_ex, cfg.max_seq_len)
    train = ft.encode_examples(tokenizer, task, train_ex, cfg.max_seq_len)
    labeler_train = None
    if not np.array_equal(lab_idx, train_idx):
        labeler_train = ft.encode_examples(
            tokenizer, task, ft.subsample(all_train, lab_limit, cfg.data_seed),
            cfg.max_seq_len)
    pool = None
    if cfg.get("control_distill", False):
        pool_idx = distill_pool_indices(len(all_train), train_idx, lab_idx,
                                        cfg.get("distill_pool_size", 4000), cfg.data_seed)
        pool = ft.encode_examples(tokenizer, task, [all_train[i] for i in pool_idx],
                                  cfg.max_seq_len)
    return TaskData(task, train, ft.take_rows(dev, agora_idx), ft.take_rows(dev, heldout_idx),
                    agora_idx, heldout_idx, labeler_train, train_idx, lab_idx, pool)


def distill_pool_indices(n: int, train_idx: np.ndarray, labeler_idx: np.ndarray,
                         size: int, seed: int) -> np.ndarray:
    """Up to `size` training-split rows outside the student's set, preferring rows the
    labeler was not trained on either (random order, seeded)."""
    outside = np.setdiff1d(np.arange(n), np.union1d(train_idx, labeler_idx))
    if len(outside) < size:
        outside = np.setdiff1d(np.arange(n), train_idx)
    return np.random.default_rng(seed + 1).permutation(outside)[:size]


def row_keys(arrays: Arrays) -> list[bytes]:
    """Content key of every row: its input_ids and token types as bytes."""
    ids = np.asarray(arrays["input_ids"], np.int32)
    types = np.asarray(arrays.get("token_type_ids", np.zeros_like(ids)), np.int32)
    return [a.tobytes() + b.tobytes() for a, b in zip(ids, types)]


def count_in(arrays: Arrays, keys: set[bytes], mask: Optional[np.ndarray] = None) -> int:
    """Rows of `arrays` (where `mask`) whose content key is in `keys`."""
    rows = row_keys(arrays)
    mask = np.ones(len(rows), bool) if mask is None else np.asarray(mask, bool)
    return int(sum(r in keys for r, m in zip(rows, mask) if m))


# ---------------------------------------------------------------------- models


def metric_fn(task: Task) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda pred, gold: compute_metrics(task, pred, gold)[task.primary_metric]


def predict_labels(model, params, inputs: Arrays, cfg: Any) -> np.ndarray:
    """Argmax class ids [N]."""
    return np.argmax(ft.predict(model, params, inputs, cfg.eval_batch_size,
                                cfg.length_bucket), axis=-1)


def stage_config(section: Any, cfg: Any, seed: int) -> ft.FinetuneConfig:
    """A FinetuneConfig from a `student` / `labeler` section plus the shared fields."""
    values = dict(section.to_dict() if hasattr(section, "to_dict") else section)
    values.pop("train_examples", None)       # labeler data size, not an optimiser field
    return ft.FinetuneConfig.from_config(dict(
        values, seed=seed, max_seq_len=cfg.max_seq_len, length_bucket=cfg.length_bucket,
        eval_batch_size=cfg.eval_batch_size))


def train_labeler(ckpt: hf.Checkpoint, data: TaskData, cfg: Any) -> dict:
    """The full checkpoint fine-tuned on the labeler's training rows (once per task); best
    step on the agora half."""
    t0 = time.perf_counter()
    lcfg = stage_config(cfg.labeler, cfg, seed=0)
    model, params = ft.build_classifier(ckpt, data.task, dropout_rate=lcfg.dropout_rate)
    prep = ft.Prepared(lcfg, data.task, model, params, data.labeler_rows, data.agora_dev,
                       None, "", lcfg.num_steps, lcfg.eval_every or lcfg.num_steps)
    best, _ = ft.fit(prep)
    score = metric_fn(data.task)
    return {"model": model, "params": best.params, "best_step": best.step,
            "agora_dev": score(predict_labels(model, best.params, data.agora_dev, cfg),
                               data.agora_dev["label"]),
            "heldout": score(predict_labels(model, best.params, data.heldout, cfg),
                             data.heldout["label"]),
            "seconds": time.perf_counter() - t0}


def text_tools(ckpt: hf.Checkpoint, tokenizer: Any) -> dict[str, Callable]:
    """represent / decode / perturb-mask functions over the checkpoint's token embeddings."""
    table = np.asarray(ckpt.params["embeddings"]["word_embeddings"]["embedding"], np.float32)
    special = sorted(set(hf.special_ids(tokenizer).values()))
    return {"represent_fn": agora.token_embedding_represent(table),
            "decode_fn": agora.text_decode_fn(table, special),
            "perturb_mask_fn": agora.text_perturb_mask(special)}


def student_fit_fn(model, init_params: Any, task: Task, scfg: ft.FinetuneConfig
                   ) -> Callable[[Arrays, int, jax.Array], Any]:
    """fit_fn for run_agora: every round trains from the same initial student."""
    def fit_fn(train_set: Arrays, round_: int, rng: jax.Array) -> Any:
        result = ft.train_on_arrays(model, init_params, task.kind, train_set, scfg,
                                    scfg.num_steps, desc=f"student r{round_}")
        return ft.host_copy(result.state.params)
    return fit_fn


# -------------------------------------------------------------------------- one seed


def run_seed(data: TaskData, ckpt: hf.Checkpoint, labeler: dict, tools: dict, cfg: Any,
             seed: int) -> dict:
    """Plain (round 0) and Agora (best round) held-out metrics of one seed, with history."""
    t0 = time.perf_counter()
    task = data.task
    scfg = stage_config(cfg.student, cfg, seed)
    model, params = ft.build_classifier(ckpt, task, Arch.parse(cfg.student_arch),
                                        dropout_rate=scfg.dropout_rate, seed=seed)
    init = ft.host_copy(params)
    score = metric_fn(task)
    heldout_keys = set(row_keys(data.heldout))
    n_real = ft.num_rows(data.train)

    def callback(round_: int, state: Any, train_set: Arrays, record: dict) -> None:
        synthetic = np.asarray(train_set["synthetic"], bool)
        assert int((~synthetic).sum()) == n_real, "real training rows changed"
        record["heldout_metric"] = score(predict_labels(model, state, data.heldout, cfg),
                                         data.heldout["label"])
        record["heldout_rows_in_train_real"] = count_in(train_set, heldout_keys, ~synthetic)
        record["heldout_rows_in_train_synthetic"] = count_in(train_set, heldout_keys,
                                                             synthetic)
        record["seconds"] = time.perf_counter() - t0
        log(f"[{task.name} seed {seed}] round {round_}: agora-dev "
            f"{record['agora_dev_metric']:.3f} held-out {record['heldout_metric']:.3f} "
            f"errors {record['n_errors']} new {record['n_new']} "
            f"({record['seconds']:.0f} s)")

    acfg = agora_config(cfg.agora, seed)
    labeler_fn = agora.argmax_labeler(labeler_logits_fn(labeler["model"]), labeler["params"])
    result = agora.run_agora(
        data.train, data.agora_dev, student_fit_fn(model, init, task, scfg),
        lambda state, inputs: predict_labels(model, state, inputs, cfg),
        tools["represent_fn"], tools["decode_fn"], labeler_fn, acfg,
        metric_fn=score, perturb_mask_fn=tools["perturb_mask_fn"], callback=callback)
    history = [_jsonable(r) for r in result.history]
    control = (restarts_control(data, model, init, scfg, history[0], len(history) - 1, cfg)
               if cfg.control_restarts else None)
    distill = (distill_control(data, model, init, scfg, labeler, cfg,
                               max(r["n_synthetic"] for r in history))
               if data.distill_pool is not None else None)
    if distill is not None:
        log(f"[{task.name} seed {seed}] distill control: {distill['n_extra']} pseudo-labelled "
            f"rows (labeler = gold {distill['labeler_equals_gold']}), agora-dev "
            f"{distill['agora_dev']:.3f} held-out {distill['heldout']:.3f}")
    return {"seed": seed, "plain": history[0]["heldout_metric"],
            "plain_best_of": None if control is None else control["heldout"],
            "control": control,
            "distill": None if distill is None else distill["heldout"],
            "distill_control": distill,
            "agora": history[result.best_round]["heldout_metric"],
            "plain_agora_dev": history[0]["agora_dev_metric"],
            "agora_agora_dev": result.best_metric, "best_round": result.best_round,
            "radius": result.radius, "final_train_size": ft.num_rows(result.train_set),
            "history": history, "seconds": time.perf_counter() - t0}


def restarts_control(data: TaskData, model, init: Any, scfg: ft.FinetuneConfig,
                     round0: dict, extra: int, cfg: Any) -> dict:
    """Same number of fits as Agora, no synthetic data: round 0 plus `extra` plain fits
    with other training seeds (data order, dropout); the best on the agora half (first
    maximum) is scored on the held-out half. Separates 'selection over several fits'
    from 'synthetic data'."""
    score = metric_fn(data.task)
    runs = [{"train_seed": scfg.seed, "agora_dev": round0["agora_dev_metric"],
             "heldout": round0["heldout_metric"]}]
    for j in range(1, extra + 1):
        rcfg = scfg.replace(seed=scfg.seed + 1000 * j)
        params = ft.host_copy(ft.train_on_arrays(model, init, data.task.kind, data.train,
                                                 rcfg, rcfg.num_steps).state.params)
        runs.append({"train_seed": rcfg.seed,
                     "agora_dev": score(predict_labels(model, params, data.agora_dev, cfg),
                                        data.agora_dev["label"]),
                     "heldout": score(predict_labels(model, params, data.heldout, cfg),
                                      data.heldout["label"])})
    best = int(np.argmax([r["agora_dev"] for r in runs]))
    return {"runs": runs, "best": best, "heldout": runs[best]["heldout"]}


def distill_control(data: TaskData, model, init: Any, scfg: ft.FinetuneConfig,
                    labeler: dict, cfg: Any, n_extra: int) -> dict:
    """The student trained (same init, steps, seed) on its real rows plus `n_extra` random
    unlabeled training-split sentences labelled by the labeler (Agora's largest synthetic
    pool size): what the labeler's knowledge gives without Agora's targeted sampling."""
    score = metric_fn(data.task)
    pool = data.distill_pool
    pick = np.random.default_rng(scfg.seed).permutation(ft.num_rows(pool))[:n_extra]
    rows = ft.take_rows(pool, pick)
    gold = rows["label"]
    rows["label"] = labeler["pool_labels"][pick].astype(gold.dtype)
    train = {k: np.concatenate([np.asarray(data.train[k]), rows[k]]) for k in data.train}
    params = ft.host_copy(ft.train_on_arrays(model, init, data.task.kind, train, scfg,
                                             scfg.num_steps, desc="distill").state.params)
    return {"n_extra": int(len(pick)),
            "labeler_equals_gold": float(np.mean(rows["label"] == gold)) if len(pick) else None,
            "agora_dev": score(predict_labels(model, params, data.agora_dev, cfg),
                               data.agora_dev["label"]),
            "heldout": score(predict_labels(model, params, data.heldout, cfg),
                             data.heldout["label"])}


@functools.lru_cache(maxsize=None)
def labeler_logits_fn(model) -> Callable:
    """One function object per model, so the jitted sampler is compiled once."""
    return functools.partial(ft.task_logits, model)


def agora_config(section: Any, seed: int) -> agora.AgoraConfig:
    values = dict(section.to_dict() if hasattr(section, "to_dict") else section)
    values["max_synthetic"] = values.get("max_synthetic") or None
    return agora.AgoraConfig(**dict(values, seed=seed))


def perturbation_examples(data: TaskData, labeler: dict, tools: dict, cfg: Any,
                          radius: float, tokenizer: Any) -> dict:
    """Share of perturbable tokens changed by one sampling round, and a few decoded samples."""
    n = min(16, ft.num_rows(data.agora_dev))
    centers = {k: v[:n] for k, v in agora.inputs_of(data.agora_dev).items()}
    acfg = agora_config(cfg.agora, 0)
    _, out, labels = agora.sample_and_relabel(
        jax.random.PRNGKey(0), tools["represent_fn"](centers),
        agora.argmax_labeler(labeler_logits_fn(labeler["model"]), labeler["params"]),
        tools["decode_fn"], acfg, radius=radius, center_inputs=centers,
        perturb_mask=tools["perturb_mask_fn"](centers))
    ids = np.asarray(out["input_ids"])
    mask = tools["perturb_mask_fn"](centers)[:, None, :]
    changed = float(((ids != centers["input_ids"][:, None]) & mask).sum()
                    / max(mask.sum() * ids.shape[1], 1))
    shown = [{"original": tokenizer.decode(centers["input_ids"][i].tolist()),
              "sample": tokenizer.decode(ids[i, 0].tolist()),
              "gold": int(data.agora_dev["label"][i]), "labeler": int(labels[i, 0])}
             for i in range(min(cfg.n_examples, n))]
    return {"token_change_rate": changed, "examples": shown}


def _jsonable(record: dict) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}


# ------------------------------------------------------------------------------ report


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    x = np.asarray(values, np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0


def summarise_task(seeds: list[dict]) -> dict:
    plain, ag = mean_std([s["plain"] for s in seeds]), mean_std([s["agora"] for s in seeds])
    delta = mean_std([s["agora"] - s["plain"] for s in seeds])
    out = {"plain_mean": plain[0], "plain_std": plain[1], "agora_mean": ag[0],
           "agora_std": ag[1], "delta_mean": delta[0], "delta_std": delta[1],
           "wins": sum(s["agora"] > s["plain"] for s in seeds),
           "ties": sum(s["agora"] == s["plain"] for s in seeds)}
    if all(s["plain_best_of"] is not None for s in seeds):
        out["best_of_mean"], out["best_of_std"] = mean_std([s["plain_best_of"]
                                                            for s in seeds])
    if all(s.get("distill") is not None for s in seeds):
        out["distill_mean"], out["distill_std"] = mean_std([s["distill"] for s in seeds])
    return out


def markdown(report: dict) -> str:
    """Main table, per-round history and perturbation examples."""
    pct = lambda m, s: f"{100 * m:.1f} ± {100 * s:.1f}"  # noqa: E731
    lines = ["| task | train | dev (agora / held-out) | labeler train | labeler held-out "
             "| plain held-out "
             "| plain best-of-(R+1) held-out | Agora held-out | Δ (Agora − plain) "
             "| Agora wins | best round (mean) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in report["tasks"].items():
        s, z = t["summary"], t["sizes"]
        rounds = np.mean([x["best_round"] for x in t["seeds"]])
        best_of = (pct(s["best_of_mean"], s["best_of_std"]) if "best_of_mean" in s
                   else "not run")
        lines.append(
            f"| {name} | {z['train']} | {z['dev']} ({z['agora_dev']} / {z['heldout']}) | "
            f"{z.get('labeler_train', z['train'])} | {100 * t['labeler']['heldout']:.1f} | "
            f"{pct(s['plain_mean'], s['plain_std'])} | "
            f"{best_of} | {pct(s['agora_mean'], s['agora_std'])} | "
            f"{pct(s['delta_mean'], s['delta_std'])} | {s['wins']}/{len(t['seeds'])} | "
            f"{rounds:.1f} |")
    distilled = [(n, t) for n, t in report["tasks"].items()
                 if "distill_mean" in t["summary"]]
    if distilled:
        lines += ["", "Control: student on real rows + labeler pseudo-labels of random "
                  "unlabeled training-split text (as many rows as Agora's largest synthetic "
                  "pool):", "", "| task | extra rows (mean) | labeler = gold on them "
                  "| held-out |", "|---|---:|---:|---:|"]
        for name, t in distilled:
            d = [x["distill_control"] for x in t["seeds"]]
            agree = np.mean([x["labeler_equals_gold"] for x in d
                             if x["labeler_equals_gold"] is not None] or [np.nan])
            lines.append(f"| {name} | {np.mean([x['n_extra'] for x in d]):.0f} | "
                         f"{100 * agree:.1f} | "
                         f"{pct(t['summary']['distill_mean'], t['summary']['distill_std'])} |")
    lines += ["", "Per round (agora-dev selects; held-out is reported only):", "",
              "| task | seed | round | train rows | synthetic | agora-dev | held-out | errors "
              "| new points | labeler = gold on new | held-out rows in train |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in report["tasks"].items():
        for s in t["seeds"]:
            for r in s["history"]:
                agree = r["labeler_agreement"]
                lines.append(
                    f"| {name} | {s['seed']} | {r['round']}{'*' if r['is_best'] else ''} | "
                    f"{r['train_size']} | {r['n_synthetic']} | "
                    f"{100 * r['agora_dev_metric']:.1f} | {100 * r['heldout_metric']:.1f} | "
                    f"{r['n_errors']} | {r['n_new']} | "
                    f"{'-' if agree != agree else f'{100 * agree:.0f}%'} | "
                    f"{r['heldout_rows_in_train_real']} + "
                    f"{r['heldout_rows_in_train_synthetic']} |")
    lines += ["", "(* = improved the agora-dev metric; held-out rows in train = exact "
              "content matches among real + synthetic rows.)", ""]
    for name, t in report["tasks"].items():
        p = t["perturbation"]
        lines.append(f"{name}: radius {t['seeds'][0]['radius']:.3f}, "
                     f"{100 * p['token_change_rate']:.1f}% of perturbable tokens changed.")
        for e in p["examples"]:
            lines.append(f"- `{e['original']}` → `{e['sample']}` "
                         f"(gold {e['gold']}, labeler {e['labeler']})")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ driver


def run_task(task: Task, ckpt: hf.Checkpoint, tokenizer: Any, tools: dict, cfg: Any,
             seeds: list[int]) -> dict:
    t0 = time.perf_counter()
    data = load_task_data(task, cfg, tokenizer)
    log(f"[{task.name}] sizes {data.sizes()}")
    labeler = train_labeler(ckpt, data, cfg)
    labeler["heldout_rows_in_train"] = count_in(data.labeler_rows,
                                                set(row_keys(data.heldout)))
    if data.distill_pool is not None:
        labeler["pool_labels"] = predict_labels(labeler["model"], labeler["params"],
                                                data.distill_pool, cfg)
    log(f"[{task.name}] labeler agora-dev {labeler['agora_dev']:.3f} held-out "
        f"{labeler['heldout']:.3f} ({labeler['seconds']:.0f} s)")
    results = [run_seed(data, ckpt, labeler, tools, cfg, s) for s in seeds]
    pert = perturbation_examples(data, labeler, tools, cfg, results[0]["radius"], tokenizer)
    return {"sizes": data.sizes(), "agora_idx": data.agora_idx.tolist(),
            "heldout_idx": data.heldout_idx.tolist(), "train_idx": data.train_idx.tolist(),
            "labeler_train_idx": data.labeler_train_idx.tolist(),
            "labeler": {k: labeler[k] for k in ("best_step", "agora_dev", "heldout",
                                                "heldout_rows_in_train", "seconds")},
            "seeds": results, "summary": summarise_task(results), "perturbation": pert,
            "seconds": time.perf_counter() - t0}


def enable_compilation_cache(path: Path) -> None:
    """JAX's persistent compilation cache (process-wide). Every fit builds a fresh jitted
    train step with identical HLO; the cache turns its recompilation into a lookup."""
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_list(text: str, cast: Callable = str) -> list:
    return [cast(x.strip()) for x in str(text).split(",") if x.strip()]


def run(cfg: Any, workdir: Optional[str | os.PathLike] = None) -> dict:
    """Both tasks, all seeds; writes agora_glue.json / .md into `workdir` if given."""
    t0 = time.perf_counter()
    tasks = [get_task(t) for t in parse_list(cfg.tasks)]
    seeds = parse_list(cfg.seeds, int)
    if not seeds:
        raise ValueError("config.seeds is empty")
    for t in tasks:
        if t.kind != "classification":
            raise ValueError(f"agora_glue handles classification tasks; {t.name} is {t.kind}")
    if workdir is not None and cfg.compilation_cache:
        enable_compilation_cache(Path(workdir) / "jax_cache")
    init = cfg.init or hf.minilm_path()
    ckpt = hf.load(init)
    ft.check_max_seq_len(cfg.max_seq_len, ckpt.spec)
    tokenizer = hf.load_tokenizer(init)
    tools = text_tools(ckpt, tokenizer)
    report = {"config": cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg),
              "init": str(init), "tasks": {}}
    for task in tasks:
        report["tasks"][task.name] = run_task(task, ckpt, tokenizer, tools, cfg, seeds)
    report["seconds"] = time.perf_counter() - t0
    report["markdown"] = markdown(report)
    if workdir is not None:
        out = Path(workdir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "agora_glue.json").write_text(json.dumps(report, indent=2))
        (out / "agora_glue.md").write_text(report["markdown"])
    return report


def main(argv: list[str]) -> None:
    from absl import flags, logging
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {argv[1:]}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    report = run(flags.FLAGS.config, flags.FLAGS.workdir)
    print(report["markdown"])
    print(f"total {report['seconds']:.0f} s")


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags
    config_flags.DEFINE_config_file("config", None, "agora_glue config file",
                                    lock_config=True)
    flags.DEFINE_string("workdir", None, "output directory for agora_glue.json / .md")
    flags.mark_flag_as_required("config")
    app.run(main)
