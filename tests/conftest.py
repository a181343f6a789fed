"""Shared fixtures: the real MiniLM checkpoint and the ../shared directory."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    # CI always lays ../shared beside the clone; its absence is a broken set-up, not a skip.
    assert SHARED.is_dir(), f"shared data directory {SHARED} not present (expected ../shared)"
    return SHARED


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    from bort_jax import hf
    return hf.minilm_path()


@pytest.fixture(scope="session")
def minilm(minilm_dir):
    from bort_jax import hf
    return hf.load(minilm_dir)
