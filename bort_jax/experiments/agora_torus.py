"""Agora on a torus: a weak model trained on a small arc, grown by Agora rounds.

Data: points on an annulus (2-D, uniform in area, radii 1..2) or on a ring torus in R^3
(R = 2, r = 0.75, uniform in the angles). The label is the parity of the angular sector,
    y = floor(theta * m / 2 pi) mod 2,   theta = atan2(x_2, x_1) in [0, 2 pi),
with m sectors. The training set is deliberately unrepresentative: n_train points from the
arc theta in [0, 2 pi * arc_fraction). The dev pool is uniform over the whole manifold and
is split (`tasks.loading.split_dev`) into the agora split (Agora's E) and a held-out split
that only the report sees.

Model: a small flax MLP trained through `bort_jax.train.train` on
`bort_jax.data.batching.epoch_batches`. Labeler: the ground-truth function ('oracle') or a
larger MLP trained on plenty of uniform data ('strong').

Rows of the result table (same seed, same per-fit step budget):
  plain            Agora's round 0 = one fit on the arc data;
  plain, long      one fit on the arc data with (rounds + 1) x the steps (Agora's total);
  agora            the best Agora round, selected on the agora split;
  train + agora-dev labels   reference: one fit on the arc data plus the labelled agora
                   split itself (what one could do with E instead of sampling around it).
The last two controls run when `controls` is set.

Workdir: config.json, seed<s>.json per finished seed (a rerun skips those),
seed<s>_round<r>.png per round for the plotted seeds, agora_torus.json / agora_torus.md
(written last).

    python scripts/agora_torus.py --config=configs/agora_torus.py --workdir=runs/torus
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bort_jax import agora, files, train
from bort_jax import experiments as ex
from bort_jax.config import ConfigError, from_config, to_plain
from bort_jax.data import batching
from bort_jax.tasks.loading import assert_disjoint, split_dev
from bort_jax.tasks.metrics import accuracy

TWO_PI = 2.0 * np.pi
NAME = "agora_torus"
LABELERS = ("oracle", "strong")
PLOTS = ("first", "all", "none")


# ------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class TorusData:
    """The manifold, the labels and the unrepresentative training arc."""

    dim: int  # 2: annulus, 3: ring torus in R^3
    sectors: int  # m angular sectors, label = sector parity
    arc_fraction: float  # training arc [0, 2 pi * arc_fraction)
    n_train: int
    n_dev: int  # uniform dev pool, split into agora / held-out
    agora_fraction: float

    def __post_init__(self) -> None:
        if self.dim not in (2, 3):
            raise ValueError(f"data.dim must be 2 or 3, got {self.dim}")
        if not 0.0 < self.arc_fraction <= 1.0:
            raise ValueError(f"data.arc_fraction must be in (0, 1], got {self.arc_fraction}")


@dataclasses.dataclass(frozen=True)
class MLPFit:
    """An MLP and how it is trained (AdamW, cosine decay, no clipping)."""

    hidden: tuple[int, ...]
    num_steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float


@dataclasses.dataclass(frozen=True)
class TorusLabeler:
    """'oracle' (ground truth) or 'strong' (an MLP `fit` on `n` uniform points)."""

    kind: str
    n: int
    fit: MLPFit

    def __post_init__(self) -> None:
        if self.kind not in LABELERS:
            raise ValueError(f"labeler.kind must be one of {LABELERS}, got {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class TorusConfig:
    """One torus experiment (see configs/agora_torus.py for every field)."""

    seeds: str  # comma-separated; each seed redraws data, init and sampling
    plots: str  # PNGs per round: 'first' seed, 'all' seeds or 'none'
    controls: bool  # also the 'plain, long' and reference fits
    data: TorusData
    student: MLPFit
    labeler: TorusLabeler
    agora: dict  # AgoraConfig fields but seed; max_synthetic 0 = no cap

    def __post_init__(self) -> None:
        ex.parse_seeds(self.seeds)
        if self.plots not in PLOTS:
            raise ConfigError(f"config.plots must be one of {PLOTS}, got {self.plots!r}")
        ex.agora_config(self.agora, 0)

    @classmethod
    def from_config(cls, config: Any) -> TorusConfig:
        return from_config(cls, config)


# -------------------------------------------------------------------------------- data


def sector_label(x: Any, sectors: int) -> Any:
    """y = floor(theta m / 2 pi) mod 2 with theta = atan2(x[..., 1], x[..., 0]) mod 2 pi.

    x: [..., dim] (numpy or jax); returns int32 labels [...] of the same array library.
    """
    xp = jnp if isinstance(x, jax.Array) else np
    theta = xp.mod(xp.arctan2(x[..., 1], x[..., 0]), TWO_PI)
    return (xp.floor(theta * sectors / TWO_PI).astype(xp.int32) % 2).astype(xp.int32)


def sample_manifold(
    rng: np.random.Generator, n: int, dim: int, arc: tuple[float, float] = (0.0, TWO_PI)
) -> np.ndarray:
    """n points [n, dim] with theta ~ U(arc): annulus (dim 2) or ring torus (dim 3)."""
    theta = rng.uniform(arc[0], arc[1], n)
    if dim == 2:
        rad = np.sqrt(rng.uniform(1.0, 4.0, n))  # uniform in area, r in [1, 2]
        return np.stack([rad * np.cos(theta), rad * np.sin(theta)], -1).astype(np.float32)
    if dim == 3:
        phi = rng.uniform(0.0, TWO_PI, n)
        ring = 2.0 + 0.75 * np.cos(phi)
        return np.stack(
            [ring * np.cos(theta), ring * np.sin(theta), 0.75 * np.sin(phi)], -1
        ).astype(np.float32)
    raise ValueError(f"dim must be 2 or 3, got {dim}")


def labelled(x: np.ndarray, sectors: int) -> agora.Dataset:
    """{'x': [n, dim] float32, 'label': [n] int32}."""
    return {"x": x, "label": sector_label(x, sectors).astype(np.int32)}


def make_data(cfg: TorusData, seed: int) -> tuple[agora.Dataset, agora.Dataset, agora.Dataset]:
    """(train from the arc, agora split, held-out split) of a uniform dev pool."""
    rng = np.random.default_rng([seed, 17])
    train_set = labelled(
        sample_manifold(rng, cfg.n_train, cfg.dim, (0.0, TWO_PI * cfg.arc_fraction)), cfg.sectors
    )
    dev = labelled(sample_manifold(rng, cfg.n_dev, cfg.dim), cfg.sectors)
    agora_idx, heldout_idx = split_dev(cfg.n_dev, cfg.agora_fraction, seed)
    assert_disjoint(agora_idx, heldout_idx)
    return train_set, batching.take(dev, agora_idx), batching.take(dev, heldout_idx)


# ------------------------------------------------------------------------------- model


class MLP(nn.Module):
    """x [B, dim] -> logits [B, 2]; ReLU hidden layers."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(2)(x)


@functools.lru_cache(maxsize=None)
def _apply_fns(hidden: tuple[int, ...]):
    """(model, logits_fn, loss_fn, jitted predict) of one MLP shape (cached: one compile)."""
    model = MLP(hidden)

    def logits_fn(params, inputs):
        return model.apply({"params": params}, inputs["x"])

    def loss_fn(params, batch, rng):
        logits = logits_fn(params, batch)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return loss, {"accuracy": acc}

    predict = jax.jit(lambda params, x: jnp.argmax(logits_fn(params, {"x": x}), -1))
    return model, logits_fn, loss_fn, predict


def fit_mlp(
    data: Mapping[str, np.ndarray], fit: MLPFit, seed: int, num_steps: int | None = None
) -> Any:
    """Train an MLP from the seed-fixed init with `train.train`; returns its params.

    data: {'x': [n, dim], 'label': [n]} (other keys ignored). Batches are
    `batching.epoch_batches(data, fit.batch_size, seed)` (seeded epochs, stateless).
    """
    hidden = tuple(fit.hidden)
    model, _, loss_fn, _ = _apply_fns(hidden)
    arrays = {"x": np.asarray(data["x"], np.float32), "label": np.asarray(data["label"], np.int32)}
    params = model.init(jax.random.PRNGKey(seed), arrays["x"][:1])["params"]
    steps = num_steps or fit.num_steps
    optim = train.OptimConfig(
        learning_rate=fit.learning_rate,
        schedule="cosine",
        weight_decay=fit.weight_decay,
        clip_norm=None,
    )
    loop = train.LoopConfig(num_steps=steps, seed=seed, log_every=steps, desc="mlp")
    result = train.train(
        loss_fn, params, batching.epoch_batches(arrays, fit.batch_size, seed), loop, optim
    )
    return result.state.params


def predict_mlp(params: Any, inputs: agora.Inputs, hidden: Sequence[int]) -> np.ndarray:
    """Argmax labels [n] of inputs {'x': [n, dim]}."""
    return np.asarray(_apply_fns(tuple(hidden))[3](params, jnp.asarray(inputs["x"])))


def _oracle(inputs: agora.Inputs, sectors: int) -> jax.Array:
    return sector_label(inputs["x"], sectors)


@functools.lru_cache(maxsize=None)
def _oracle_labeler(sectors: int):
    return functools.partial(_oracle, sectors=sectors)


def make_labeler(cfg: TorusConfig, seed: int) -> tuple[Any, float]:
    """(labeler_fn, its accuracy on 4000 fresh uniform points)."""
    if cfg.labeler.kind == "oracle":
        return _oracle_labeler(cfg.data.sectors), 1.0
    rng = np.random.default_rng([seed, 99])
    test = labelled(sample_manifold(rng, 4000, cfg.data.dim), cfg.data.sectors)
    data = labelled(sample_manifold(rng, cfg.labeler.n, cfg.data.dim), cfg.data.sectors)
    params = fit_mlp(data, cfg.labeler.fit, seed + 1000)
    logits_fn = _apply_fns(tuple(cfg.labeler.fit.hidden))[1]
    acc = accuracy(predict_mlp(params, test, cfg.labeler.fit.hidden), test["label"])
    return agora.argmax_labeler(logits_fn, params), acc


# ------------------------------------------------------------------------------- a seed


def run_seed(cfg: TorusConfig, seed: int, plot_dir: Path | None = None) -> dict:
    """All rows of the table for one seed; one PNG per Agora round into `plot_dir` if set.

    Returns: seed, plain, plain_dev, agora, best_round, best_dev, radius, labeler_acc,
    final_train_size, rounds (run_agora's records plus 'heldout_acc'), and with
    `cfg.controls` plain_long and reference; accuracies are shares in [0, 1].
    """
    t0 = time.perf_counter()
    train_set, agora_dev, heldout = make_data(cfg.data, seed)
    acfg = ex.agora_config(cfg.agora, seed)
    labeler_fn, labeler_acc = make_labeler(cfg, seed)
    fit = functools.partial(fit_mlp, fit=cfg.student, seed=seed)
    predict = functools.partial(predict_mlp, hidden=cfg.student.hidden)

    def held(params: Any) -> float:
        return accuracy(predict(params, heldout), heldout["label"])

    rounds: list[dict] = []

    def callback(r: int, params: Any, data: agora.Dataset, record: dict) -> None:
        record["heldout_acc"] = held(params)  # reporting only; selection uses agora-dev
        rounds.append(dict(record))
        if plot_dir is not None:
            plot_round(plot_dir / f"seed{seed}_round{r}.png", params, cfg, data, agora_dev, record)

    result = agora.run_agora(
        train_set,
        agora_dev,
        agora.Learner(fit_fn=lambda data, r, rng: fit(data), predict_fn=predict),
        agora.Generator(
            labeler_fn,
            represent_fn=lambda inputs: np.asarray(inputs["x"]),
            decode_fn=agora.identity_decode("x"),
        ),
        acfg,
        callback=callback,
    )
    out = dict(
        seed=seed,
        plain=rounds[0]["heldout_acc"],
        plain_dev=rounds[0]["agora_dev_metric"],
        agora=held(result.best_state),
        best_round=result.best_round,
        best_dev=result.best_metric,
        radius=result.radius,
        labeler_acc=labeler_acc,
        final_train_size=rounds[result.best_round]["train_size"],
        rounds=rounds,
    )
    if cfg.controls:
        out["plain_long"] = held(
            fit(train_set, num_steps=cfg.student.num_steps * (acfg.rounds + 1))
        )
        out["reference"] = held(fit(batching.concat(train_set, agora_dev)))
    out["seconds"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- report


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Held-out accuracy (%) per seed and mean, one row per method."""
    rows = [
        ("plain (1 fit)", "plain"),
        ("plain, long ((R+1)x steps)", "plain_long"),
        ("Agora (best round on agora-dev)", "agora"),
        ("reference: train + agora-dev labels", "reference"),
    ]
    seeds = [r["seed"] for r in results]
    lines = [
        "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
        "|" + "---|" * (len(seeds) + 2),
    ]
    for name, key in rows:
        if not all(key in r for r in results):
            continue
        vals = [100.0 * r[key] for r in results]
        lines.append(
            f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals) + f" | {np.mean(vals):.1f} |"
        )
    gain = [100.0 * (r["agora"] - r["plain"]) for r in results]
    lines.append(
        "| Agora − plain (points) | "
        + " | ".join(f"{g:+.1f}" for g in gain)
        + f" | {np.mean(gain):+.1f} |"
    )
    return "\n".join(lines)


def rounds_table(result: Mapping[str, Any]) -> str:
    """Per-round history of one seed (the held-out column is reporting only)."""
    lines = [
        "| round | train size | synthetic | agora-dev acc | errors | new points | "
        "labeler agreement | held-out acc |",
        "|" + "---|" * 8,
    ]
    for r in result["rounds"]:
        agree = r["labeler_agreement"]
        lines.append(
            f"| {r['round']}{' *' if r['round'] == result['best_round'] else ''} | "
            f"{r['train_size']} | {r['n_synthetic']} | "
            f"{100 * r['agora_dev_metric']:.1f} | {r['n_errors']} | {r['n_new']} | "
            f"{'nan' if agree != agree else f'{agree:.2f}'} | "
            f"{100 * r['heldout_acc']:.1f} |"
        )
    return "\n".join(lines)


def summarise(results: Sequence[Mapping[str, Any]]) -> dict:
    """Means over seeds of every accuracy row and of the gain (shares, not %)."""
    keys = [
        k for k in ("plain", "plain_long", "agora", "reference") if all(k in r for r in results)
    ]
    out = {f"{k}_mean": float(np.mean([r[k] for r in results])) for k in keys}
    gains = [r["agora"] - r["plain"] for r in results]
    out.update(gain_mean=float(np.mean(gains)), gain_min=float(np.min(gains)))
    return out


def markdown(report: Mapping[str, Any], cfg: TorusConfig) -> str:
    """The report: main table, per-round history of the first seed, wall time."""
    first = report["seeds"][0]
    return (
        "\n\n".join(
            [
                f"# Agora on the torus (dim={cfg.data.dim}, labeler={cfg.labeler.kind})",
                "Held-out accuracy (%), same seed and per-fit step budget:",
                markdown_table(report["seeds"]),
                f"Per-round history, seed {first['seed']} (* = selected on agora-dev; radius "
                f"{first['radius']:.3f}, labeler accuracy {100 * first['labeler_acc']:.1f}%):",
                rounds_table(first),
                f"Wall time: {report['seconds']:.1f} s",
            ]
        )
        + "\n"
    )


def plot_round(
    path: Path,
    params: Any,
    cfg: TorusConfig,
    data: agora.Dataset,
    agora_dev: agora.Dataset,
    record: Mapping[str, Any],
) -> None:
    """Decision regions (2-D) or predicted labels of a point cloud (3-D, x-y projection),
    real and synthetic training points and agora-dev errors; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hidden = cfg.student.hidden
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    cmap = matplotlib.colors.ListedColormap(["#9ecae1", "#fdae6b"])
    if cfg.data.dim == 2:
        g = np.linspace(-2.3, 2.3, 200, dtype=np.float32)
        gx, gy = np.meshgrid(g, g)
        grid = np.stack([gx.ravel(), gy.ravel()], -1)
        pred = predict_mlp(params, {"x": grid}, hidden).reshape(gx.shape)
        ax.contourf(gx, gy, pred, levels=[-0.5, 0.5, 1.5], cmap=cmap, alpha=0.6)
        for rad in (1.0, 2.0):
            ax.add_patch(matplotlib.patches.Circle((0, 0), rad, fill=False, lw=0.8))
    else:
        pred = predict_mlp(params, agora_dev, hidden)
        ax.scatter(agora_dev["x"][:, 0], agora_dev["x"][:, 1], c=pred, cmap=cmap, s=12)
    syn = data["synthetic"]
    ax.scatter(
        data["x"][syn, 0],
        data["x"][syn, 1],
        c=data["label"][syn],
        cmap="coolwarm",
        s=3,
        alpha=0.5,
        label="synthetic",
        vmin=0,
        vmax=1,
    )
    ax.scatter(
        data["x"][~syn, 0],
        data["x"][~syn, 1],
        c=data["label"][~syn],
        cmap="coolwarm",
        s=18,
        edgecolors="k",
        linewidths=0.6,
        label="train (real)",
        vmin=0,
        vmax=1,
    )
    wrong = predict_mlp(params, agora_dev, hidden) != agora_dev["label"]
    ax.scatter(
        agora_dev["x"][wrong, 0],
        agora_dev["x"][wrong, 1],
        marker="x",
        c="k",
        s=14,
        linewidths=0.8,
        label="agora-dev errors",
    )
    ax.set_title(
        f"round {record['round']}: agora-dev {100 * record['agora_dev_metric']:.1f}%,"
        f" held-out {100 * record['heldout_acc']:.1f}%",
        fontsize=9,
    )
    ax.set_aspect("equal")
    ax.set_xlim(-2.6, 2.6)
    ax.set_ylim(-2.6, 2.6)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    files.atomic_write_bytes(path, buffer.getvalue())


# -------------------------------------------------------------------------------- run


def run(config: Any, workdir: str | os.PathLike | None = None) -> dict:
    """Every seed of the torus experiment; resumable in `workdir` (see `bort_jax.experiments`).

    Returns the report: config, seeds (one `run_seed` record each), summary (means over
    seeds), markdown, seconds. With a workdir it is also written to agora_torus.json / .md.
    """
    t0 = time.perf_counter()
    cfg = TorusConfig.from_config(config)
    work = ex.open_workdir(workdir, cfg)
    results = []
    for i, seed in enumerate(ex.parse_seeds(cfg.seeds)):
        plots = cfg.plots == "all" or (cfg.plots == "first" and i == 0)
        results.append(
            ex.stage(
                ex.subdir(work, f"seed{seed}.json"),
                functools.partial(run_seed, cfg, seed, work if plots else None),
            )
        )
        ex.log(
            f"[torus seed {seed}] plain {100 * results[-1]['plain']:.1f}% -> Agora "
            f"{100 * results[-1]['agora']:.1f}% held-out"
        )
    report = ex.jsonable(
        {
            "config": to_plain(cfg),
            "seeds": results,
            "summary": summarise(results),
            "seconds": time.perf_counter() - t0,
        }
    )
    report["markdown"] = markdown(report, cfg)
    ex.write_report(work, NAME, report, report["markdown"])
    return report
