"""JAX's persistent compilation cache, switched on in one place.

Searches, experiments and the test suite build many jitted steps whose HLO repeats (a fresh
`train.train` step per proxy fit, the same shapes after a resume). The persistent cache turns
each repeated compilation into a disk lookup. JAX initialises the cache once per process, at the
first compilation, so the first directory in force then is the one used for the whole process.
"""

from __future__ import annotations

import os

import jax


def configured_dir() -> str | None:
    """The cache directory JAX already has (``JAX_COMPILATION_CACHE_DIR`` or an earlier
    `jax.config.update`), or None."""
    return jax.config.jax_compilation_cache_dir or None


def enable(default_dir: str | os.PathLike, min_compile_secs: float = 0.5) -> str:
    """Turn the persistent cache on; returns the directory in force.

    A directory the user already configured (``JAX_COMPILATION_CACHE_DIR``) wins over
    ``default_dir``, so one machine-wide cache serves every run. Executables that compiled in
    under ``min_compile_secs`` are not written.
    """
    path = configured_dir() or os.path.abspath(os.fspath(default_dir))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_secs)
    return path
