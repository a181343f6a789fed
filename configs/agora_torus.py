"""Agora on a torus (`bort_jax.experiments.agora_torus`; docs/agora.md section 4).

  python scripts/agora_torus.py --config=configs/agora_torus.py --workdir=runs/torus
  python scripts/agora_torus.py --config=configs/agora_torus.py:smoke --workdir=runs/torus_smoke
  python scripts/agora_torus.py --config=configs/agora_torus.py --workdir=runs/torus_gauss \
      --config.agora.distribution=gaussian [--config.data.dim=3] [--config.labeler.kind=strong]

Default: the annulus, 64 training points from a quarter arc, 1000 dev points split 30 % agora
/ 70 % held-out, an MLP (32, 32) trained 300 steps per fit, the ground-truth labeler, 4 Agora
rounds, seeds 0-2, with the 'plain, long' and reference controls. `smoke`: seed 0 only, no
controls, no plots (the test's run; same per-seed numbers as the default).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False)
    c = ml_collections.ConfigDict()
    c.seeds = "0,1,2"  # comma-separated
    c.plots = "first"  # PNG per round: first | all | none (seeds)
    c.controls = True  # also 'plain, long' and 'train + agora-dev labels'
    c.data = ml_collections.ConfigDict(
        dict(
            dim=2,  # 2: annulus 1 <= |x| <= 2; 3: ring torus in R^3
            sectors=6,  # label = parity of the angular sector
            arc_fraction=0.25,  # training points from theta in [0, 2 pi * 0.25)
            n_train=64,
            n_dev=1000,
            agora_fraction=0.3,
        )
    )
    c.student = ml_collections.ConfigDict(
        dict(hidden=(32, 32), num_steps=300, batch_size=64, learning_rate=1e-2, weight_decay=1e-4)
    )
    c.labeler = ml_collections.ConfigDict(
        dict(
            kind="oracle",  # oracle (ground truth) | strong (the MLP below)
            n=4000,  # uniform training points of the strong labeler
            fit=dict(
                hidden=(128, 128),
                num_steps=1500,
                batch_size=256,
                learning_rate=3e-3,
                weight_decay=1e-4,
            ),
        )
    )
    c.agora = ml_collections.ConfigDict(
        dict(
            rounds=4,
            samples_per_error=8,
            distribution="uniform_ball",
            radius=1.0,  # x mean nearest-neighbour distance (radius_mode nn_mean)
            radius_mode="nn_mean",
            atom_ndim=1,
            replay_fraction=1.0,
            max_synthetic=0,  # 0 = no cap
            patience=2,
            chunk_size=256,
            nn_max_points=2048,
        )
    )
    if arg.smoke:
        c.seeds, c.plots, c.controls = "0", "none", False
    return c
