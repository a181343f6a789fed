"""Reports for an OSE search: Markdown, JSON (round-trippable) and PNG plots.

Context: de Wynter, arXiv 2010.08512 (OSE: minimise parameter size p, inference cost i and error e;
rank by the W-coefficient), as reconstructed in bort_jax/search/fptas.py. A report records, for one
`SearchResult`: every evaluated candidate with p, i, e and W (Eq. W of fptas.py), the Pareto front
over (p, i, e), the chosen candidate, the guarantee and its assumptions, the optional AB^nC check,
ε, s, the number of e-evaluations and the wall time. When the e-values violate an assumption
(`SearchResult.assumption_violations`), the guarantee reads "NOT CERTIFIED", names the worst
violating pair (chain) of each assumption and the slack it needs, and lists the violations.
Every file is written atomically (`bort_jax.files`). Plots (matplotlib, Agg canvas, no pyplot
state): error vs parameters and error vs inference cost, Pareto front and choice marked.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from bort_jax.files import atomic_write_bytes, atomic_write_text
from bort_jax.search.abnc import AbncCheck
from bort_jax.search.assumptions import AssumptionViolation, worst_per_assumption
from bort_jax.search.objective import WCoefficient
from bort_jax.search.result import Evaluation, Guarantee, SearchResult

Factory = Callable[..., Any]


# ----------------------------------------------------------------------------- JSON


def candidate_to_json(candidate: Any) -> dict[str, Any]:
    """{"repr", "fields"} for NamedTuples/dataclasses, {"repr", "values"} for tuples."""
    if hasattr(candidate, "_asdict"):
        return {"repr": repr(candidate), "fields": dict(candidate._asdict())}
    if dataclasses.is_dataclass(candidate) and not isinstance(candidate, type):
        return {"repr": repr(candidate), "fields": dataclasses.asdict(candidate)}
    if isinstance(candidate, tuple):
        return {"repr": repr(candidate), "values": list(candidate)}
    return {"repr": repr(candidate)}


def candidate_from_json(data: Mapping[str, Any], factory: Factory | None = None) -> Any:
    """Inverse of `candidate_to_json`: ``factory(**fields)``, or a tuple of the values."""
    if "fields" in data:
        return factory(**data["fields"]) if factory else tuple(data["fields"].values())
    if "values" in data:
        return factory(*data["values"]) if factory else tuple(data["values"])
    return data["repr"]


def _evaluation_to_json(ev: Evaluation) -> dict[str, Any]:
    return {
        "candidate": candidate_to_json(ev.candidate),
        "p": ev.p,
        "i": ev.i,
        "e": ev.e,
        "objective": ev.objective,
    }


def _evaluation_from_json(data: Mapping[str, Any], factory: Factory | None) -> Evaluation:
    return Evaluation(
        candidate_from_json(data["candidate"], factory),
        data["p"],
        data["i"],
        data["e"],
        data["objective"],
    )


def result_to_dict(result: SearchResult, abnc: AbncCheck | None = None) -> dict[str, Any]:
    """Plain-JSON form of a result (and of the AB^nC check, if given)."""
    out = {
        "method": result.method,
        "chosen": _evaluation_to_json(result.chosen_evaluation),
        "evaluations": [_evaluation_to_json(ev) for ev in result.evaluations],
        "pareto_front": [_evaluation_to_json(ev) for ev in result.pareto_front],
        "n_candidates": result.n_candidates,
        "n_evaluations": result.n_evaluations,
        "n_e_calls": result.n_e_calls,
        "n_cache_hits": result.n_cache_hits,
        "trimmed": [
            {"candidate": candidate_to_json(t), "by": candidate_to_json(b), "factor": f}
            for t, b, f in result.trimmed
        ],
        "failed": [{"candidate": candidate_to_json(c), "error": m} for c, m in result.failed],
        "guarantee": dataclasses.asdict(result.guarantee),
        "objective_spec": dataclasses.asdict(result.objective_spec),
        "p_ref": result.p_ref,
        "i_ref": result.i_ref,
        "eps": result.eps,
        "s": result.s,
        "stopped_by": result.stopped_by,
        "wall_time_s": result.wall_time_s,
        "settings": dict(result.settings),
        "assumption_violations": [
            v.to_dict(candidate_to_json) for v in result.assumption_violations
        ],
        "n_cache_rejected": result.n_cache_rejected,
        "parallel": result.parallel,
        "n_rounds": result.n_rounds,
        "n_speculative": result.n_speculative,
    }
    if abnc is not None:
        out["abnc"] = {
            "first": dataclasses.asdict(abnc.first),
            "middle": dataclasses.asdict(abnc.middle),
            "last": dataclasses.asdict(abnc.last),
            "n_middle": abnc.n_middle,
            "cheaper": dict(abnc.cheaper),
            "ratios": dict(abnc.ratios),
            "holds": abnc.holds,
            "guarantee": abnc.guarantee,
        }
    return out


def result_from_dict(data: Mapping[str, Any], factory: Factory | None = None) -> SearchResult:
    """Rebuild a `SearchResult` from `result_to_dict` output (candidates via ``factory``)."""
    evals = tuple(_evaluation_from_json(ev, factory) for ev in data["evaluations"])
    chosen = _evaluation_from_json(data["chosen"], factory)
    g = dict(data["guarantee"])
    g["assumptions"] = tuple(g["assumptions"])

    def cand(c: Mapping[str, Any]) -> Any:
        return candidate_from_json(c, factory)

    return SearchResult(
        method=data["method"],
        chosen=chosen.candidate,
        objective=chosen.objective,
        chosen_evaluation=chosen,
        evaluations=evals,
        pareto_front=tuple(_evaluation_from_json(ev, factory) for ev in data["pareto_front"]),
        n_candidates=data["n_candidates"],
        n_evaluations=data["n_evaluations"],
        n_e_calls=data["n_e_calls"],
        n_cache_hits=data["n_cache_hits"],
        trimmed=tuple(
            (
                candidate_from_json(t["candidate"], factory),
                candidate_from_json(t["by"], factory),
                t["factor"],
            )
            for t in data["trimmed"]
        ),
        failed=tuple(
            (candidate_from_json(f["candidate"], factory), f["error"]) for f in data["failed"]
        ),
        guarantee=Guarantee(**g),
        objective_spec=WCoefficient(**data["objective_spec"]),
        p_ref=data["p_ref"],
        i_ref=data["i_ref"],
        eps=data["eps"],
        s=data["s"],
        stopped_by=data["stopped_by"],
        wall_time_s=data["wall_time_s"],
        settings=dict(data["settings"]),
        assumption_violations=tuple(
            AssumptionViolation.from_dict(v, cand) for v in data.get("assumption_violations", ())
        ),
        n_cache_rejected=data.get("n_cache_rejected", 0),
        parallel=data.get("parallel", 1),
        n_rounds=data.get("n_rounds", 0),
        n_speculative=data.get("n_speculative", 0),
    )


def write_json(result: SearchResult, path: str | Path, abnc: AbncCheck | None = None) -> Path:
    """`result_to_dict` as indented, key-sorted JSON, written atomically."""
    text = json.dumps(result_to_dict(result, abnc), indent=1, sort_keys=True) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | Path, factory: Factory | None = None) -> SearchResult:
    return result_from_dict(json.loads(Path(path).read_text(encoding="utf-8")), factory)


# ----------------------------------------------------------------------------- Markdown


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1e4 and float(x).is_integer() else f"{x:.6g}"


def _ratio(x: float | None, digits: str = ".4f") -> str:
    return "not certified" if x is None else format(x, digits)


MAX_VIOLATION_ROWS = 20


def _violation_table(violations: tuple[AssumptionViolation, ...]) -> list[str]:
    """The worst violation of each assumption first, then the rest by need, at most 20 rows."""
    first = worst_per_assumption(violations)
    rest = sorted((v for v in violations if v not in first), key=lambda v: -v.needed)
    rows = ["| assumption | candidates | e | needed | declared |", "|---|---|---|---:|---:|"]
    for v in (first + rest)[:MAX_VIOLATION_ROWS]:
        cands = " <= ".join(f"`{c}`" for c in v.candidates)
        errs = ", ".join(f"{e:.6g}" for e in v.errors)
        rows.append(f"| {v.assumption} | {cands} | {errs} | {v.needed:.4g} | {v.declared:g} |")
    if len(violations) > MAX_VIOLATION_ROWS:
        rows.append(f"| ... | {len(violations) - MAX_VIOLATION_ROWS} more in the JSON | | | |")
    return rows


def _eval_table(evals: tuple[Evaluation, ...], front: set[Any], chosen: Any) -> list[str]:
    rows = ["| rank | candidate | p | i | e | W | Pareto |", "|---:|---|---:|---:|---:|---:|:---:|"]
    ranked = sorted(evals, key=lambda ev: -ev.objective)
    for r, ev in enumerate(ranked, 1):
        mark = "**" if ev.candidate == chosen else ""
        rows.append(
            f"| {r} | {mark}{ev.candidate}{mark} | {_fmt(ev.p)} | {_fmt(ev.i)} | "
            f"{ev.e:.6g} | {ev.objective:.6g} | {'yes' if ev.candidate in front else ''} |"
        )
    return rows


def markdown(
    result: SearchResult,
    abnc: AbncCheck | None = None,
    title: str = "OSE search",
    plots: Mapping[str, str] | None = None,
) -> str:
    """The Markdown report as a string."""
    w, g, ch = result.objective_spec, result.guarantee, result.chosen_evaluation
    front = {ev.candidate for ev in result.pareto_front}
    lines = [
        f"# {title}",
        "",
        f"- method: `{result.method}`; eps = {_fmt(result.eps)}; s = {_fmt(result.s)}",
        f"- e-evaluations: {result.n_evaluations} of {result.n_candidates} candidates "
        f"({100.0 * result.n_evaluations / result.n_candidates:.1f} %); calls to e: "
        f"{result.n_e_calls}; cache hits: {result.n_cache_hits}; trimmed: "
        f"{len(result.trimmed)}; failed: {len(result.failed)}",
        f"- stopped by: {result.stopped_by}; wall time: {result.wall_time_s:.2f} s",
        f"- objective: W = (p_ref/p)^{w.alpha:g} (i_ref/i)^{w.beta:g} "
        f"(e_ref/e)^{w.gamma:g}, p_ref = {_fmt(result.p_ref)}, i_ref = {_fmt(result.i_ref)},"
        f" e_ref = {w.e_ref:g} (maximised)",
        "",
        "## Chosen",
        "",
        f"`{ch.candidate}`: p = {_fmt(ch.p)}, i = {_fmt(ch.i)}, e = {ch.e:.6g}, "
        f"W = {ch.objective:.6g}",
        "",
        "## Guarantee",
        "",
    ]
    if not g.certified:
        lines += [
            "**NOT CERTIFIED**: the e-values violate a declared assumption (below), so no "
            "approximation ratio is claimed.",
            "",
        ]
    lines += [
        g.statement,
        "",
        f"- a-priori ratio: {_ratio(g.ratio)}; certified ratio: "
        f"{_ratio(g.certified_ratio)}; proven upper bound on OPT: "
        f"{_ratio(g.upper_bound_opt, '.6g')}",
    ]
    lines += [f"- assumption {a}" for a in g.assumptions]
    if result.n_cache_rejected:
        lines.append(f"- invalid cached e-values recomputed: {result.n_cache_rejected}")
    if result.parallel > 1:
        lines.append(
            f"- candidate-parallel: up to {result.parallel} evaluations at a time, "
            f"{result.n_rounds} rounds; {result.n_speculative} speculative e-values computed "
            "but not needed (the search's evaluations are those of the sequential search)"
        )
    if result.assumption_violations:
        lines += [
            "",
            f"## Assumption violations ({len(result.assumption_violations)})",
            "",
            "Each row needs the listed value (slack δ for M and C, floor for F, constant "
            "for L) for the assumption to hold on it.",
            "",
        ]
        lines += _violation_table(result.assumption_violations)
    if abnc is not None:
        lines += ["", "## AB^nC check", ""] + abnc.lines()
    lines += ["", "## Pareto front (p, i, e minimised)", ""]
    lines += _eval_table(result.pareto_front, front, result.chosen)
    lines += ["", "## Evaluated candidates", ""]
    lines += _eval_table(result.evaluations, front, result.chosen)
    if result.trimmed:
        lines += [
            "",
            "## Trimmed (never trained; W <= factor x W(by))",
            "",
            "| candidate | by | factor |",
            "|---|---|---:|",
        ]
        lines += [f"| {t} | {b} | {f:.4f} |" for t, b, f in result.trimmed]
    if result.failed:
        lines += ["", "## Failed", ""] + [f"- `{c}`: {m}" for c, m in result.failed]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{k}]({v})" for k, v in plots.items()]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def _scatter(result: SearchResult, attr: str, label: str, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    evs = result.evaluations
    ax.scatter(
        [getattr(ev, attr) for ev in evs], [ev.e for ev in evs], s=18, c="0.6", label="evaluated"
    )
    front = sorted(result.pareto_front, key=lambda ev: getattr(ev, attr))
    ax.scatter(
        [getattr(ev, attr) for ev in front],
        [ev.e for ev in front],
        s=30,
        c="tab:red",
        label="Pareto front (p, i, e)",
    )
    ch = result.chosen_evaluation
    ax.scatter([getattr(ch, attr)], [ch.e], s=160, marker="*", c="tab:blue", label="chosen")
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("error e")
    ax.set_title(f"{result.method}: error vs {label}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


def write_plots(result: SearchResult, out_dir: str | Path, name: str = "fptas") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "plot_params": _scatter(result, "p", "parameters p", out / f"{name}_e_vs_p.png"),
        "plot_latency": _scatter(result, "i", "inference cost i", out / f"{name}_e_vs_i.png"),
    }


def write_report(
    result: SearchResult,
    out_dir: str | Path,
    name: str = "fptas",
    abnc: AbncCheck | None = None,
    title: str | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write ``{name}.md``, ``{name}.json`` and (optionally) two PNG plots into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = write_plots(result, out, name) if plots else {}
    md = markdown(
        result,
        abnc,
        title or f"OSE search ({result.method})",
        {k: v.name for k, v in paths.items()},
    )
    paths["markdown"] = atomic_write_text(out / f"{name}.md", md)
    paths["json"] = write_json(result, out / f"{name}.json", abnc)
    return paths
