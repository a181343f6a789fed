"""The typed configuration of one extraction (`extract.extract`, `plan.plan`).

configs/default.py and configs/bert_large.py name every field; `ExtractConfig.from_config`
builds it through `bort_jax.config.from_config`, so an unknown key (`--config.proxy.stpes`) is
an error naming its dotted path, and each default lives here only.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from bort_jax import proxy
from bort_jax.config import ConfigError, from_config
from bort_jax.search.budget import ProxyBudget
from bort_jax.search.objective import WCoefficient
from bort_jax.search.space import GridConfig
from bort_jax.sharding import MeshConfig

METHODS = ("fptas", "exhaustive")
INFERENCE = ("measured", "flops")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Exponents of the W-coefficient (Eq. W) and its reference error.

    e_ref: 0 = the chosen candidate's e, so the reported W(chosen) = (p_ref/p)^α (i_ref/i)^β is
      of order one; > 0 = that constant. The choice does not depend on it (W ∝ e_ref^γ).
    """

    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 1.0
    e_ref: float = 0.0

    def __post_init__(self) -> None:
        if not self.e_ref >= 0:
            raise ConfigError(f"objective.e_ref must be >= 0 (0 = chosen's e), got {self.e_ref}")
        self.coefficient()  # named errors for alpha, beta, gamma

    def coefficient(self) -> WCoefficient:
        """The W-coefficient the search runs with (e_ref 1 when normalised afterwards)."""
        return WCoefficient(self.alpha, self.beta, self.gamma, self.e_ref or 1.0)


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """One extraction: source, grid Ξ, search (ε, s), p/i/e definitions, data and resources.

    Checkpoints: `source_dir` ('' = installed all-MiniLM-L6-v2) defines the family whose
    sub-architectures are searched; `teacher_dir` ('' = the source) supervises proxy training.
    `*_family` give their shapes for a cost plan made before they are downloaded.
    i(ξ): `inference` 'measured' = a latency model fitted once to `latency_points` measured
    shapes of `latency_batch` × `latency_seq_len` tokens (`latency_repeats` timed runs each),
    stored at `latency_model` ('' = in the workdir) | 'flops' = analytic FLOPs.
    `compilation_cache`: JAX persistent cache directory, relative = inside the workdir,
    '' = off; $JAX_COMPILATION_CACHE_DIR wins when set.
    """

    source_dir: str = ""
    teacher_dir: str = ""
    require_source: bool = False
    source_family: str = ""
    teacher_family: str = ""
    grid: GridConfig = GridConfig()
    method: str = "fptas"
    eps: float = 0.1
    s: int = 1
    objective: ObjectiveConfig = ObjectiveConfig()
    monotonicity_slack: float = 0.0
    convex: bool = False
    max_evaluations: int = 0  # 0 = no budget
    inference: str = "measured"
    latency_batch: int = 1
    latency_seq_len: int = 128
    latency_repeats: int = 5
    latency_points: int = 8
    latency_model: str = ""
    corpus: str = "embedded"
    max_seq_len: int = 32
    max_sequences: int = 640
    heldout_fraction: float = 0.1
    data_seed: int = 0
    proxy: proxy.ProxyConfig = proxy.ProxyConfig()
    proxy_budget: ProxyBudget = ProxyBudget()
    progress: bool = True
    mesh: MeshConfig = MeshConfig()
    parallel: int = 1
    compilation_cache: str = "jax_cache"
    plan: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.eps < 1:
            raise ConfigError(f"config.eps={self.eps} must lie in (0, 1)")
        if self.s < 1:
            raise ConfigError(f"config.s={self.s} must be >= 1")
        if self.method not in METHODS:
            raise ConfigError(f"config.method={self.method!r}; use 'fptas' or 'exhaustive'")
        if self.inference not in INFERENCE:
            raise ConfigError(f"config.inference={self.inference!r}; use 'measured' or 'flops'")
        if self.inference == "measured" and self.latency_points < 2:
            raise ConfigError(
                f"config.latency_points={self.latency_points} must be >= 2 (the "
                "latency model is fitted to that many measured shapes)"
            )
        if not isinstance(self.compilation_cache, str):
            raise ConfigError(
                f"config.compilation_cache must be a directory path ('' = off), "
                f"got {self.compilation_cache!r}"
            )

    @classmethod
    def from_config(cls, config: Any) -> ExtractConfig:
        """From a ConfigDict / mapping (or an `ExtractConfig`, returned as is)."""
        return from_config(cls, config)

    def compilation_cache_dir(self, workdir: str) -> str | None:
        """The persistent-cache directory of a run in `workdir` (None = off)."""
        if not self.compilation_cache:
            return None
        return os.path.join(workdir, self.compilation_cache)
