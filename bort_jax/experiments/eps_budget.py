"""What a smaller ε buys when it trains candidates longer: rank stability vs evaluations.

With the proxy budget of `bort_jax.search.budget` (T(ε, s) = ⌈κ / (ε s^{3/2})⌉, Eq. R of
arXiv 2010.08512), ε sets how long every candidate is proxy-trained. This study measures, on an
extraction grid (configs/default.py: 24 candidates, embedded MiniLM), for every ε of the list:

  * stability of the e-ranking: Spearman ρ and Kendall τ_b between e at T(ε) and at 2T(ε) over
    all candidates, for the `error` proxy_error returns and for every held-out metric component
    (all are stored, so any other error definition can be scored later from the stage files);
  * stability of the W-ranking (Eq. W with the extraction's objective; i = analytic FLOPs, so
    no latency noise enters): is the W-argmax at T the one at 2T (top-1), how many of the
    top-k at T are in the top-k at 2T;
  * the FPTAS at that ε on the e-table at T(ε) (a lookup, so cheap): evaluations out of |Ξ|,
    whether it certified, and the quality of its pick judged at 2T, W_2T(chosen) / max W_2T;
    the same search on the table of the fixed proxy.steps, for comparison;
  * the price: seconds of proxy training at T(ε) for all candidates and for those the FPTAS
    evaluated (compilation included, as in an extraction).

Every (candidate, T) is one resumable stage `e/T<T>/<candidate>.json` (error, all metrics,
seconds); T levels run in increasing order and the report (eps_budget.json / .md) is rewritten
after each, so a stopped run reports every ε whose T and 2T are complete. Deterministic for a
given config (proxy training is seeded); only fields named `seconds` are wall-clock.

    python scripts/eps_budget.py --workdir=runs/eps_budget
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bort_jax import arch as A
from bort_jax import experiments as ex
from bort_jax import extract, proxy
from bort_jax.config import ConfigError, from_config
from bort_jax.extract_config import ExtractConfig
from bort_jax.search import fptas as F
from bort_jax.search.budget import ProxyBudget, resolve_steps

spearman = ex.spearman

NAME = "eps_budget"
ERROR = "error"  # the field proxy_error returns as e(ξ); metric components keep their names


@dataclasses.dataclass(frozen=True)
class EpsBudgetConfig:
    """The study (configs/eps_budget.py names every field)."""

    eps: str  # comma-separated ε values, each in (0, 1)
    proxy_budget: ProxyBudget  # mode must be 'eps'
    top_k: int  # W-ranking agreement: top-k at T vs top-k at 2T
    extraction: ExtractConfig  # configs/default.py; its proxy.num_steps = the fixed baseline

    def __post_init__(self) -> None:
        parse_eps(self.eps)
        if self.proxy_budget.mode != "eps":
            raise ConfigError(
                f"config.proxy_budget.mode={self.proxy_budget.mode!r}; this study needs 'eps'"
            )
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"config.top_k must be a positive int, got {self.top_k!r}")

    @classmethod
    def from_config(cls, config: Any) -> EpsBudgetConfig:
        return from_config(cls, config)


def parse_eps(text: str) -> list[float]:
    """'0.4,0.2' -> [0.4, 0.2]; ConfigError naming config.eps for a bad, empty or repeated list."""
    try:
        values = ex.parse_list(text, float)
    except ValueError as e:
        raise ConfigError(f"config.eps={text!r}: {e}") from e
    bad = [v for v in values if not 0 < v < 1]
    if not values or bad or len(set(values)) != len(values):
        raise ConfigError(f"config.eps={text!r}: give distinct values in (0, 1), comma-separated")
    return values


def schedule(cfg: EpsBudgetConfig) -> dict[float, tuple[int, int]]:
    """ε -> (T(ε), 2T(ε)) under the budget at the extraction's s."""
    s = cfg.extraction.s
    steps = {eps: resolve_steps(cfg.proxy_budget, eps, s) for eps in parse_eps(cfg.eps)}
    return {eps: (t, 2 * t) for eps, t in steps.items()}


# ------------------------------------------------------------------------- rank statistics


def kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall τ_b = (C − D) / sqrt((n0 − t_a)(n0 − t_b)) over all pairs; NaN if constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), 1)
    da, db = da[upper], db[upper]
    denom = math.sqrt(float((da != 0).sum()) * float((db != 0).sum()))
    return float((da * db).sum() / denom) if denom > 0 else float("nan")


def w_values(
    objective: F.WCoefficient, p: Sequence[float], i: Sequence[float], e: Sequence[float]
) -> np.ndarray:
    """W(ξ) of Eq. W for every candidate [n], references p_ref = max p, i_ref = max i."""
    p_ref, i_ref = max(p), max(i)
    return np.array([objective.value(a, b, c, p_ref, i_ref) for a, b, c in zip(p, i, e)])


def top_k(w: np.ndarray, k: int) -> list[int]:
    """Indices of the k largest W, largest first (ties: lower index first)."""
    return [int(j) for j in np.argsort(-w, kind="stable")[:k]]


# ------------------------------------------------------------------------------ stages


def candidate_name(arch: A.Arch) -> str:
    """File-name form of a candidate: D1_A4_H128_I384."""
    return str(arch).replace("/", "_")


def stage_path(workdir: Path | None, steps: int, arch: A.Arch) -> Path | None:
    return ex.subdir(workdir, "e", f"T{steps:05d}", f"{candidate_name(arch)}.json")


def train_one(prob: extract.Problem, pcfg: proxy.ProxyConfig, arch: A.Arch, steps: int) -> dict:
    """Proxy-train `arch` for `steps` steps: the stage record (error, all metrics, seconds)."""
    t0 = time.perf_counter()
    r = proxy.proxy_error(
        arch, prob.data, prob.spec, dataclasses.replace(pcfg, num_steps=steps), source=prob.source
    )
    return {
        "candidate": str(arch),
        "steps": steps,
        ERROR: r.error,
        "metrics": dict(r.metrics),
        "seconds": {"train": r.train_seconds, "total": time.perf_counter() - t0},
    }


def table(records: Mapping[str, Mapping[str, Any]], field: str, names: Sequence[str]) -> list:
    """The value of `field` (ERROR or a metric name) for each candidate name, in order."""
    return [records[n][ERROR] if field == ERROR else records[n]["metrics"][field] for n in names]


# ------------------------------------------------------------------------------ analysis


def search_table(
    prob: extract.Problem, config: ExtractConfig, eps: float, errors: Mapping[str, float]
) -> F.SearchResult:
    """The FPTAS of `config` at `eps` with e(ξ) looked up in `errors` {candidate name: e}."""
    objective = config.objective.coefficient()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", F.AssumptionWarning)
        return F.fptas(
            prob.space,
            prob.p,
            prob.i,
            lambda a: errors[str(a)],
            eps,
            config.s,
            objective=objective,
            assumptions=extract.assumptions(config),
            options=extract.search_options(config),
        )


def analyse(
    cfg: EpsBudgetConfig,
    prob: extract.Problem,
    records: Mapping[int, Mapping[str, Mapping[str, Any]]],
) -> dict:
    """The report from the stage records {T: {candidate: record}} that exist so far."""
    config = cfg.extraction
    cands = list(prob.space.candidates())
    names = [str(a) for a in cands]
    p = [prob.p(a) for a in cands]
    i = [prob.i(a) for a in cands]
    objective = config.objective.coefficient()
    fixed = int(config.proxy.num_steps)
    complete = {t for t, r in records.items() if all(n in r for n in names)}
    rows = []
    for eps, (t, t2) in schedule(cfg).items():
        if t not in complete or t2 not in complete:
            continue
        rt, rt2 = records[t], records[t2]
        shared = set.intersection(*(set(r[n]["metrics"]) for r in (rt, rt2) for n in names))
        fields = [ERROR] + sorted(shared)  # components every record of both levels holds
        stability = {
            f: {
                "spearman": spearman(table(rt, f, names), table(rt2, f, names)),
                "kendall": kendall_tau_b(table(rt, f, names), table(rt2, f, names)),
            }
            for f in fields
        }
        w, w2 = (w_values(objective, p, i, table(r, ERROR, names)) for r in (rt, rt2))
        k = min(cfg.top_k, len(names))
        result = search_table(prob, config, eps, dict(zip(names, table(rt, ERROR, names))))
        chosen = names.index(str(result.chosen))
        evaluated = [str(ev.candidate) for ev in result.evaluations]
        row = {
            "eps": eps,
            "steps": t,
            "steps_2x": t2,
            "stability": stability,
            "w": {
                "argmax": names[top_k(w, 1)[0]],
                "argmax_2x": names[top_k(w2, 1)[0]],
                "top1_agree": top_k(w, 1) == top_k(w2, 1),
                "k": k,
                "topk_overlap": len(set(top_k(w, k)) & set(top_k(w2, k))),
                "spearman": spearman(w, w2),
            },
            "fptas": {
                "evaluations": result.n_evaluations,
                "candidates": result.n_candidates,
                "chosen": names[chosen],
                "certified": result.guarantee.certified,
                "stopped_by": result.stopped_by,
                "w_2x_ratio": float(w2[chosen] / w2.max()),
            },
            "seconds": {
                "all": sum(rt[n]["seconds"]["train"] for n in names),
                "fptas": sum(rt[n]["seconds"]["train"] for n in evaluated),
            },
        }
        if fixed in complete:
            base = search_table(
                prob, config, eps, dict(zip(names, table(records[fixed], ERROR, names)))
            )
            row["fptas_fixed"] = {
                "steps": fixed,
                "evaluations": base.n_evaluations,
                "chosen": str(base.chosen),
                "certified": base.guarantee.certified,
            }
        rows.append(row)
    matrix = {}  # FPTAS evaluations at every ε on every complete e-table
    for t in sorted(complete):
        errors = dict(zip(names, table(records[t], ERROR, names)))
        matrix[str(t)] = {
            str(eps): search_table(prob, config, eps, errors).n_evaluations for eps in schedule(cfg)
        }
    return {
        "candidates": names,
        "evaluations_by_steps": matrix,
        "p": p,
        "i": i,
        "i_source": "analytic FLOPs (config.extraction.inference='flops')",
        "schedule": {str(e): list(ts) for e, ts in schedule(cfg).items()},
        "steps_done": sorted(complete),
        "rows": rows,
        "complete": all(t in complete for ts in schedule(cfg).values() for t in ts),
    }


def _num(x: float) -> str:
    return "—" if x != x else f"{x:.3f}"  # noqa: PLR0124 (NaN check)


def _matrix(report: Mapping[str, Any]) -> str:
    """FPTAS evaluations at every ε (columns) on every complete e-table (rows)."""
    n = len(report["candidates"])
    cols = list(report["schedule"])
    lines = [
        "| e-table at T | " + " | ".join(f"ε={e}" for e in cols) + " |",
        "|---:|" + "---:|" * len(cols),
    ] + [
        f"| {t} | " + " | ".join(f"{m[e]}/{n}" for e in cols) + " |"
        for t, m in report["evaluations_by_steps"].items()
    ]
    return (
        "FPTAS evaluations at each ε on each complete e-table (ε and T decoupled):\n\n"
        + "\n".join(lines)
        + "\n"
    )


def markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown tables."""
    rows = report["rows"]
    n = len(report["candidates"])
    head = (
        f"{n} candidates; T levels done: {report['steps_done']}"
        f"{'' if report['complete'] else ' (incomplete run)'}; i = {report['i_source']}.\n\n"
    )
    if not rows:
        return head + "No ε has both T and 2T complete yet.\n\n" + _matrix(report)
    lines = [
        "| ε | T | 2T | ρ(e) | τ(e) | W top-1 same | W top-k overlap | ρ(W) | FPTAS evals "
        "| FPTAS chosen | W_2T(chosen)/max | evals at fixed T | train s, all | train s, FPTAS |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        st, w, fp = r["stability"][ERROR], r["w"], r["fptas"]
        fixed = r.get("fptas_fixed")
        lines.append(
            f"| {r['eps']:g} | {r['steps']} | {r['steps_2x']} | {_num(st['spearman'])} "
            f"| {_num(st['kendall'])} | {'yes' if w['top1_agree'] else 'no'} "
            f"| {w['topk_overlap']}/{w['k']} "
            f"| {_num(w['spearman'])} | {fp['evaluations']}/{fp['candidates']} "
            f"| {fp['chosen']}{'' if fp['certified'] else ' (not certified)'} "
            f"| {_num(fp['w_2x_ratio'])} "
            f"| {fixed['evaluations'] if fixed else '—'}"
            f"{'' if not fixed else ' (T=' + str(fixed['steps']) + ')'} "
            f"| {r['seconds']['all']:.0f} | {r['seconds']['fptas']:.0f} |"
        )
    fields = list(rows[0]["stability"])
    comp = [
        "| ε | T→2T | " + " | ".join(fields) + " |",
        "|---|---|" + "---:|" * len(fields),
    ]
    for r in rows:
        cells = " | ".join(
            f"{_num(r['stability'][f]['spearman'])} / {_num(r['stability'][f]['kendall'])}"
            for f in fields
        )
        comp.append(f"| {r['eps']:g} | {r['steps']}→{r['steps_2x']} | {cells} |")
    return (
        head
        + "\n".join(lines)
        + "\n\nRank stability of every stored component, Spearman ρ / Kendall τ_b (T vs 2T):\n\n"
        + "\n".join(comp)
        + "\n\n"
        + _matrix(report)
    )


# ---------------------------------------------------------------------------------- run


def run(config: Any, workdir: str | None = None, train: bool = True) -> dict:
    """Train every candidate at every T(ε) and 2T(ε), then analyse (see module docstring).

    `train=False` (`summarise`) only analyses the stage files `workdir` already holds.
    Returns the report dict, with its Markdown under 'markdown'.
    """
    cfg = EpsBudgetConfig.from_config(config)
    steps = sorted({t for ts in schedule(cfg).values() for t in ts})
    extraction = cfg.extraction
    if extraction.inference != "flops":
        raise ConfigError(
            "config.extraction.inference must be 'flops' (W-rankings free of latency noise), "
            f"got {extraction.inference!r}"
        )
    if not train and not (workdir and (Path(workdir) / ex.CONFIG_FILE).is_file()):
        raise FileNotFoundError(f"{workdir}: no {NAME} run to summarise ({ex.CONFIG_FILE})")
    path = ex.open_workdir(workdir, config)
    with tempfile.TemporaryDirectory() as tmp:
        prob = extract.build_problem(extraction, str(tmp if path is None else path / "extract"))
        pcfg = extraction.proxy
        cands = list(prob.space.candidates())
        records: dict[int, dict[str, dict]] = {}
        report: dict = {}
        for t in steps:
            records[t] = {}
            for k, a in enumerate(cands):
                where = stage_path(path, t, a)
                if not train:
                    if where.is_file():
                        records[t][str(a)] = json.loads(where.read_text())
                    continue
                ex.log(f"[{NAME}] T={t} candidate {k + 1}/{len(cands)} {a}")
                records[t][str(a)] = ex.stage(where, lambda a=a, t=t: train_one(prob, pcfg, a, t))
            if train or t == steps[-1]:
                report = analyse(cfg, prob, records)
                report["markdown"] = markdown(report)
                ex.write_report(path, NAME, report, report["markdown"])
    return report


def summarise(config: Any, workdir: str) -> dict:
    """The report of the stage files `workdir` holds so far, without training anything."""
    return run(config, workdir, train=False)
