"""A small real source checkpoint for the end-to-end tests: all-MiniLM-L6-v2 sliced to
D4/A4/H128/I512 (`bort_jax.models.transfer.slice_params`, the slicing every extracted
candidate gets) and saved as a Hugging Face directory with MiniLM's tokenizer.

The pipeline tests (tests/_pipeline_config.py) run the real code paths on it: a trained
encoder (sliced, not random) with the real vocabulary and no MLM head, four layers so that layer
dropping has room, at a fraction of MiniLM-L6's compile and step time. Built once per test run into
`$BORT_JAX_TEST_SCRATCH` (set by tests/conftest.py, inherited by xdist workers and by the
scripts tests start), under a file lock so that concurrent workers build it once.
"""

import fcntl
import os
import tempfile
from pathlib import Path

from bort_jax.arch import Arch

ARCH = Arch(depth=4, heads=4, hidden=128, intermediate=512)
SCRATCH_ENV = "BORT_JAX_TEST_SCRATCH"


def path() -> str:
    """The directory of the sliced checkpoint (built on first use)."""
    root = Path(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir())
    target = root / f"minilm_{ARCH.depth}_{ARCH.heads}_{ARCH.hidden}_{ARCH.intermediate}"
    if (target / "model.safetensors").is_file():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "model.safetensors").is_file():
            _build(target)
    return str(target)


def _build(target: Path) -> None:
    from bort_jax import hf
    from bort_jax.models.transfer import slice_params

    source = hf.load(hf.minilm_path())
    params = slice_params(source.params, source.arch, ARCH)
    hf.save(target, params, ARCH, source.spec, tokenizer_dir=source.path)
