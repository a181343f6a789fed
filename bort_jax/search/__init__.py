"""Optimal subarchitecture extraction (de Wynter, arXiv 2010.08512; Bort, arXiv 2010.10499).

A model-independent library: search spaces (`space`), the FPTAS-style search with a provable
(1 − ε) bound and its audit baseline (`fptas`), the W-coefficient (`objective`), its options
(`options`) and records (`result`), the order ⪯ and ε-trimming (`order`), the lower bounds
(`bounds`), the assumption checks (`assumptions`), calling e with a cache (`evaluator`), the
candidate-parallel look-ahead (`lookahead`), the proxy step budget T(ε, s) (`budget`), the
AB^nC check (`abnc`), the published interval algorithm (`interval`) and random search
(`random_search`) as baselines, synthetic instances with known optima (`synthetic`) and
Markdown/JSON/PNG reports (`report`).
See docs/fptas.md and docs/search_methods.md.

The search function is `bort_jax.search.fptas.fptas`, re-exported as `fptas_search` so that the
package attribute `fptas` stays the module.
"""

from bort_jax.search.abnc import AbncCheck, BlockCost, check_abnc
from bort_jax.search.assumptions import (
    AssumptionViolation,
    AssumptionWarning,
    convexity_violations,
    monotonicity_violations,
    required_slack,
)
from bort_jax.search.budget import kappa_for, step_budget
from bort_jax.search.evaluator import Evaluator, candidate_key
from bort_jax.search.fptas import exhaustive
from bort_jax.search.fptas import fptas as fptas_search
from bort_jax.search.objective import WCoefficient
from bort_jax.search.options import Assumptions, SearchOptions, validate_eps
from bort_jax.search.report import read_json, result_from_dict, result_to_dict, write_report
from bort_jax.search.result import Evaluation, Guarantee, SearchResult, pareto_front
from bort_jax.search.space import Axis, SearchSpace, bert_grid, componentwise_leq, grid

__all__ = [
    "AbncCheck",
    "AssumptionViolation",
    "AssumptionWarning",
    "Assumptions",
    "Axis",
    "BlockCost",
    "Evaluation",
    "Evaluator",
    "Guarantee",
    "SearchOptions",
    "SearchResult",
    "SearchSpace",
    "WCoefficient",
    "bert_grid",
    "candidate_key",
    "check_abnc",
    "componentwise_leq",
    "convexity_violations",
    "exhaustive",
    "fptas_search",
    "grid",
    "kappa_for",
    "monotonicity_violations",
    "pareto_front",
    "read_json",
    "required_slack",
    "result_from_dict",
    "result_to_dict",
    "step_budget",
    "validate_eps",
    "write_report",
]
