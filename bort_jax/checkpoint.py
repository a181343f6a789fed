"""The one checkpoint helper: Orbax `CheckpointManager` for training state, nothing else.

Orbax writes each step into a temporary directory and renames it when complete, so a crash or
SIGKILL mid-save never corrupts the latest finished checkpoint; `latest_step` only sees
finished ones. Restores take an abstract target (shapes, dtypes, shardings), so a resume lands
directly on whatever mesh the caller built.

Multi-process: every process builds the manager and calls `save` / `restore` with its shards
(Orbax writes each process's shards, process 0 the metadata and the final rename, with its own
barriers); the directory must be one that all processes see (a shared file system or
`gs://...`). Remote workdirs are passed to Orbax as given (`files.join`, no `abspath`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from bort_jax import files, sharding


def directory(workdir: str | os.PathLike) -> str:
    """`workdir/checkpoints`: absolute when local, a remote URL (`gs://...`) unchanged."""
    return files.resolve(files.join(workdir, "checkpoints"))


def manager(workdir: str | os.PathLike, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """A manager writing `workdir/checkpoints/<step>`; creates the directory (Orbax creates
    it on process 0 of a multi-process run, and any remote one)."""
    directory_ = directory(workdir)
    if not files.is_remote(directory_) and not sharding.multi_process():
        os.makedirs(directory_, exist_ok=True)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(directory_, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any) -> None:
    """Save `state` (any pytree of arrays) at `step`, synchronously and atomically."""
    mngr.save(int(step), args=ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()


def abstract(tree: Any) -> Any:
    """Shape/dtype/sharding skeleton of `tree` for `restore`."""
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


def restore(mngr: ocp.CheckpointManager, target: Any, step: int | None = None) -> Any:
    """Restore the checkpoint at `step` (default latest) into the structure of `target`."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
    return mngr.restore(step, args=ocp.args.StandardRestore(abstract(target)))
