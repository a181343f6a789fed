"""Optimal subarchitecture extraction (de Wynter, arXiv 2010.08512; Bort, arXiv 2010.10499).

A model-independent library: search spaces (`space`), the FPTAS-style search with a provable
(1 − ε) bound and its audit baseline (`fptas`), synthetic instances with known optima
(`synthetic`) and Markdown/JSON/PNG reports (`report`). See docs/fptas.md.

The search function is `bort_jax.search.fptas.fptas`, re-exported as `fptas_search` so that the
package attribute `fptas` stays the module.
"""
from bort_jax.search.fptas import (AbncCheck, BlockCost, Evaluation, Guarantee, JsonFileCache,
                                   SearchResult, WCoefficient, candidate_key, check_abnc,
                                   convexity_violations, exhaustive, kappa_for,
                                   monotonicity_violations, pareto_front, required_slack,
                                   runtime_bound, step_budget, validate_eps)
from bort_jax.search.fptas import fptas as fptas_search
from bort_jax.search.report import read_json, result_from_dict, result_to_dict, write_report
from bort_jax.search.space import (Axis, BertArch, SearchSpace, bert_grid, componentwise_leq,
                                   grid)

__all__ = [
    "AbncCheck", "Axis", "BertArch", "BlockCost", "Evaluation", "Guarantee", "JsonFileCache",
    "SearchResult", "SearchSpace", "WCoefficient", "bert_grid", "candidate_key", "check_abnc",
    "componentwise_leq", "convexity_violations", "exhaustive", "fptas_search", "grid",
    "kappa_for",
    "monotonicity_violations", "pareto_front", "read_json", "required_slack", "result_from_dict",
    "result_to_dict", "runtime_bound", "step_budget", "validate_eps", "write_report",
]
