"""The agora_glue experiment's statistics over seeds: means, sample stds, and paired per-seed
differences (Agora minus each baseline on the held-out half) with 95 % t-intervals.

The baselines Agora is paired against are named once, in `BASELINES`: the seed-record key of
the baseline's held-out metric, the summary name (`ci_<name>`, `<name>_mean`), and the column
headings of the report tables.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bort_jax import experiments as ex

# two-sided 95 % quantiles t_{0.975, df} of Student's t, df = 1..30 (beyond: 1.96)
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def paired_interval(differences: list[float]) -> tuple[float, float]:
    """Mean and 95 % t-interval half-width of per-seed paired differences d_s:
    t_{0.975, n-1} * std(d, ddof=1) / sqrt(n); NaN half-width for one seed."""
    d = np.asarray(differences, np.float64)
    if len(d) < 2:
        return (float(d.mean()) if len(d) else float("nan")), float("nan")
    t = _T975[len(d) - 2] if len(d) - 1 <= len(_T975) else 1.96
    return float(d.mean()), float(t * d.std(ddof=1) / np.sqrt(len(d)))


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A baseline Agora is paired against.

    Attributes:
        key: its held-out metric in a seed record.
        name: its summary name: 'ci_<name>' (paired interval), '<name>_mean' / '_std'.
        column: its heading in the single-run report ('− <column>').
        short: its heading in the multi-run table ('arm − <short>').
    """

    key: str
    name: str
    column: str
    short: str

    @property
    def ci(self) -> str:
        """The summary key of the paired interval."""
        return f"ci_{self.name}"


BASELINES = (
    Baseline("plain", "plain", "plain", "plain"),
    Baseline("plain_best_of", "best_of", "best-of-(R+1)", "best of"),
    Baseline("distill", "distill", "distill", "distill"),
    Baseline("budget", "budget", "plain, Agora's steps", "steps"),
)
CONTROLS = BASELINES[1:]  # every baseline but plain itself


def baseline(name: str) -> Baseline:
    """The baseline of a summary name ('plain', 'best_of', 'distill', 'budget')."""
    return next(b for b in BASELINES if b.name == name)


def ran_on_every_seed(b: Baseline, seeds: list[dict]) -> bool:
    """Whether baseline `b` has a result in every seed record."""
    return all(s.get(b.key) is not None for s in seeds)


def paired_intervals(agora_metric: list[float], seeds: list[dict]) -> dict:
    """'ci_<name>': `paired_interval` of agora_metric[s] - seed[key] for every baseline that
    ran on every seed (`BASELINES`)."""
    return {
        b.ci: paired_interval([a - s[b.key] for a, s in zip(agora_metric, seeds)])
        for b in BASELINES
        if ran_on_every_seed(b, seeds)
    }


def summarise_task(seeds: list[dict]) -> dict:
    """Means and sample stds over seeds of plain, Agora, their difference and the controls;
    paired per-seed differences (Agora minus each baseline, held-out half) with 95 %
    t-intervals ('ci_<baseline>': [mean, half-width]); and the selection gap, agora-half
    minus held-out metric of the reported model, for plain and Agora."""
    plain = ex.mean_std([s["plain"] for s in seeds])
    ag = ex.mean_std([s["agora"] for s in seeds])
    delta = ex.mean_std([s["agora"] - s["plain"] for s in seeds])
    out = {
        "plain_mean": plain[0],
        "plain_std": plain[1],
        "agora_mean": ag[0],
        "agora_std": ag[1],
        "delta_mean": delta[0],
        "delta_std": delta[1],
        "wins": sum(s["agora"] > s["plain"] for s in seeds),
        "ties": sum(s["agora"] == s["plain"] for s in seeds),
    }
    out.update(paired_intervals([s["agora"] for s in seeds], seeds))
    for b in CONTROLS:
        if ran_on_every_seed(b, seeds):
            out[f"{b.name}_mean"], out[f"{b.name}_std"] = ex.mean_std([s[b.key] for s in seeds])
    out["gap_plain"] = float(np.mean([s["plain_agora_dev"] - s["plain"] for s in seeds]))
    out["gap_agora"] = float(np.mean([s["agora_agora_dev"] - s["agora"] for s in seeds]))
    if all("arms" in s for s in seeds):
        out["arms"] = {kind: arm_summary(seeds, kind) for kind in seeds[0]["arms"]}
    return out


def arm_summary(seeds: list[dict], kind: str) -> dict:
    """One Agora arm over seeds: held-out mean/std, paired 95 % intervals against plain and
    each control that ran ('ci_<baseline>'), the selection gap, the labeler's agreement with
    the centres' gold labels over every generated point, and the final pool's distinct rows.
    """
    arms = [s["arms"][kind] for s in seeds]
    mean, std = ex.mean_std([a["agora"] for a in arms])
    out = {"agora_mean": mean, "agora_std": std}
    out.update(paired_intervals([a["agora"] for a in arms], seeds))
    out["gap"] = float(np.mean([a["agora_agora_dev"] - a["agora"] for a in arms]))
    new = [(r["n_new"], r["labeler_agreement"]) for a in arms for r in a["history"] if r["n_new"]]
    total = sum(n for n, _ in new)
    out["labeler_agreement"] = sum(n * g for n, g in new) / total if total else float("nan")
    last = [a["history"][-1] for a in arms]
    out["synthetic"] = float(np.mean([r["n_synthetic"] for r in last]))
    out["distinct_synthetic"] = float(np.mean([r.get("distinct_synthetic", 0) for r in last]))
    return out
