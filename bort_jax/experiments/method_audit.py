"""Search methods side by side on instances whose every e-value is known (docs/search_methods.md).

Does the certified FPTAS (`search.fptas`) beat random search at the same budget, and what does
the published interval algorithm (`search.interval`) pick on the same instance? For each
instance:

  1. the table: e(ξ) for every candidate, by an exhaustive run (`fptas.exhaustive`). For a
     synthetic instance (`search.synthetic`) e is a formula; for the real instance it is the
     extraction's proxy error read from (and, for missing candidates, written to) the
     extraction's on-disk candidate cache — as `scripts/audit_fptas.py` does. Auditing every
     method against the optimum needs every candidate's e: that is what exhaustive costs;
  2. every method runs on the table (e = a lookup, counted per run): `fptas` at each ε of
     `fptas_eps`, `interval_search` at each integer ε of `interval_eps`, `random_search` at
     the budgets the other methods used, one run per seed of `seeds`, ranked by each W;
  3. per run: W(pick)/OPT under the project's W-coefficient (the instance's objective) and
     under the published W (T = (max p, max i)), proxy evaluations, the search's own wall
     time and, on the real instance, the proxy-training seconds its evaluations cost
     (`train_seconds` stored with each cached candidate); for fptas and interval also the
     budget at which random search's exact expected best reaches the method's W
     (`random_search.budget_to_match`) and the probability that random search with the
     method's budget does at least as well (`random_search.prob_reach`); for random search
     the exact expected W/OPT besides the seeds' mean and minimum.

Each instance is one stage (`instances/<name>.json`), so a killed audit resumes per instance;
the real instance's e-values resume through the extraction's cache. report.md and report.json
are written last.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from bort_jax.config import ConfigError
from bort_jax.experiments import log, open_workdir, parse_list, parse_seeds, stage, write_report
from bort_jax.extract_config import ExtractConfig
from bort_jax.search import fptas as F
from bort_jax.search import random_search as R
from bort_jax.search import synthetic
from bort_jax.search.evaluator import candidate_key
from bort_jax.search.interval import IntervalOptions, interval_search, max_point, published_w

SYNTHETIC = ("chain", "toy_mlp", "bert_like", "bert_like_noise")


@dataclasses.dataclass(frozen=True)
class Instance:
    """A search problem plus how each method is run on it."""

    name: str
    candidates: Any  # SearchSpace or sequence
    p: Callable
    i: Callable
    e: Callable  # the (expensive) error; called once per candidate by the table's exhaustive
    objective: F.WCoefficient
    assumptions: F.Assumptions  # what the FPTAS may assume on this instance
    options: F.SearchOptions = F.SearchOptions()  # order, cache; shared by every method
    cache: Any = None
    seconds: Callable[[Any], float | None] | None = None  # proxy seconds of one candidate


@dataclasses.dataclass(frozen=True)
class Plan:
    instances: tuple[str, ...]
    fptas_eps: tuple[float, ...]
    interval_eps: tuple[int, ...]
    seeds: tuple[int, ...]
    extraction_workdir: str


def validate(config: Any) -> Plan:
    """Named errors before any work."""
    names = tuple(parse_list(config.instances))
    unknown = sorted(set(names) - set(SYNTHETIC) - {"real"})
    if not names or unknown:
        raise ConfigError(
            f"config.instances={config.instances!r}: unknown {unknown}; valid: "
            f"{', '.join(SYNTHETIC)}, real"
        )
    try:
        eps = tuple(parse_list(config.fptas_eps, float))
        ints = tuple(parse_list(config.interval_eps, int))
    except ValueError as e:
        raise ConfigError(f"config.fptas_eps / interval_eps: {e}") from e
    for x in eps:
        F.validate_eps(x)
    if any(k < 1 for k in ints):
        raise ConfigError(f"config.interval_eps={config.interval_eps!r}: integers >= 1")
    seeds = tuple(parse_seeds(config.seeds))
    if len(seeds) < 5:
        raise ConfigError(f"config.seeds={config.seeds!r}: give at least 5 seeds")
    workdir = str(config.get("extraction_workdir", ""))
    if "real" in names and not workdir:
        raise ConfigError("instance 'real' needs config.extraction_workdir (an extraction's)")
    return Plan(names, eps, ints, seeds, workdir)


def synthetic_instance(name: str) -> Instance:
    """The synthetic instances of `search.audit.synthetic_rows`, with the same objectives."""
    make = {
        "chain": (synthetic.chain_instance, {}, (1, 1, 4)),
        "toy_mlp": (synthetic.toy_mlp_instance, {}, (0.5, 0.5, 4)),
        "bert_like": (synthetic.bert_like_instance, {}, (0.5, 0.5, 4)),
        "bert_like_noise": (synthetic.bert_like_instance, {"noise": 0.02}, (0.5, 0.5, 4)),
    }
    fn, kwargs, w = make[name]
    inst = fn(**kwargs)
    return Instance(
        name,
        inst.candidates,
        inst.p,
        inst.i,
        inst.e.fn,
        F.WCoefficient(*w),
        F.Assumptions(inst.noise, convex_in=inst.log_capacity),
        F.SearchOptions(leq=inst.leq),
    )


def real_instance(extract_config: Any, workdir: str) -> Instance:
    """The extraction's instance: its grid, p, i and cached proxy error (bort_jax.extract)."""
    from bort_jax import extract, sharding

    config = ExtractConfig.from_config(extract_config)
    prob = extract.build_problem(config, workdir)

    def e(c: Any) -> float:  # missing candidates train as in the extraction
        with sharding.use_mesh(config.mesh):
            return prob.e(c)

    def seconds(c: Any) -> float | None:
        value = prob.cache.metrics.get(candidate_key(c), {}).get("train_seconds")
        return None if value is None else float(value)

    return Instance(
        f"real ({Path(prob.source.path).name}, {len(prob.space.candidates())} candidates)",
        prob.space,
        prob.p,
        prob.i,
        e,
        config.objective.coefficient(),
        extract.assumptions(config),
        cache=prob.cache,
        seconds=seconds,
    )


def _table(inst: Instance) -> dict[str, Any]:
    """Every candidate's p, i, e and both W values (exhaustive over the instance)."""
    options = dataclasses.replace(inst.options, cache=inst.cache)
    full = F.exhaustive(
        inst.candidates, inst.p, inst.i, inst.e, objective=inst.objective, options=options
    )
    if full.failed:
        raise RuntimeError(f"{inst.name}: e failed for {len(full.failed)} candidates")
    evs = full.evaluations
    P = [ev.p for ev in evs]
    I = [ev.i for ev in evs]
    p_t, i_t = max_point(P, I)
    return {
        "cands": [ev.candidate for ev in evs],
        "P": P,
        "I": I,
        "E": [ev.e for ev in evs],
        "proj": [ev.objective for ev in evs],
        "pub": [published_w(ev.p, ev.i, ev.e, p_t, i_t) for ev in evs],
        "reference": (p_t, i_t),
        "seconds": full.wall_time_s,
    }


class _Lookup:
    """e from the table, counting distinct candidates asked for."""

    def __init__(self, table: Mapping[Any, float]):
        self.table, self.asked = table, set()

    def __call__(self, c: Any, theta: Any = None) -> float:
        self.asked.add(c)
        return self.table[c]


def _ratio(w: float, values: Sequence[float]) -> float | None:
    """W / OPT over the table; None when OPT is 0 (every published W is 0: each candidate
    shares T's p or i, e.g. when i does not vary over the grid)."""
    best = max(values)
    return w / best if best > 0 else None


def _proxy_seconds(inst: Instance, cands: Any) -> float | None:
    """Proxy-training seconds of ``cands`` (the cached train_seconds; None if unknown)."""
    if inst.seconds is None:
        return None
    secs = [inst.seconds(c) for c in cands]
    return None if any(s is None for s in secs) else float(sum(secs))


def _row(
    method: str,
    setting: str,
    res: F.SearchResult,
    t: dict,
    lookup: _Lookup,
    inst: Instance,
    wall: float,
) -> dict[str, Any]:
    k = t["cands"].index(res.chosen)
    w_proj, w_pub = t["proj"][k], t["pub"][k]
    n = res.n_evaluations
    proxy = _proxy_seconds(inst, lookup.asked)
    row = {
        "method": method,
        "setting": setting,
        "evaluations": n,
        "chosen": str(res.chosen),
        "w_proj_ratio": _ratio(w_proj, t["proj"]),
        "w_pub_ratio": _ratio(w_pub, t["pub"]),
        "search_seconds": wall,
        "proxy_seconds": proxy,
    }
    if method in ("fptas", "interval"):
        for key, w in (("proj", w_proj), ("pub", w_pub)):
            known = max(t[key]) > 0  # else every W of this kind is 0: nothing to match
            row[f"random_budget_to_match_{key}"] = R.budget_to_match(t[key], w) if known else None
            row[f"random_prob_at_least_{key}"] = R.prob_reach(t[key], n, w) if known else None
            row[f"random_expected_draws_{key}"] = (
                R.expected_draws_to_reach(t[key], w) if known else None
            )
    return row


def audit_instance(inst: Instance, plan: Plan) -> dict[str, Any]:
    """The table and every method's rows for one instance."""
    t0 = time.perf_counter()
    t = _table(inst)
    lookup_table = dict(zip(t["cands"], t["E"]))
    n = len(t["cands"])
    rows = []
    opt_k = int(np.argmax(t["proj"]))
    rows.append(
        {
            "method": "exhaustive",
            "setting": "",
            "evaluations": n,
            "chosen": str(t["cands"][opt_k]),
            "w_proj_ratio": 1.0,
            "w_pub_ratio": _ratio(t["pub"][opt_k], t["pub"]),
            "search_seconds": t["seconds"],  # includes training any cache misses (real)
            "proxy_seconds": _proxy_seconds(inst, t["cands"]),
        }
    )
    budgets = set()
    for eps in plan.fptas_eps:
        lk = _Lookup(lookup_table)
        start = time.perf_counter()
        res = F.fptas(
            inst.candidates,
            inst.p,
            inst.i,
            lk,
            eps,
            objective=inst.objective,
            assumptions=inst.assumptions,
            options=inst.options,
        )
        rows.append(_row("fptas", f"ε={eps:g}", res, t, lk, inst, time.perf_counter() - start))
        budgets.add(res.n_evaluations)
    for k in plan.interval_eps:
        if k > n:
            continue
        lk = _Lookup(lookup_table)
        start = time.perf_counter()
        try:
            res = interval_search(
                inst.candidates,
                inst.p,
                inst.i,
                lk,
                IntervalOptions(eps=k, objective=inst.objective),
            )
        except ValueError as err:  # no pick below T: every published W is 0
            rows.append(_empty_row("interval", f"ε={k}", str(err)))
            continue
        rows.append(_row("interval", f"ε={k}", res, t, lk, inst, time.perf_counter() - start))
        budgets.add(res.n_evaluations)
    for b in sorted(budgets):
        rows += _random_rows(inst, t, lookup_table, b, plan.seeds)
    return {
        "instance": inst.name,
        "n_candidates": n,
        "objective": dataclasses.asdict(inst.objective),
        "reference": list(t["reference"]),
        "optimum_proj": str(t["cands"][opt_k]),
        "optimum_pub": str(t["cands"][int(np.argmax(t["pub"]))]) if max(t["pub"]) > 0 else None,
        "rows": rows,
        "seconds": time.perf_counter() - t0,
    }


def _empty_row(method: str, setting: str, note: str) -> dict[str, Any]:
    """A method that could not run on the instance (the reason in ``note``)."""
    return {
        "method": method,
        "setting": setting,
        "evaluations": 0,
        "chosen": None,
        "w_proj_ratio": None,
        "w_pub_ratio": None,
        "search_seconds": None,
        "proxy_seconds": None,
        "note": note,
    }


def _random_rows(
    inst: Instance, t: dict, table: Mapping, n: int, seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """Random search at budget n: the seeds' runs (ranked by each W) and the exact expectation."""
    out = []
    for ranked_by, key, published in (("project W", "proj", False), ("published W", "pub", True)):
        ratios, walls, proxies = [], [], []
        for seed in seeds:
            lk = _Lookup(table)
            start = time.perf_counter()
            res = R.random_search(
                inst.candidates,
                inst.p,
                inst.i,
                lk,
                R.RandomOptions(n=n, seed=seed, objective=inst.objective, published=published),
            )
            row = _row("random", "", res, t, lk, inst, time.perf_counter() - start)
            ratios.append(row[f"w_{key}_ratio"])
            walls.append(row["search_seconds"])
            proxies.append(row["proxy_seconds"])
        exact = _ratio(R.expected_best(t[key], n), t[key])
        out.append(
            {
                "method": "random",
                "setting": f"n={n}, ranked by {ranked_by}, {len(seeds)} seeds",
                "evaluations": n,
                "objective": key,
                "exact_expected_ratio": exact,
                "seeds_mean_ratio": None if exact is None else float(np.mean(ratios)),
                "seeds_min_ratio": None if exact is None else float(np.min(ratios)),
                "search_seconds": float(np.mean(walls)),
                "proxy_seconds": None if None in proxies else float(np.mean(proxies)),
            }
        )
    return out


def run(config: Any, workdir: str | None = None) -> dict[str, Any]:
    """The audit; resumable per instance in `workdir` (report.md / report.json written last)."""
    plan = validate(config)
    root = open_workdir(workdir, config)
    results = []
    for name in plan.instances:
        path = None if root is None else root / "instances" / f"{name}.json"

        def compute(name=name) -> dict[str, Any]:
            log(f"method audit: {name}")
            inst = (
                real_instance(config.extract, plan.extraction_workdir)
                if name == "real"
                else synthetic_instance(name)
            )
            return audit_instance(inst, plan)

        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        results.append(stage(path, compute))
    report = {"instances": results}
    write_report(root, "report", report, markdown(report))
    return report


def _fmt(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return format(x, spec) if isinstance(x, float) else str(x)


def markdown(report: Mapping[str, Any]) -> str:
    """Per instance: one table of the methods, W/OPT under both objectives."""
    lines = ["# Search methods against exhaustive search", ""]
    for res in report["instances"]:
        w = res["objective"]
        lines += [
            f"## {res['instance']}",
            "",
            f"{res['n_candidates']} candidates; project W = (p_ref/p)^{w['alpha']:g} "
            f"(i_ref/i)^{w['beta']:g} (e_ref/e)^{w['gamma']:g}, optimum {res['optimum_proj']}; "
            f"published W with T = ({res['reference'][0]:.6g}, {res['reference'][1]:.6g}), "
            + (
                f"optimum {res['optimum_pub']}."
                if res["optimum_pub"] is not None
                else "0 for every candidate (each shares T's p or i): no published optimum."
            ),
            "",
            "| method | setting | proxy evals | W/OPT (project W) | W/OPT (published W) | "
            "random n for same E[W] (project / published) | P(random@n ≥ it) (project / "
            "published) | search s | proxy-training s | pick |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in res["rows"]:
            if r["method"] == "random":
                ratio = (
                    f"E {_fmt(r['exact_expected_ratio'])}; seeds mean "
                    f"{_fmt(r['seeds_mean_ratio'])}, min {_fmt(r['seeds_min_ratio'])}"
                )
                cells = (ratio, "–") if r["objective"] == "proj" else ("–", ratio)
                lines.append(
                    f"| random | {r['setting']} | {r['evaluations']} | {cells[0]} | {cells[1]} |"
                    f" – | – | {_fmt(r['search_seconds'], '.3g')} | "
                    f"{_fmt(r['proxy_seconds'], '.1f')} | – |"
                )
                continue
            match = (
                f"{_fmt(r.get('random_budget_to_match_proj'))} / "
                f"{_fmt(r.get('random_budget_to_match_pub'))}"
            )
            prob = (
                f"{_fmt(r.get('random_prob_at_least_proj'), '.2f')} / "
                f"{_fmt(r.get('random_prob_at_least_pub'), '.2f')}"
            )
            if r["method"] == "exhaustive":
                match = prob = "–"
            pick = f"`{r['chosen']}`" if r["chosen"] is not None else r.get("note", "–")
            lines.append(
                f"| {r['method']} | {r['setting']} | {r['evaluations']} | "
                f"{_fmt(r['w_proj_ratio'])} | {_fmt(r['w_pub_ratio'])} | {match} | {prob} | "
                f"{_fmt(r['search_seconds'], '.3g')} | {_fmt(r['proxy_seconds'], '.1f')} | "
                f"{pick} |"
            )
        lines.append("")
    lines += [
        "W/OPT: the pick's W over the instance's largest W, each W over the whole table. "
        "fptas maximises the project W, interval the published W; random rows give the exact "
        "expectation over all draws and the seeds' mean and minimum, ranked by that column's "
        "W. 'random n for same E[W]': the smallest budget at which random search's expected "
        "best reaches the method's W ('–': not even n = |Ξ|). 'P(random@n ≥ it)': chance that "
        "random search with the method's budget finds a W at least as large. '–' in a W/OPT "
        "column: that W is 0 for every candidate.",
        "",
    ]
    return "\n".join(lines)
