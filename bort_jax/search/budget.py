"""Proxy-training budget T(ε, s): a smaller ε trains every candidate longer (Eq. R).

The FPTAS's runtime (arXiv 2010.08512, Eq. R in `fptas`) is
    O(|Ξ| + |W*_T| (1 + |Θ||B||Ξ| / (ε s^{3/2}))),
so the work spent per proxy training grows as 1 / (ε s^{3/2}): precision is bought with longer
training, not with more candidates. `step_budget` is that share, T = ⌈κ / (ε s^{3/2})⌉;
this module says where κ comes from and resolves the number of steps a config trains with.

A config states the budget either directly (κ) or, more readably, as a reference point
"steps_ref steps at (eps_ref, s_ref)", i.e. κ = steps_ref · eps_ref · s_ref^{3/2}
(`kappa_for`). With 40 steps at ε = 0.1, s = 1: ε = 0.05 gives 80, ε = 0.2 gives 20,
ε = 0.4 gives 10. `mode="fixed"` keeps the config's `proxy.num_steps` for every ε (the behaviour
before this module).

Binary rounding. 3 · 0.1 = 0.30000000000000004, so ⌈κ/ε⌉ at the reference itself would be 4,
not 3; and 4.0 / 0.05 is not exactly 80 either. κ is therefore shrunk by a relative 1e-9 before
the ceiling (`_ROUNDING`, applied in `step_budget` only): a ratio that is an integer in exact
arithmetic stays that integer, any other ratio is at least ~1e-9 away from one and rounds up as
Eq. R says.

The resolved T changes e(ξ), so it must be part of the key of cached errors: `resolve_config`
returns a copy of an extraction config whose `proxy.num_steps` is the resolved T (and whose
budget is `fixed`, so resolving twice is harmless); hashing that copy keys the candidate cache.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from bort_jax.config import ConfigError
from bort_jax.search.options import validate_eps

MODES = ("fixed", "eps")
_ROUNDING = 1e-9  # relative shrink of κ against binary rounding (module docstring)
C = TypeVar("C")


def step_budget(
    eps: float, s: float, kappa: float, *, min_steps: int = 1, max_steps: int | None = None
) -> int:
    """Proxy-training steps per candidate, T(ε, s) = ⌈κ / (ε s^{3/2})⌉, clipped [reconstructed].

    It is the per-training share of Eq. R's second term (total work / (|Θ||Ξ| trainings ·
    |B||W*_T| per step)). κ is problem-specific; calibrate it with `kappa_for`.
    """
    eps = validate_eps(eps)
    if not s > 0:
        raise ValueError(f"s must be > 0, got {s!r}")
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0, got {kappa!r}")
    steps = max(min_steps, math.ceil(kappa * (1 - _ROUNDING) / (eps * s**1.5)))
    return steps if max_steps is None else min(steps, max_steps)


def kappa_for(steps: int, eps: float, s: float) -> float:
    """Inverse of `step_budget`: the κ that gives ``steps`` at (ε, s), κ = T·ε·s^{3/2}."""
    return float(steps) * validate_eps(eps) * s**1.5


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class ProxyBudget:
    """How many proxy-training steps a candidate gets at (ε, s) (config section `proxy_budget`).

    mode: 'fixed' (the config's proxy.num_steps for every ε) | 'eps' (T = ⌈κ / (ε s^{3/2})⌉).
    kappa: κ of T; 0 = from the reference point below. Give one of kappa and steps_ref.
    steps_ref, eps_ref, s_ref: the reference point "steps_ref steps at (eps_ref, s_ref)".
    min_steps, max_steps: T is clipped to [min_steps, max_steps]; max_steps 0 = no cap.
    """

    mode: str = "fixed"
    kappa: float = 0.0
    steps_ref: int = 0
    eps_ref: float = 0.1
    s_ref: float = 1.0
    min_steps: int = 1
    max_steps: int = 0

    def __post_init__(self) -> None:
        where = "proxy_budget"
        if self.mode not in MODES:
            raise ConfigError(f"{where}.mode={self.mode!r}; use one of {MODES}")
        if not _is_number(self.kappa) or not self.kappa >= 0:
            raise ConfigError(f"{where}.kappa must be a number >= 0, got {self.kappa!r}")
        if not _is_int(self.steps_ref) or self.steps_ref < 0:
            raise ConfigError(f"{where}.steps_ref must be an int >= 0, got {self.steps_ref!r}")
        if not _is_number(self.eps_ref) or not 0 < self.eps_ref < 1:
            raise ConfigError(f"{where}.eps_ref must lie in (0, 1), got {self.eps_ref!r}")
        if not _is_number(self.s_ref) or not self.s_ref > 0:
            raise ConfigError(f"{where}.s_ref must be > 0, got {self.s_ref!r}")
        if not _is_int(self.min_steps) or self.min_steps < 1:
            raise ConfigError(f"{where}.min_steps must be an int >= 1, got {self.min_steps!r}")
        if not _is_int(self.max_steps) or (self.max_steps and self.max_steps < self.min_steps):
            raise ConfigError(
                f"{where}.max_steps must be 0 (no cap) or an int >= min_steps="
                f"{self.min_steps}, got {self.max_steps!r}"
            )
        if self.mode == "eps" and (self.kappa > 0) == (self.steps_ref > 0):
            raise ConfigError(
                f"{where}: mode 'eps' needs exactly one of {where}.kappa > 0 or "
                f"{where}.steps_ref > 0 (got kappa={self.kappa!r}, steps_ref={self.steps_ref!r})"
            )

    def resolved_kappa(self) -> float:
        """κ of Eq. R's step share: `kappa`, or steps_ref · eps_ref · s_ref^{3/2}."""
        if self.kappa > 0:
            return float(self.kappa)
        return kappa_for(self.steps_ref, self.eps_ref, self.s_ref)


def resolve_steps(budget: ProxyBudget, eps: float, s: float, steps: int | None = None) -> int:
    """Proxy-training steps per candidate at (ε, s).

    Args:
      budget: the budget; mode 'fixed' returns `steps`.
      eps: the search's ε in (0, 1).
      s: the search's interval size s > 0.
      steps: the config's proxy.num_steps (needed, and returned, in mode 'fixed').

    Returns:
      'eps': clip(⌈κ / (ε s^{3/2})⌉, min_steps, max_steps) (`step_budget`).

    Raises:
      ValueError naming the field (eps, s, proxy.num_steps) for a bad value.
    """
    if isinstance(eps, bool) or not _is_number(eps) or not 0 < eps < 1:
        raise ValueError(f"eps must lie in the open interval (0, 1), got {eps!r}")
    if isinstance(s, bool) or not _is_number(s) or not s > 0:
        raise ValueError(f"s must be > 0, got {s!r}")
    if budget.mode == "fixed":
        if not _is_int(steps) or steps < 1:
            raise ValueError(
                f"proxy.num_steps must be a positive int in mode 'fixed', got {steps!r}"
            )
        return steps
    return step_budget(
        eps,
        s,
        budget.resolved_kappa(),
        min_steps=budget.min_steps,
        max_steps=budget.max_steps or None,
    )


def resolve_config(config: C) -> C:
    """Copy of an `ExtractConfig` with proxy.num_steps = T(config.eps, config.s).

    The copy's `proxy_budget.mode` is 'fixed' (resolving it again changes nothing). Hash the
    copy (`extract.config_hash`, whose keys include `proxy`) so that e-values trained for
    different T never share a cache entry, while a 'fixed' config and an 'eps' config that
    resolve to the same T do.
    """
    budget = config.proxy_budget
    steps = resolve_steps(budget, config.eps, config.s, config.proxy.num_steps)
    return dataclasses.replace(
        config,
        proxy=dataclasses.replace(config.proxy, num_steps=steps),
        proxy_budget=dataclasses.replace(budget, mode="fixed"),
    )
