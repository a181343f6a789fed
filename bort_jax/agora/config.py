"""Hyperparameters of Agora's rounds and of its sampling step (`AgoraConfig`)."""

from __future__ import annotations

import dataclasses
from typing import Optional

DISTRIBUTIONS = ("uniform_ball", "gaussian")
RADIUS_MODES = ("nn_mean", "absolute")


@dataclasses.dataclass(frozen=True)
class AgoraConfig:
    """Hyperparameters of `run_agora` / `sample_and_relabel`.

    Attributes:
        rounds: Agora rounds R after the plain round 0 (at most R + 1 fits).
        samples_per_error: k, synthetic samples drawn around each misclassified point.
        distribution: 'uniform_ball' (uniform in B(0, r) per atom) or 'gaussian'
            (N(0, r^2 / a I_a) per atom, E||delta||^2 = r^2).
        radius: r itself ('absolute') or the multiplier of the mean nearest-neighbour
            distance of the training atoms ('nn_mean').
        radius_mode: 'nn_mean' or 'absolute'.
        atom_ndim: trailing representation axes perturbed as one vector (1 for both [n, d]
            vectors and [n, L, E] token sequences).
        replay_fraction: share in [0, 1] of earlier synthetic points kept each round.
        max_synthetic: cap on the synthetic pool (None: no cap).
        patience: stop after this many rounds without agora-dev improvement (0: never).
        seed: all randomness of Agora (sampling, replay subsets, radius subsample).
        chunk_size: misclassified points per jitted call (bounds memory; no effect on results).
        nn_max_points: atoms used to estimate the nearest-neighbour scale.
    """

    rounds: int = 5
    samples_per_error: int = 8
    distribution: str = "uniform_ball"
    radius: float = 1.0
    radius_mode: str = "nn_mean"
    atom_ndim: int = 1
    replay_fraction: float = 1.0
    max_synthetic: Optional[int] = None
    patience: int = 2
    seed: int = 0
    chunk_size: int = 256
    nn_max_points: int = 2048

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise ValueError(f"AgoraConfig.rounds must be >= 0, got {self.rounds}")
        if self.samples_per_error < 1:
            raise ValueError(
                f"AgoraConfig.samples_per_error must be >= 1, got {self.samples_per_error}"
            )
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"AgoraConfig.distribution={self.distribution!r} not in {DISTRIBUTIONS}"
            )
        if self.radius_mode not in RADIUS_MODES:
            raise ValueError(f"AgoraConfig.radius_mode={self.radius_mode!r} not in {RADIUS_MODES}")
        if not self.radius > 0:
            raise ValueError(f"AgoraConfig.radius must be > 0, got {self.radius}")
        if self.atom_ndim < 1:
            raise ValueError(f"AgoraConfig.atom_ndim must be >= 1, got {self.atom_ndim}")
        if not 0.0 <= self.replay_fraction <= 1.0:
            raise ValueError(
                f"AgoraConfig.replay_fraction must be in [0, 1], got {self.replay_fraction}"
            )
        if self.max_synthetic is not None and self.max_synthetic < 1:
            raise ValueError(
                f"AgoraConfig.max_synthetic must be >= 1 or None, got {self.max_synthetic}"
            )
        if self.patience < 0:
            raise ValueError(f"AgoraConfig.patience must be >= 0, got {self.patience}")
        if self.chunk_size < 1 or self.nn_max_points < 2:
            raise ValueError("AgoraConfig.chunk_size must be >= 1 and nn_max_points >= 2")

    def with_radius(self, radius: float) -> AgoraConfig:
        """This config with the absolute radius r = `radius` (radius_mode 'absolute'): what
        `sample_and_relabel` draws with, once r has been resolved (`resolve_radius`)."""
        return dataclasses.replace(self, radius=float(radius), radius_mode="absolute")
