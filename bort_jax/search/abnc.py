"""The AB^nC check (de Wynter, arXiv 2010.08512): condition 1 of the AB^nC property.

A network is A·B^n·C: an input block A (embeddings), n repeated blocks B (encoder layers) and an
output block C (head). Condition 1: A and C are cheaper than one B in parameters and FLOPs,

    p(A) < p(B),  f(A) < f(B),  p(C) < p(B),  f(C) < f(B).

Conditions 2-3 (L-smooth objective, bounded stochastic gradients, SGD) and strong convexity
concern training and cannot be read off costs; the check states them as assumptions.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class BlockCost:
    """Parameter count and FLOPs of one block of an AB^nC network."""

    params: float
    flops: float


@dataclasses.dataclass(frozen=True)
class AbncCheck:
    """Condition 1 of the AB^nC property: A and C cheaper than one B, in parameters and FLOPs."""

    first: BlockCost
    middle: BlockCost
    last: BlockCost
    n_middle: int | None
    cheaper: Mapping[str, bool]
    ratios: Mapping[str, float]
    holds: bool
    guarantee: str

    def lines(self) -> list[str]:
        """Human-readable lines (used by the Markdown report)."""
        out = [
            f"- A (first): params={self.first.params:,.0f} flops={self.first.flops:,.0f}",
            f"- B (one middle): params={self.middle.params:,.0f} flops={self.middle.flops:,.0f}",
            f"- C (last): params={self.last.params:,.0f} flops={self.last.flops:,.0f}",
        ]
        out += [
            f"- {k}: {'yes' if v else 'NO'} (ratio {self.ratios[k]:.3g})"
            for k, v in self.cheaper.items()
        ]
        out.append(f"- condition 1 holds: {'yes' if self.holds else 'NO'}")
        out.append(f"- guarantee: {self.guarantee}")
        return out


def _as_block(cost: Any, name: str) -> BlockCost:
    if isinstance(cost, BlockCost):
        return cost
    if isinstance(cost, Mapping):
        if "params" not in cost or "flops" not in cost:
            raise ValueError(f"{name}: mapping needs 'params' and 'flops' keys, got {sorted(cost)}")
        return BlockCost(float(cost["params"]), float(cost["flops"]))
    if isinstance(cost, (tuple, list)) and len(cost) == 2:
        return BlockCost(float(cost[0]), float(cost[1]))
    raise ValueError(f"{name}: expected BlockCost, {{'params','flops'}} or (params, flops)")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def check_abnc(
    costs_first: Any, costs_middle: Any, costs_last: Any, n_middle: int | None = None
) -> AbncCheck:
    """Check AB^nC condition 1 (A and C cheaper than B in params and FLOPs) and state what holds.

    Each cost is a `BlockCost`, a mapping with 'params' and 'flops', or a (params, flops) pair:
    A = input block (embeddings), B = one repeated block (encoder layer), C = output block (head).
    Conditions 2-3 (L-smooth objective with bounded stochastic gradients, SGD) and strong convexity
    concern the training problem and cannot be read off costs; they are reported as assumptions.
    """
    a, b, c = (
        _as_block(x, n)
        for x, n in (
            (costs_first, "costs_first"),
            (costs_middle, "costs_middle"),
            (costs_last, "costs_last"),
        )
    )
    ratios = {
        "A<B params": _ratio(a.params, b.params),
        "A<B flops": _ratio(a.flops, b.flops),
        "C<B params": _ratio(c.params, b.params),
        "C<B flops": _ratio(c.flops, b.flops),
    }
    cheaper = {k: v < 1.0 for k, v in ratios.items()}
    if n_middle is not None:
        ratios["A<n·B params"] = _ratio(a.params, n_middle * b.params)
        cheaper["A<n·B params"] = ratios["A<n·B params"] < 1.0
    holds = all(cheaper[k] for k in ("A<B params", "A<B flops", "C<B params", "C<B flops"))
    if holds:
        text = (
            "Condition 1 holds. The paper's FPTAS theorem additionally needs conditions 2-3 "
            "(L-smooth objective, bounded stochastic gradients, SGD) and, for ratio |1-ε|, "
            "mu-strong convexity (strong AB^nC), which transformers do not satisfy exactly. "
            "This library's (1-ε) bound needs only assumption M on the e-values."
        )
    else:
        failed = ", ".join(
            k for k in ("A<B params", "A<B flops", "C<B params", "C<B flops") if not cheaper[k]
        )
        text = (
            f"Condition 1 FAILS ({failed}): the paper's FPTAS theorem does not apply as "
            "stated. This library's bound W(chosen) >= (1-ε)·OPT does not use condition 1 and "
            "still holds for the e-values returned, given assumption M. What is lost is the "
            "paper's argument that bounded-step proxy error ranks candidates like converged "
            "error; check that empirically (audit with longer proxy training)."
        )
    return AbncCheck(a, b, c, n_middle, cheaper, ratios, holds, text)
