"""Benchmarks of bort_jax, run from the repository root: `python -m benchmarks.<name>`."""
