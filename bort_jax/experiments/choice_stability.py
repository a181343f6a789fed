"""A choice that holds: does the extraction pick the same shape over seeds and over T and 2T?

The FPTAS of arXiv 2010.08512 promises W(pick) ≥ (1 − ε)·OPT for the e-table it searched, i.e.
for the e(ξ) of one proxy run (one data sample, one batch order, T steps). This study asks what
that promise is worth once the run changes. For every seed s of `seeds` and for T =
`proxy.num_steps` of the extraction (after its `proxy_budget`) and 2T, every candidate of the
grid (configs/default.py: 24 candidates sliced from all-MiniLM-L6-v2) is proxy-trained once, so
each of the |seeds| × 2 settings (s, T) has a full e-table. Per setting the report gives:

  * the exhaustive W-argmax of Eq. W on that table (i = analytic FLOPs, so nothing measured on
    a busy machine enters W), and the FPTAS pick at the extraction's ε with its evaluations
    (a lookup on the table, as in `eps_budget`);

and over all settings:

  * the modal pick and in how many settings it is chosen (also for the argmax);
  * the cross-setting table R[a][b] = W_b(pick_a) / OPT_b: setting a's pick judged by setting
    b's e. The diagonal is what the FPTAS guarantees (≥ 1 − ε when certified); the worst
    off-diagonal entry is what ε promises across seeds and T, printed next to it in one
    sentence (`promise`), with the worst entry across seeds at equal T and across T at equal
    seed.

What a seed moves. Seed s sets both `data_seed` and `proxy.seed` of the extraction:

  * `data_seed` permutes the 640 packed sequences into training and held-out rows
    (`text.split_train_heldout`), so the held-out split that e is measured on moves with it,
    as do the static MLM masks of both parts (`distill.static_mask`) and, with
    `head_init='fitted'`, the MLM head fitted on the training rows (`proxy.head.seed` stays);
  * `proxy.seed` sets the order of the training batches (`distill.train_batches`) and the
    random init; with the default `init_method='slice'` and `proj_init='slice'` every weight
    is sliced from the source, so in practice it is the batch order.

Seed 0 at T is the default extraction's run: the same config (data_seed 0, proxy.seed 0) and
the same `proxy.proxy_error` call, so its e-table equals the e an extraction
(`python scripts/extract.py`, any `inference`) caches for the candidates it evaluates, and its
FPTAS pick is that extraction's choice when `inference='flops'`
(tests/test_choice_stability.py checks both on the smoke grid).

Every (seed, T, candidate) is one resumable stage `seed<s>/e/T<T>/<candidate>.json`
(`eps_budget.train_one`: error, every held-out metric, seconds). Settings run seed by seed, T
before 2T; the report (choice_stability.json / .md) is rewritten after every finished setting,
so a stopped run reports the settings that are complete. Deterministic for a given config; only
fields named `seconds` are wall-clock.

    python scripts/choice_stability.py --workdir=runs/choice_stability
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bort_jax import experiments as ex
from bort_jax import extract
from bort_jax.config import ConfigError, from_config
from bort_jax.experiments import eps_budget as eb
from bort_jax.extract_config import ExtractConfig
from bort_jax.search import budget
from bort_jax.search.objective import WCoefficient

NAME = "choice_stability"
TOL = 1e-12  # relative: W ratios equal to 1 − ε up to rounding count as meeting it


@dataclasses.dataclass(frozen=True)
class ChoiceStabilityConfig:
    """The study (configs/choice_stability.py names every field)."""

    seeds: str  # comma-separated; seed s sets extraction.data_seed and extraction.proxy.seed
    extraction: ExtractConfig  # configs/default.py with inference='flops'

    def __post_init__(self) -> None:
        ex.parse_seeds(self.seeds)
        if self.extraction.inference != "flops":
            raise ConfigError(
                "config.extraction.inference must be 'flops' (W free of latency noise), "
                f"got {self.extraction.inference!r}"
            )

    @classmethod
    def from_config(cls, config: Any) -> ChoiceStabilityConfig:
        return from_config(cls, config)


def seeded(extraction: ExtractConfig, seed: int) -> ExtractConfig:
    """The extraction of seed `seed` (data_seed = proxy.seed = seed), its proxy budget resolved
    (so proxy.num_steps is the T an extraction of it trains)."""
    proxy = dataclasses.replace(extraction.proxy, seed=seed)
    return budget.resolve_config(dataclasses.replace(extraction, data_seed=seed, proxy=proxy))


def settings(cfg: ChoiceStabilityConfig) -> list[tuple[int, int]]:
    """(seed, steps) in run order: every seed at T, then 2T."""
    t = seeded(cfg.extraction, 0).proxy.num_steps
    return [(s, steps) for s in ex.parse_seeds(cfg.seeds) for steps in (t, 2 * t)]


def label(setting: tuple[int, int]) -> str:
    return f"s{setting[0]}/T{setting[1]}"


def stage_path(workdir: Path | None, seed: int, steps: int, arch: Any) -> Path | None:
    return eb.stage_path(ex.subdir(workdir, f"seed{seed}"), steps, arch)


# ------------------------------------------------------------------------------ analysis


def modal(picks: Sequence[str]) -> tuple[str, int]:
    """The most frequent pick and its count; a tie goes to the one picked first."""
    return max(collections.Counter(picks).items(), key=lambda kv: kv[1])


def cross_table(w: np.ndarray, picks: Sequence[int]) -> np.ndarray:
    """R[a, b] = W_b(pick_a) / max W_b for W [settings, candidates] and picks [settings]."""
    w = np.asarray(w, np.float64)
    return w[:, picks].T / w.max(axis=1)[None, :]


def _worst(r: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[float, tuple[int, int]] | None:
    if not pairs:
        return None
    a, b = min(pairs, key=lambda ab: r[ab])
    return float(r[a, b]), (a, b)


def promise(
    eps: float, setting_list: Sequence[tuple[int, int]], r: np.ndarray, certified: Sequence[bool]
) -> dict:
    """What ε promises, from the cross table R of the FPTAS picks (see `cross_table`).

    On its own run: W(pick) ≥ (1 − ε)·OPT, i.e. R[a, a] ≥ 1 − ε (when certified). Across runs:
    min over a ≠ b of R[a, b]; also restricted to equal T (other seed) and equal seed (other T).
    """
    n = len(setting_list)
    bound = 1.0 - eps
    diag = [float(r[a, a]) for a in range(n)]
    met = sum(d >= bound * (1 - TOL) for d in diag)
    off = [(a, b) for a in range(n) for b in range(n) if a != b]
    same_t = [(a, b) for a, b in off if setting_list[a][1] == setting_list[b][1]]
    same_s = [(a, b) for a, b in off if setting_list[a][0] == setting_list[b][0]]
    worst, worst_seed, worst_t = _worst(r, off), _worst(r, same_t), _worst(r, same_s)
    out = {
        "eps": eps,
        "bound": bound,
        "diagonal_min": min(diag) if diag else float("nan"),
        "met": met,
        "certified": int(sum(certified)),
        "settings": n,
    }
    names = [label(s) for s in setting_list]
    for key, w in (("cross", worst), ("cross_seed", worst_seed), ("cross_steps", worst_t)):
        out[f"{key}_min"] = None if w is None else w[0]
        out[f"{key}_pair"] = None if w is None else [names[w[1][0]], names[w[1][1]]]
    text = (
        f"ε = {eps:g} promises W(pick) ≥ {bound:.3f}·OPT against the e of the run that made the "
        f"pick: it holds in {met} of {n} settings (worst {out['diagonal_min']:.3f}; "
        f"{out['certified']} of {n} certified)."
    )
    if worst is None:
        text += " No second complete setting yet to judge a pick across seeds or T."
    else:
        (a, b), v = worst[1], worst[0]
        text += (
            f" Across seeds and T the promise is the worst cross-setting ratio, {v:.3f}·OPT "
            f"({names[a]}'s pick judged by {names[b]}'s e): a loss of {1 - v:.3f} = "
            f"{(1 - v) / eps:.1f} ε"
        )
        parts = [
            f"{what} {w[0]:.3f}"
            for what, w in (("across seeds at equal T", worst_seed), ("across T", worst_t))
            if w is not None
        ]
        text += f" ({'; '.join(parts)})." if parts else "."
    out["sentence"] = text
    return out


def compare(
    setting_list: Sequence[tuple[int, int]],
    names: Sequence[str],
    p: Sequence[float],
    i: Sequence[float],
    objective: WCoefficient,
    errors: Sequence[Sequence[float]],
    picks: Sequence[str],
    eps: float,
    certified: Sequence[bool] | None = None,
) -> dict:
    """Choices over settings: argmax, modal picks, cross table, promise.

    Args:
      setting_list: (seed, steps) of each setting [n].
      names, p, i: the candidates and their costs [m].
      objective: Eq. W's coefficient (`eps_budget.w_values`, references max p and max i).
      errors: the e-table of each setting [n][m], in the order of `names`.
      picks: the FPTAS pick of each setting [n] (a name).
      certified: whether each pick's guarantee was certified [n] (None = all).
    Returns:
      {'argmax': [n], 'modal': {...}, 'cross': R [n][n] (`cross_table`), 'promise': {...}}.
    """
    w = np.array([eb.w_values(objective, p, i, e) for e in errors])
    argmax = [names[eb.top_k(row, 1)[0]] for row in w]
    r = cross_table(w, [list(names).index(x) for x in picks])
    shape, count = modal(picks)
    top, top_count = modal(argmax)
    certified = [True] * len(picks) if certified is None else list(certified)
    return {
        "argmax": argmax,
        "modal": {
            "fptas": shape,
            "fptas_count": count,
            "argmax": top,
            "argmax_count": top_count,
            "settings": len(picks),
        },
        "cross": r.tolist(),
        "promise": promise(eps, setting_list, r, certified),
    }


def analyse(
    cfg: ChoiceStabilityConfig,
    prob: extract.Problem,
    records: Mapping[tuple[int, int], Mapping[str, Mapping[str, Any]]],
) -> dict:
    """The report from the stage records {(seed, steps): {candidate: record}} so far."""
    config = seeded(cfg.extraction, 0)
    cands = list(prob.space.candidates())
    names = [str(a) for a in cands]
    p = [prob.p(a) for a in cands]
    i = [prob.i(a) for a in cands]
    done = [s for s in settings(cfg) if all(n in records.get(s, {}) for n in names)]
    rows, errors = [], []
    for s in done:
        e = eb.table(records[s], eb.ERROR, names)
        result = eb.search_table(prob, config, config.eps, dict(zip(names, e)))
        evaluated = [str(ev.candidate) for ev in result.evaluations]
        errors.append(e)
        rows.append(
            {
                "seed": s[0],
                "steps": s[1],
                "label": label(s),
                "e": e,
                "fptas": {
                    "chosen": str(result.chosen),
                    "evaluations": result.n_evaluations,
                    "candidates": result.n_candidates,
                    "certified": result.guarantee.certified,
                    "stopped_by": result.stopped_by,
                },
                "seconds": {
                    "all": sum(records[s][n]["seconds"]["train"] for n in names),
                    "fptas": sum(records[s][n]["seconds"]["train"] for n in evaluated),
                },
            }
        )
    report = {
        "candidates": names,
        "p": p,
        "i": i,
        "i_source": "analytic FLOPs (config.extraction.inference='flops')",
        "eps": config.eps,
        "seeds": ex.parse_seeds(cfg.seeds),
        "steps": sorted({t for _, t in settings(cfg)}),
        "settings_done": [label(s) for s in done],
        "complete": len(done) == len(settings(cfg)),
        "rows": rows,
    }
    if rows:
        picks = [r["fptas"]["chosen"] for r in rows]
        certified = [r["fptas"]["certified"] for r in rows]
        objective = config.objective.coefficient()
        got = compare(done, names, p, i, objective, errors, picks, config.eps, certified)
        for row, top, diag in zip(rows, got["argmax"], np.diag(np.array(got["cross"]))):
            row["argmax"], row["fptas"]["ratio"] = top, float(diag)
        report.update(modal=got["modal"], cross=got["cross"], promise=got["promise"])
    return report


def markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown: settings, modal picks, cross table, the promise sentence."""
    rows, n = report["rows"], len(report["candidates"])
    head = (
        f"{n} candidates; ε = {report['eps']:g}; seeds {report['seeds']} × T {report['steps']}; "
        f"settings done: {len(rows)}{'' if report['complete'] else ' (incomplete run)'}; "
        f"i = {report['i_source']}.\n\n"
    )
    if not rows:
        return head + "No setting is complete yet.\n"
    lines = [
        "| setting | W-argmax | FPTAS pick | W(pick)/OPT | evals | certified | train s, all "
        "| train s, FPTAS |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ] + [
        f"| {r['label']} | {r['argmax']} | {r['fptas']['chosen']} | {r['fptas']['ratio']:.3f} "
        f"| {r['fptas']['evaluations']}/{r['fptas']['candidates']} "
        f"| {'yes' if r['fptas']['certified'] else 'no'} | {r['seconds']['all']:.0f} "
        f"| {r['seconds']['fptas']:.0f} |"
        for r in rows
    ]
    m = report["modal"]
    modal_text = (
        f"Modal FPTAS pick: **{m['fptas']}**, chosen in {m['fptas_count']} of {m['settings']} "
        f"settings (modal W-argmax: {m['argmax']}, {m['argmax_count']} of {m['settings']}).\n"
    )
    labels = [r["label"] for r in rows]
    cross = [
        "| pick of ↓ / judged by → | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ] + [
        f"| {a} ({r['fptas']['chosen']}) | " + " | ".join(f"{v:.3f}" for v in vals) + " |"
        for a, r, vals in zip(labels, rows, report["cross"])
    ]
    return (
        head
        + "\n".join(lines)
        + "\n\n"
        + modal_text
        + "\nW_b(pick_a) / OPT_b (row a's FPTAS pick judged by column b's e):\n\n"
        + "\n".join(cross)
        + "\n\n"
        + report["promise"]["sentence"]
        + "\n"
    )


# ---------------------------------------------------------------------------------- run


def run(config: Any, workdir: str | None = None, train: bool = True) -> dict:
    """Train every candidate for every (seed, T), then analyse (see module docstring).

    `train=False` (`summarise`) only analyses the stage files `workdir` already holds.
    Returns the report dict, with its Markdown under 'markdown'.
    """
    cfg = ChoiceStabilityConfig.from_config(config)
    if not train and not (workdir and (Path(workdir) / ex.CONFIG_FILE).is_file()):
        raise FileNotFoundError(f"{workdir}: no {NAME} run to summarise ({ex.CONFIG_FILE})")
    path = ex.open_workdir(workdir, config)
    with tempfile.TemporaryDirectory() as tmp:
        root = str(tmp if path is None else path / "extract")  # shared: caches key by content
        seeds = ex.parse_seeds(cfg.seeds)
        # the first seed's problem also gives the grid, p and i (no seed enters them); any
        # other seed's is built when one of its stages must train, one at a time
        base = extract.build_problem(seeded(cfg.extraction, seeds[0]), root)
        other: dict[int, extract.Problem] = {}

        def problem(seed: int) -> extract.Problem:
            if seed == seeds[0]:
                return base
            if seed not in other:
                other.clear()
                other[seed] = extract.build_problem(seeded(cfg.extraction, seed), root)
            return other[seed]

        cands = list(base.space.candidates())
        records: dict[tuple[int, int], dict[str, dict]] = {}
        report: dict = {}
        todo = settings(cfg)
        for s in todo:
            seed, steps = s
            records[s] = {}
            for k, a in enumerate(cands):
                where = stage_path(path, seed, steps, a)
                if where is not None and where.is_file():
                    records[s][str(a)] = json.loads(where.read_text())
                    continue
                if not train:
                    continue
                ex.log(f"[{NAME}] {label(s)} candidate {k + 1}/{len(cands)} {a}")
                pcfg = seeded(cfg.extraction, seed).proxy
                train_it = functools.partial(eb.train_one, problem(seed), pcfg, a, steps)
                records[s][str(a)] = ex.stage(where, train_it)
            if train or s == todo[-1]:
                report = analyse(cfg, base, records)
                report["markdown"] = markdown(report)
                ex.write_report(path, NAME, report, report["markdown"])
    return report


def summarise(config: Any, workdir: str) -> dict:
    """The report of the stage files `workdir` holds so far, without training anything."""
    return run(config, workdir, train=False)
