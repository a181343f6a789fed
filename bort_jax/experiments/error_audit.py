"""Does the proxy error e(ξ) rank candidates like the task? (docs/error_signal.md)

The FPTAS (arXiv 2010.08512) only needs e(ξ) to order candidates as their downstream quality
does. `run(config, workdir)` measures that on a list of candidates ξ (sub-architectures of the
source, sliced from it):

  1. downstream: KD pretraining (`pretrain.pretrain`, section `pretrain`, the same bounded run
     for every candidate; `pretrain.num_steps` = 0 skips it: a fine-tuning probe of the slice)
     then fine-tuning (`finetune.finetune`, section `finetune`) on every
     task; the score is the task's primary metric on its dev split at the last step (no
     selection), and the downstream error is 1 − its mean over tasks;
  2. signals: `proxy.proxy_error` once per `variants` entry (section `proxy`, as in the
     extraction, with the entry's overrides, e.g. head_init / proj_init), recording every
     held-out term: output_total, mlm, hidden_last, hidden_nmse, output_ntotal;
  3. report: per signal its values, spread (max/min, std) and Spearman ρ with the downstream
     error (`spearman`, average ranks for ties).

Every candidate's downstream result and every signal is a stage (one JSON file), so a killed
audit resumes per candidate; pretraining/fine-tuning directories of a finished candidate are
deleted.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from bort_jax import distill, finetune, hf, hub, pretrain, proxy
from bort_jax.arch import Arch, param_count
from bort_jax.config import ConfigError, from_config, to_plain
from bort_jax.experiments import (
    drop_dir,
    jsonable,
    log,
    open_workdir,
    spearman,
    stage,
    write_report,
)
from bort_jax.models.bert import slice_params_check
from bort_jax.tasks import get_task
from bort_jax.tasks.loading import load_examples
from bort_jax.tasks.metrics import average_ranks

METRICS = ("output_total", "mlm", "hidden_last", "hidden_nmse", "output_ntotal")


rankdata = average_ranks  # scipy.stats.rankdata("average"): ties share their mean rank


def elasticity(signal: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """(k, R²) of the least-squares fit log err = k · log signal + c over candidates [n].

    k says how many times faster (in relative terms) the downstream error moves than the
    signal: with W's error term (e_ref / e)^γ, a signal that moves k times slower than the
    task error needs γ_signal = k · γ_task to weigh error against size as γ_task would on the
    task's own error (docs/error_signal.md §6). nan when fewer than 3 positive pairs.
    """
    x, y = np.asarray(signal, np.float64), np.asarray(err, np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 3 or np.ptp(np.log(x[ok])) == 0:
        return float("nan"), float("nan")
    lx, ly = np.log(x[ok]), np.log(y[ok])
    k, c = np.polyfit(lx, ly, 1)
    resid = ly - (k * lx + c)
    total = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / total if total > 0 else float("nan")
    return float(k), r2


def tag(arch: Arch) -> str:
    return f"D{arch.depth}_A{arch.heads}_H{arch.hidden}_I{arch.intermediate}"


@dataclasses.dataclass(frozen=True)
class Plan:
    candidates: list[Arch]
    tasks: list[str]
    proxies: dict[str, proxy.ProxyConfig]  # variant name → proxy config
    source_dir: str
    gamma_task: float = 4.0  # W's γ as if e were the task error (the default objective's)


def validate(config: Any) -> Plan:
    """Named errors before any work: candidates, tasks and their data, every sub-config."""
    try:
        cands = [Arch.parse(c) for c in str(config.candidates).split(";") if c.strip()]
    except ValueError as e:
        raise ConfigError(f"config.candidates: {e}") from e
    if len(cands) < 3 or len(set(cands)) != len(cands):
        raise ConfigError(
            f"config.candidates: give >= 3 distinct 'D,A,H,I' separated by ';' (got {len(cands)})"
        )
    tasks = [t.strip() for t in str(config.tasks).split(",") if t.strip()]
    if not tasks:
        raise ConfigError("config.tasks is empty; e.g. 'sst2'")
    for name in tasks:
        task = get_task(name)
        for split in ("train", task.eval_splits[0]):
            load_examples(task, split, config.data_dir, config.finetune.tfds_data_dir)
    variants = to_plain(config.variants)
    if not variants:
        raise ConfigError("config.variants is empty; e.g. {'fitted': {'head_init': 'fitted'}}")
    proxies = {
        name: from_config(
            proxy.ProxyConfig, dict(to_plain(config.proxy), **over), f"variants.{name}"
        )
        for name, over in variants.items()
    }
    source_dir = hub.resolve(config.source_dir) or hf.minilm_path()
    if not (Path(source_dir) / "config.json").is_file():
        raise FileNotFoundError(f"config.source_dir={source_dir}: no checkpoint (config.json)")
    source_arch, _ = hf.config_to_arch_spec(
        json.loads((Path(source_dir) / "config.json").read_text()), source_dir
    )
    for a in cands:
        slice_params_check(source_arch, a)
    if config.pretrain.num_steps:  # 0 = no pretraining (a fine-tuning probe of the slice)
        pretrain.validate(dict(config.pretrain.to_dict(), arch=_arch_str(cands[0])))
    finetune.FinetuneConfig.from_config(dict(config.finetune.to_dict(), task=tasks[0]))
    gamma_task = float(config.get("gamma_task", 4.0))
    if not gamma_task > 0:
        raise ConfigError(f"config.gamma_task must be > 0, got {gamma_task}")
    return Plan(cands, tasks, proxies, source_dir, gamma_task)


def _arch_str(a: Arch) -> str:
    return f"{a.depth},{a.heads},{a.hidden},{a.intermediate}"


def downstream(config: Any, plan: Plan, arch: Arch, root: Path) -> dict[str, Any]:
    """KD-pretrain `arch` (sliced from the source), fine-tune it on every task → scores."""
    if config.pretrain.num_steps:
        cfg = dict(
            config.pretrain.to_dict(),
            arch=_arch_str(arch),
            init_method="slice",
            init=plan.source_dir,
            teacher_dir=plan.source_dir,
            cache_dir=config.pretrain.cache_dir or str(root / "teacher_cache"),
            progress=False,
        )
        summary = pretrain.pretrain(cfg, str(root / "work" / tag(arch) / "pretrain"))
        init, shape = summary["export"], ""
    else:  # the bounded fine-tuning probe: fine-tune the sliced source directly
        summary = {"final_heldout": None, "train_seconds": 0.0}
        init, shape = plan.source_dir, _arch_str(arch)
    scores = {}
    for task in plan.tasks:
        ft = finetune.finetune(
            dict(
                config.finetune.to_dict(),
                task=task,
                init=init,
                arch=shape,
                data_dir=config.data_dir,
                progress=False,
                save_best=False,
            ),
            root / "work" / tag(arch) / f"finetune_{task}",
        )
        metric = get_task(task).primary_metric
        scores[task] = {
            "metric": metric,
            "final": ft["final"][metric],
            "best": ft["best"][metric],
            "best_step": ft["best_step"],
            "seconds": ft["seconds"],
        }
    return {
        "pretrain_final_heldout": summary["final_heldout"],
        "pretrain_seconds": summary["train_seconds"],
        "scores": scores,
    }


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The audit (module docstring); returns the report."""
    if not workdir:
        raise ValueError("the error audit needs a --workdir (pretraining writes checkpoints)")
    plan = validate(config)
    root = open_workdir(workdir, config)
    down = run_downstream(config, plan, root)
    sig, spec = run_signals(config, plan, root)
    report = jsonable(build_report(plan, spec, down, sig))
    write_report(root, "report", report, markdown(report))
    return report


def run_downstream(config: Any, plan: Plan, root: Path) -> dict[str, dict[str, Any]]:
    """Stage 1 for every candidate: {tag: downstream result} (`downstream`)."""
    down = {}
    for arch in plan.candidates:
        log(f"downstream {arch}")
        down[tag(arch)] = stage(
            root / "downstream" / f"{tag(arch)}.json",
            lambda: downstream(config, plan, arch, root),  # noqa: B023
        )
        drop_dir(root / "work" / tag(arch))
    return down


def run_signals(config: Any, plan: Plan, root: Path) -> tuple[dict[str, dict[str, Any]], Any]:
    """Stage 2 for every candidate and variant: {tag: {variant: {'metrics', 'seconds'}}}
    and the source's `Spec`. Data and teacher outputs as in the extraction (`distill.prepare`)."""
    source = hf.load(plan.source_dir)
    teacher = distill.Teacher(source, hf.load_tokenizer(plan.source_dir))
    data = distill.prepare(
        teacher,
        plan.source_dir,
        config.corpus,
        config.max_seq_len,
        max_sequences=config.max_sequences,
        heldout_fraction=config.heldout_fraction,
        seed=config.data_seed,
        cache_dir=str(root / "teacher_cache"),
        student_depths=sorted({a.depth for a in plan.candidates}),
        kd=next(iter(plan.proxies.values())).kd,
    )
    sig: dict[str, dict[str, Any]] = {}
    for arch in plan.candidates:
        for name, pcfg in plan.proxies.items():
            log(f"signal {arch} {name}")

            def measure(arch=arch, pcfg=pcfg):
                r = proxy.proxy_error(
                    arch, data, source.spec, pcfg, source=source, cache_dir=str(root / "heads")
                )
                return {"metrics": r.metrics, "seconds": r.train_seconds}

            sig.setdefault(tag(arch), {})[name] = stage(
                root / "signals" / f"{tag(arch)}_{name}.json", measure
            )
    return sig, source.spec


def build_report(plan: Plan, spec, down: dict, sig: dict) -> dict[str, Any]:
    rows = []
    for arch in plan.candidates:
        t = tag(arch)
        d = down[t]
        mean = float(np.mean([d["scores"][task]["final"] for task in plan.tasks]))
        signals = {}
        for h, pcfg in plan.proxies.items():
            ms = dict(sig[t][h]["metrics"])
            if "heldout_output_ntotal" not in ms and "heldout_hidden_nmse" in ms:
                ms["heldout_output_ntotal"] = proxy.normalised_total(ms, pcfg.kd.hidden)
            signals.update({f"{h}.{m}": ms.get(f"heldout_{m}", float("nan")) for m in METRICS})
        rows.append(
            {
                "arch": str(arch),
                "params": param_count(arch, spec)["total"],
                "signals": signals,
                "scores": {task: d["scores"][task]["final"] for task in plan.tasks},
                "downstream_error": 1.0 - mean,
                "pretrain_heldout": d["pretrain_final_heldout"],
            }
        )
    err = np.array([r["downstream_error"] for r in rows])
    summary = {}
    for name in rows[0]["signals"]:
        v = np.array([r["signals"][name] for r in rows], np.float64)
        ok = np.isfinite(v)
        summary[name] = {
            "spearman": spearman(v[ok], err[ok]) if ok.sum() >= 2 else float("nan"),
            "min": float(v[ok].min()) if ok.any() else float("nan"),
            "max": float(v[ok].max()) if ok.any() else float("nan"),
            "max_over_min": float(v[ok].max() / v[ok].min()) if ok.any() else float("nan"),
            "std": float(v[ok].std(ddof=1)) if ok.sum() > 1 else 0.0,
        }
        k, r2 = elasticity(v, err)
        summary[name].update(elasticity=k, elasticity_r2=r2, gamma=k * plan.gamma_task)
    summary["params"] = {
        "spearman": spearman(-np.array([r["params"] for r in rows], np.float64), err)
    }
    return {
        "tasks": plan.tasks,
        "variants": list(plan.proxies),
        "gamma_task": plan.gamma_task,
        "rows": rows,
        "signals": summary,
    }


def markdown(report: dict[str, Any]) -> str:
    names = [n for n in report["signals"] if n != "params"]
    tasks = report["tasks"]
    lines = [
        "# Error-signal audit: does e(ξ) rank like the task?",
        "",
        "Downstream: bounded KD pretraining + fine-tuning, dev score at the last step; "
        "downstream error = 1 − mean score. ρ = Spearman(signal, downstream error); "
        "a signal that ranks like the task has ρ near +1.",
        "",
        "| candidate | parameters | "
        + " | ".join(names)
        + " | "
        + " | ".join(tasks)
        + " | downstream error |",
        "|" + "---|" * (3 + len(names) + len(tasks)),
    ]
    for r in report["rows"]:
        vals = " | ".join(f"{r['signals'][n]:.4f}" for n in names)
        sc = " | ".join(f"{100 * r['scores'][t]:.1f}" for t in tasks)
        lines.append(
            f"| {r['arch']} | {r['params']:,} | {vals} | {sc} | {r['downstream_error']:.4f} |"
        )
    g = report.get("gamma_task", float("nan"))
    lines += [
        "",
        "k = slope of log(downstream error) on log(signal), R² its fit; γ = k · γ_task "
        f"(γ_task = {g:g}) weighs the signal in W as γ_task would weigh the task error.",
        "",
        "| signal | Spearman ρ | min | max | max/min | std | k | R² | γ |",
        "|---" * 9 + "|",
    ]
    for n in names:
        s = report["signals"][n]
        lines.append(
            f"| {n} | {s['spearman']:.3f} | {s['min']:.4f} | {s['max']:.4f} | "
            f"{s['max_over_min']:.3f} | {s['std']:.4f} | {s.get('elasticity', float('nan')):.2f} "
            f"| {s.get('elasticity_r2', float('nan')):.2f} | {s.get('gamma', float('nan')):.1f} |"
        )
    lines.append(
        f"| −parameters (reference) | {report['signals']['params']['spearman']:.3f} ||||||||"
    )
    return "\n".join(lines) + "\n"
