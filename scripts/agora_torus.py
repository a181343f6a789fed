"""Agora on a torus: a weak model trained on a small arc, grown by Agora rounds.

Data: points on an annulus (2-D, uniform in area, radii 1..2) or on a ring torus in R^3
(R = 2, r = 0.75, uniform in the angles). The label is the parity of the angular sector,
    y = floor(theta * m / 2 pi) mod 2,   theta = atan2(x_2, x_1) in [0, 2 pi),
with m sectors. The training set is deliberately unrepresentative: n_train points from the
arc theta in [0, 2 pi * arc_fraction). The dev pool is uniform over the whole manifold and
is split (`bort_jax.agora.split_dev`) into the agora split (Agora's E) and a held-out split
that only the report sees.

Model: a small flax MLP trained through `bort_jax.train.train`. Labeler: the ground-truth
function ('oracle') or a larger MLP trained on plenty of uniform data ('strong').

Rows of the result table (same seed, same per-fit step budget):
  plain            round 0 = one fit on the arc data;
  plain, long      one fit on the arc data with (rounds + 1) x the steps (Agora's total);
  agora            the best Agora round, selected on the agora split;
  train + agora-dev labels   reference: one fit on the arc data plus the labelled agora
                   split itself (what one could do with E instead of sampling around it).

    python scripts/agora_torus.py --out_dir runs/torus
"""
from __future__ import annotations

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs importable


import argparse
import dataclasses
import functools
import os
import sys
import time
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bort_jax import agora, train  # noqa: E402

TWO_PI = 2.0 * np.pi


@dataclasses.dataclass(frozen=True)
class TorusConfig:
    """Everything that defines one demo run (besides the seed)."""

    dim: int = 2                 # 2: annulus, 3: ring torus in R^3
    sectors: int = 6             # m angular sectors, label = sector parity
    arc_fraction: float = 0.25   # training arc [0, 2 pi * arc_fraction)
    n_train: int = 64
    n_dev: int = 1000
    agora_fraction: float = 0.3
    hidden: tuple[int, ...] = (32, 32)
    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 1e-2
    labeler: str = "oracle"      # oracle | strong
    strong_hidden: tuple[int, ...] = (128, 128)
    strong_steps: int = 1500
    strong_n: int = 4000


# ------------------------------------------------------------------------------ data


def sector_label(x: Any, sectors: int) -> Any:
    """y = floor(theta m / 2 pi) mod 2 with theta = atan2(x[..., 1], x[..., 0]) mod 2 pi.

    x: [..., dim] (numpy or jax); returns int labels [...] of the same array library.
    """
    xp = jnp if isinstance(x, jax.Array) else np
    theta = xp.mod(xp.arctan2(x[..., 1], x[..., 0]), TWO_PI)
    return (xp.floor(theta * sectors / TWO_PI).astype(xp.int32) % 2).astype(xp.int32)


def sample_manifold(rng: np.random.Generator, n: int, dim: int,
                    arc: tuple[float, float] = (0.0, TWO_PI)) -> np.ndarray:
    """n points [n, dim] with theta ~ U(arc): annulus (dim 2) or ring torus (dim 3)."""
    theta = rng.uniform(arc[0], arc[1], n)
    if dim == 2:
        rad = np.sqrt(rng.uniform(1.0, 4.0, n))              # uniform in area, r in [1, 2]
        return np.stack([rad * np.cos(theta), rad * np.sin(theta)], -1).astype(np.float32)
    if dim == 3:
        phi = rng.uniform(0.0, TWO_PI, n)
        ring = 2.0 + 0.75 * np.cos(phi)
        return np.stack([ring * np.cos(theta), ring * np.sin(theta), 0.75 * np.sin(phi)],
                        -1).astype(np.float32)
    raise ValueError(f"dim must be 2 or 3, got {dim}")


def labelled(x: np.ndarray, sectors: int) -> agora.Dataset:
    return {"x": x, "label": sector_label(x, sectors).astype(np.int32)}


def make_data(cfg: TorusConfig, seed: int) -> tuple[agora.Dataset, agora.Dataset, agora.Dataset]:
    """(train from the arc, agora split, held-out split) of a uniform dev pool."""
    rng = np.random.default_rng([seed, 17])
    train_set = labelled(sample_manifold(rng, cfg.n_train, cfg.dim,
                                         (0.0, TWO_PI * cfg.arc_fraction)), cfg.sectors)
    dev = labelled(sample_manifold(rng, cfg.n_dev, cfg.dim), cfg.sectors)
    agora_idx, heldout_idx = agora.split_dev(cfg.n_dev, cfg.agora_fraction, seed)
    agora.assert_disjoint(agora_idx, heldout_idx)
    return train_set, agora.take(dev, agora_idx), agora.take(dev, heldout_idx)


# ----------------------------------------------------------------------------- model


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


def fit_mlp(data: agora.Dataset, hidden: tuple[int, ...], steps: int, batch_size: int,
            learning_rate: float, seed: int) -> Any:
    """Train an MLP from a seed-fixed init with `bort_jax.train.train`; returns params.

    Batches are uniform draws (with replacement) from all rows, a pure function of
    (seed, step).
    """
    model, _, loss_fn, _ = _apply_fns(tuple(hidden))
    x, y = np.asarray(data["x"], np.float32), np.asarray(data["label"], np.int32)
    params = model.init(jax.random.PRNGKey(seed), x[:1])["params"]
    tx = train.make_optimizer(train.OptimConfig(
        learning_rate=learning_rate, total_steps=steps, schedule="cosine",
        weight_decay=1e-4, clip_norm=None))

    def batch_fn(step: int) -> dict:
        idx = np.random.default_rng([seed, step]).integers(0, len(y), batch_size)
        return {"x": x[idx], "label": y[idx]}

    result = train.train(loss_fn, params, tx, batch_fn, steps, seed=seed, log_every=steps)
    return result.state.params


def predict_mlp(params: Any, inputs: agora.Inputs, hidden: tuple[int, ...]) -> np.ndarray:
    return np.asarray(_apply_fns(tuple(hidden))[3](params, jnp.asarray(inputs["x"])))


def make_labeler(cfg: TorusConfig, seed: int) -> tuple[Any, float]:
    """(labeler_fn, its accuracy on 4000 fresh uniform points)."""
    rng = np.random.default_rng([seed, 99])
    test = labelled(sample_manifold(rng, 4000, cfg.dim), cfg.sectors)
    if cfg.labeler == "oracle":
        return _oracle_labeler(cfg.sectors), 1.0
    if cfg.labeler != "strong":
        raise ValueError(f"labeler must be 'oracle' or 'strong', got {cfg.labeler!r}")
    data = labelled(sample_manifold(rng, cfg.strong_n, cfg.dim), cfg.sectors)
    params = fit_mlp(data, cfg.strong_hidden, cfg.strong_steps, 256, 3e-3, seed + 1000)
    logits_fn = _apply_fns(tuple(cfg.strong_hidden))[1]
    acc = agora.accuracy(predict_mlp(params, test, cfg.strong_hidden), test["label"])
    return agora.argmax_labeler(logits_fn, params), acc


def _oracle(inputs: agora.Inputs, sectors: int) -> jax.Array:
    return sector_label(inputs["x"], sectors)


@functools.lru_cache(maxsize=None)
def _oracle_labeler(sectors: int):
    return functools.partial(_oracle, sectors=sectors)


# ------------------------------------------------------------------------------ runs


def run_seed(cfg: TorusConfig, acfg: agora.AgoraConfig, seed: int,
             out_dir: Optional[str] = None, extras: bool = True) -> dict:
    """All rows of the table for one seed; PNGs per Agora round when out_dir is set.

    `extras=False` skips the 'plain, long' and reference fits (for tests).
    """
    train_set, agora_dev, heldout = make_data(cfg, seed)
    acfg = dataclasses.replace(acfg, seed=seed)
    labeler_fn, labeler_acc = make_labeler(cfg, seed)
    fit = functools.partial(fit_mlp, hidden=cfg.hidden, batch_size=cfg.batch_size,
                            learning_rate=cfg.learning_rate, seed=seed)
    predict = functools.partial(predict_mlp, hidden=cfg.hidden)

    def held(params) -> float:
        return agora.accuracy(predict(params, heldout), heldout["label"])

    per_round: list[dict] = []

    def callback(r: int, params: Any, data: agora.Dataset, record: dict) -> None:
        record["heldout_acc"] = held(params)       # reporting only; selection uses agora-dev
        per_round.append(dict(record))
        if out_dir:
            plot_round(os.path.join(out_dir, f"seed{seed}_round{r}.png"), params, cfg, data,
                       agora_dev, record)

    plain = fit(train_set, steps=cfg.steps)
    out = dict(seed=seed, plain=held(plain),
               plain_dev=agora.accuracy(predict(plain, agora_dev), agora_dev["label"]))
    if extras:
        out["plain_long"] = held(fit(train_set, steps=cfg.steps * (acfg.rounds + 1)))
        out["reference"] = held(fit(agora.concat(train_set, agora_dev), steps=cfg.steps))
    result = agora.run_agora(
        train_set, agora_dev,
        fit_fn=lambda data, r, rng: fit(data, steps=cfg.steps),
        predict_fn=predict, represent_fn=lambda inputs: np.asarray(inputs["x"]),
        decode_fn=agora.identity_decode("x"), labeler_fn=labeler_fn, cfg=acfg,
        callback=callback)
    out.update(agora=held(result.best_state), best_round=result.best_round,
               best_dev=result.best_metric, radius=result.radius, labeler_acc=labeler_acc,
               final_train_size=result.history[result.best_round]["train_size"],
               rounds=per_round)
    return out


# --------------------------------------------------------------------------- reports


def markdown_table(results: Sequence[dict]) -> str:
    """Held-out accuracy (%) per seed and mean, one row per method."""
    rows = [("plain (1 fit)", "plain"), ("plain, long ((R+1)x steps)", "plain_long"),
            ("Agora (best round on agora-dev)", "agora"),
            ("reference: train + agora-dev labels", "reference")]
    seeds = [r["seed"] for r in results]
    head = "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |"
    lines = [head, "|" + "---|" * (len(seeds) + 2)]
    for name, key in rows:
        vals = [100.0 * r[key] for r in results]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals)
                     + f" | {np.mean(vals):.1f} |")
    gain = [100.0 * (r["agora"] - r["plain"]) for r in results]
    lines.append("| Agora - plain (points) | " + " | ".join(f"{g:+.1f}" for g in gain)
                 + f" | {np.mean(gain):+.1f} |")
    return "\n".join(lines)


def rounds_table(result: dict) -> str:
    """Per-round history of one seed (held-out column is reporting only)."""
    lines = ["| round | train size | synthetic | agora-dev acc | errors | new points | "
             "labeler agreement | held-out acc |", "|" + "---|" * 8]
    for r in result["rounds"]:
        lines.append(f"| {r['round']}{' *' if r['round'] == result['best_round'] else ''} | "
                     f"{r['train_size']} | {r['n_synthetic']} | "
                     f"{100 * r['agora_dev_metric']:.1f} | {r['n_errors']} | {r['n_new']} | "
                     f"{r['labeler_agreement']:.2f} | {100 * r['heldout_acc']:.1f} |")
    return "\n".join(lines)


def plot_round(path: str, params: Any, cfg: TorusConfig, data: agora.Dataset,
               agora_dev: agora.Dataset, record: dict) -> None:
    """Decision regions (2-D) or predicted labels of a point cloud (3-D, x-y projection)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    cmap = matplotlib.colors.ListedColormap(["#9ecae1", "#fdae6b"])
    if cfg.dim == 2:
        g = np.linspace(-2.3, 2.3, 200, dtype=np.float32)
        gx, gy = np.meshgrid(g, g)
        grid = np.stack([gx.ravel(), gy.ravel()], -1)
        pred = predict_mlp(params, {"x": grid}, cfg.hidden).reshape(gx.shape)
        ax.contourf(gx, gy, pred, levels=[-0.5, 0.5, 1.5], cmap=cmap, alpha=0.6)
        for rad in (1.0, 2.0):
            ax.add_patch(matplotlib.patches.Circle((0, 0), rad, fill=False, lw=0.8))
    else:
        pred = predict_mlp(params, agora_dev, cfg.hidden)
        ax.scatter(agora_dev["x"][:, 0], agora_dev["x"][:, 1], c=pred, cmap=cmap, s=12)
    syn = data["synthetic"]
    ax.scatter(data["x"][syn, 0], data["x"][syn, 1], c=data["label"][syn], cmap="coolwarm",
               s=3, alpha=0.5, label="synthetic", vmin=0, vmax=1)
    ax.scatter(data["x"][~syn, 0], data["x"][~syn, 1], c=data["label"][~syn],
               cmap="coolwarm", s=18, edgecolors="k", linewidths=0.6, label="train (real)",
               vmin=0, vmax=1)
    wrong = predict_mlp(params, agora_dev, cfg.hidden) != agora_dev["label"]
    ax.scatter(agora_dev["x"][wrong, 0], agora_dev["x"][wrong, 1], marker="x", c="k", s=14,
               linewidths=0.8, label="agora-dev errors")
    ax.set_title(f"round {record['round']}: agora-dev {100 * record['agora_dev_metric']:.1f}%,"
                 f" held-out {100 * record['heldout_acc']:.1f}%", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-2.6, 2.6)
    ax.set_ylim(-2.6, 2.6)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------ main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out_dir", default="runs/torus")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--dim", type=int, default=2, choices=(2, 3))
    p.add_argument("--labeler", default="oracle", choices=("oracle", "strong"))
    p.add_argument("--steps", type=int, default=TorusConfig.steps)
    p.add_argument("--n_train", type=int, default=TorusConfig.n_train)
    p.add_argument("--arc_fraction", type=float, default=TorusConfig.arc_fraction)
    p.add_argument("--n_dev", type=int, default=TorusConfig.n_dev)
    p.add_argument("--agora_fraction", type=float, default=TorusConfig.agora_fraction)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--samples_per_error", type=int, default=8)
    p.add_argument("--radius", type=float, default=1.0)
    p.add_argument("--radius_mode", default="nn_mean", choices=agora.RADIUS_MODES)
    p.add_argument("--distribution", default="uniform_ball", choices=agora.DISTRIBUTIONS)
    p.add_argument("--replay_fraction", type=float, default=1.0)
    p.add_argument("--max_synthetic", type=int, default=None)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--plots", default="first", choices=("first", "all", "none"),
                   help="PNGs per round for the first seed, every seed, or none")
    return p.parse_args(argv)


def configs(args: argparse.Namespace) -> tuple[TorusConfig, agora.AgoraConfig]:
    tcfg = TorusConfig(dim=args.dim, labeler=args.labeler, steps=args.steps,
                       n_train=args.n_train, arc_fraction=args.arc_fraction,
                       n_dev=args.n_dev, agora_fraction=args.agora_fraction)
    acfg = agora.AgoraConfig(rounds=args.rounds, samples_per_error=args.samples_per_error,
                             radius=args.radius, radius_mode=args.radius_mode,
                             distribution=args.distribution,
                             replay_fraction=args.replay_fraction,
                             max_synthetic=args.max_synthetic, patience=args.patience)
    return tcfg, acfg


def main(argv: Optional[Sequence[str]] = None) -> str:
    args = parse_args(argv)
    tcfg, acfg = configs(args)
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.perf_counter()
    results = []
    for i, seed in enumerate(int(s) for s in args.seeds.split(",")):
        plots = args.plots == "all" or (args.plots == "first" and i == 0)
        results.append(run_seed(tcfg, acfg, seed, args.out_dir if plots else None))
    cmd = "python scripts/agora_torus.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = "\n\n".join(
        [f"# Agora on the torus (dim={tcfg.dim}, labeler={tcfg.labeler})",
         f"Command: `{cmd.strip()}`",
         "Held-out accuracy (%), same seed and per-fit step budget:",
         markdown_table(results),
         f"Per-round history, seed {results[0]['seed']} (* = selected on agora-dev; "
         f"radius {results[0]['radius']:.3f}, labeler accuracy "
         f"{100 * results[0]['labeler_acc']:.1f}%):",
         rounds_table(results[0]),
         f"Wall time: {time.perf_counter() - t0:.1f} s"])
    print(report)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(report + "\n")
    return report


if __name__ == "__main__":
    main()
