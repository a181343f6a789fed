"""The agora_glue experiment's arms for one seed: plain training (Agora's round 0), one Agora
arm per sampler on the shared plain fit, and the controls (best of R + 1 plain fits, the
labeler's pseudo-labels of random unlabelled text, one plain fit with Agora's step budget)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bort_jax import agora, hf, precision
from bort_jax import experiments as ex
from bort_jax import finetune as ft
from bort_jax.arch import Arch
from bort_jax.data import batching
from bort_jax.experiments.agora_glue.config import GlueConfig, stage_config
from bort_jax.experiments.agora_glue.data import TaskData, count_in, row_keys
from bort_jax.experiments.agora_glue.samplers import TextTools
from bort_jax.experiments.agora_glue.student import (
    Labeler,
    dev_scores,
    fit_student,
    labeler_fn,
    metric_fn,
    predict_labels,
    score_rows,
)
from bort_jax.models.bert import Bert
from bort_jax.tasks.encoding import Arrays


@dataclasses.dataclass
class SeedStudent:
    """The student of one seed: its model, initial parameters (every fit restarts from
    them), stage config and workdir (fits resume from `workdir/<name>` checkpoints)."""

    data: TaskData
    cfg: GlueConfig
    model: Bert
    init: Any
    scfg: ft.FinetuneConfig
    workdir: Path | None
    round0: dict = dataclasses.field(default_factory=dict)  # the plain fit, shared by arms

    @classmethod
    def build(
        cls, data: TaskData, ckpt: hf.Checkpoint, cfg: GlueConfig, seed: int, workdir: Path | None
    ) -> SeedStudent:
        """The student's encoder from `ckpt` (`init`, or the `student_init` checkpoint) sliced
        to `cfg.student_arch` ('' = `ckpt`'s own shape, unsliced), with a task head
        initialised by `seed`."""
        scfg = stage_config(cfg.student, cfg, seed)
        model, params = ft.build_classifier(
            ckpt,
            data.task,
            Arch.parse(cfg.student_arch) if cfg.student_arch else ckpt.arch,
            dropout_rate=scfg.dropout_rate,
            seed=seed,
            dtype=precision.compute_dtype(scfg.dtype, "config.dtype"),
            options=scfg.model,
        )
        return cls(data, cfg, model, ft.host_copy(params), scfg, workdir)

    def fit(self, rows: Arrays, scfg: ft.FinetuneConfig, name: str, desc: str) -> Any:
        """Host params of one fit on `rows` from the initial parameters."""
        workdir = ex.subdir(self.workdir, *name.split("/"))
        return fit_student(self.model, self.init, self.data.task.kind, rows, scfg, workdir, desc)

    def scores(self, params: Any) -> dict:
        """Metric and loss on the agora and the held-out half (`student.dev_scores`)."""
        return dev_scores(self.data, self.model, params, self.cfg)


def run_arm(
    student: SeedStudent, kind: str, generator: agora.Generator, seed: int, t0: float
) -> dict:
    """One Agora arm of a seed: `run_agora` with the student (round 0 fitted once and shared
    by every arm), each round's record extended by its held-out metric and loss, held-out
    rows found in the training set (0 expected) and distinct synthetic rows; then the
    `selected_round`'s held-out metric."""
    data, cfg, task = student.data, student.cfg, student.data.task
    heldout_keys = set(row_keys(data.heldout))
    n_real = batching.num_rows(data.train)

    def fit_fn(rows: Arrays, round_: int, rng: jax.Array) -> Any:
        if round_ == 0 and "params" in student.round0:
            return student.round0["params"]
        name = "round0" if round_ == 0 else f"{kind}/round{round_}"
        out = student.fit(rows, student.scfg, name, f"student {kind} r{round_}")
        if round_ == 0:
            student.round0["params"] = out
        return out

    def callback(round_: int, state: Any, train_set: Arrays, record: dict) -> None:
        synthetic = np.asarray(train_set["synthetic"], bool)
        assert int((~synthetic).sum()) == n_real, "real training rows changed"
        record["heldout_metric"], record["heldout_loss"] = score_rows(
            student.model, state, data.heldout, task, cfg
        )
        record["heldout_rows_in_train_real"] = count_in(train_set, heldout_keys, ~synthetic)
        record["heldout_rows_in_train_synthetic"] = count_in(train_set, heldout_keys, synthetic)
        record["distinct_synthetic"] = len(
            {key for key, m in zip(row_keys(train_set), synthetic) if m}
        )
        record["seconds"] = time.perf_counter() - t0
        ex.log(
            f"[{task.name} seed {seed} {kind}] round {round_}: agora-dev "
            f"{record['agora_dev_metric']:.3f} held-out {record['heldout_metric']:.3f} "
            f"errors {record['n_errors']} new {record['n_new']} "
            f"({record['seconds']:.0f} s)"
        )

    predict = lambda state, inputs: predict_labels(student.model, state, inputs, cfg)
    result = agora.run_agora(
        data.train,
        data.agora_dev,
        agora.Learner(fit_fn, predict, metric_fn(task)),
        generator,
        ex.agora_config(cfg.agora, seed),
        callback=callback,
    )
    history = ex.jsonable(result.history)
    chosen = selected_round(history, result.best_round, cfg)
    return {
        "agora": history[chosen]["heldout_metric"],
        "agora_agora_dev": history[chosen]["agora_dev_metric"],
        "best_round": result.best_round,
        "selected_round": chosen,
        "radius": result.radius,
        "final_train_size": batching.num_rows(result.train_set),
        "history": history,
    }


def run_seed(
    data: TaskData,
    ckpt: hf.Checkpoint,
    labeler: Labeler,
    tools: TextTools,
    cfg: GlueConfig,
    seed: int,
    workdir: Path | None,
    sample_fns: Mapping[str, Any] | None = None,
) -> dict:
    """Plain (round 0) and, per Agora arm, the `selected_round`'s held-out metric of one
    seed, with histories and the controls.

    ckpt: the checkpoint the student starts from (`SeedStudent.build`); the labeler and the
    samplers come in `labeler` and `sample_fns`.
    sample_fns: {sampler kind: `agora.Generator` sample_fn (None = nearest-token decoding)},
    in order; the first is the primary arm (its keys are the record's top level, its largest
    synthetic pool sizes the distill control and its fits the budget control). Every arm
    shares the round-0 fit. Student fits resume from `workdir/<kind>/round<r>` checkpoints.
    """
    t0 = time.perf_counter()
    sample_fns = dict(sample_fns or {"nearest_token": None})
    student = SeedStudent.build(data, ckpt, cfg, seed, workdir)
    lab = labeler_fn(labeler)
    arms = {
        kind: run_arm(student, kind, tools.generator(lab, fn), seed, t0)
        for kind, fn in sample_fns.items()
    }
    primary = arms[next(iter(arms))]
    history = primary["history"]
    control = (
        restarts_control(student, history[0], len(history) - 1) if cfg.control_restarts else None
    )
    pseudo = (
        distill_control(student, labeler, max(r["n_synthetic"] for r in history))
        if cfg.control_distill
        else None
    )
    budget = budget_control(student, len(history)) if cfg.control_budget else None
    if pseudo is not None:
        ex.log(
            f"[{data.task.name} seed {seed}] distill control: {pseudo['n_extra']} pseudo-"
            f"labelled rows (labeler = gold {pseudo['labeler_equals_gold']}), agora-dev "
            f"{pseudo['agora_dev']:.3f} held-out {pseudo['heldout']:.3f}"
        )
    return {
        "seed": seed,
        "plain": history[0]["heldout_metric"],
        "plain_best_of": None if control is None else control["heldout"],
        "control": control,
        "distill": None if pseudo is None else pseudo["heldout"],
        "budget": None if budget is None else budget["heldout"],
        "budget_control": budget,
        "distill_control": pseudo,
        **primary,
        "plain_agora_dev": history[0]["agora_dev_metric"],
        "arms": arms,
        "seconds": time.perf_counter() - t0,
    }


def selected_round(history: list[dict], best_round: int, cfg: GlueConfig) -> int:
    """The reported Agora round: 'agora_half' = the best on the agora half (which Agora also
    sampled from, so its agora-half score is optimistic); 'fixed' = `fixed_round` (-1 or
    beyond the fitted rounds: the last fitted round), chosen without looking at any score."""
    if cfg.selection == "agora_half":
        return best_round
    last = len(history) - 1
    return last if cfg.fixed_round < 0 else min(cfg.fixed_round, last)


def restarts_control(student: SeedStudent, round0: Mapping[str, Any], extra: int) -> dict:
    """Same number of fits as Agora, no synthetic data: round 0 (its record) plus `extra`
    plain fits with other training seeds (data order, dropout); the best on the agora half
    (first maximum) is scored on the held-out half. Separates 'selection over several fits'
    from 'synthetic data'."""
    scfg = student.scfg
    runs = [
        {
            "train_seed": scfg.seed,
            "agora_dev": round0["agora_dev_metric"],
            "heldout": round0["heldout_metric"],
            "heldout_loss": round0["heldout_loss"],
        }
    ]
    for j in range(1, extra + 1):
        rcfg = scfg.replace(seed=scfg.seed + 1000 * j)
        params = student.fit(student.data.train, rcfg, f"restart{j}", f"restart {j}")
        runs.append({"train_seed": rcfg.seed, **student.scores(params)})
    best = int(np.argmax([r["agora_dev"] for r in runs]))
    return {"runs": runs, "best": best, "heldout": runs[best]["heldout"]}


def distill_control(student: SeedStudent, labeler: Labeler, n_extra: int) -> dict:
    """The student trained (same init, steps, seed) on its real rows plus `n_extra` random
    unlabeled training-split sentences labelled by the labeler (Agora's largest synthetic
    pool size): what the labeler's knowledge gives without Agora's targeted sampling."""
    data, scfg = student.data, student.scfg
    pick = np.random.default_rng(scfg.seed).permutation(batching.num_rows(data.distill_pool))[
        :n_extra
    ]
    rows = batching.take(data.distill_pool, pick)
    gold = rows["label"]
    rows["label"] = labeler.pool_labels[pick].astype(gold.dtype)
    params = student.fit(batching.concat(data.train, rows), scfg, "distill", "distill")
    return {
        "n_extra": int(len(pick)),
        "labeler_equals_gold": float(np.mean(rows["label"] == gold)) if len(pick) else None,
        **student.scores(params),
    }


def budget_control(student: SeedStudent, n_fits: int) -> dict:
    """One plain fit as long as all `n_fits` fits of the primary arm together: separates
    'more training steps' from 'synthetic data'."""
    bcfg = student.scfg.replace(num_steps=student.scfg.num_steps * n_fits)
    params = student.fit(student.data.train, bcfg, "budget", "budget")
    return {**student.scores(params), "num_steps": bcfg.num_steps}
