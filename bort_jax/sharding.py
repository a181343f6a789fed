"""SPMD sharding: a device mesh from config, logical-axis rules, shardings for the train state.

The model names the axes of every parameter and activation logically (`models/bert.py`:
'vocab', 'embed', 'heads', 'mlp', 'batch', 'seq'); a rule table maps logical names to the
axes of a 3-D mesh ('data', 'fsdp', 'model'), MaxText style:

    data   batch parallelism (parameters replicated along it);
    fsdp   batch parallelism with parameters and optimizer state sharded along 'embed';
    model  tensor parallelism: attention heads, FFN width and vocabulary split.

`Partitioner` holds a mesh + rules and gives `NamedSharding`s for any train state
(`jax.eval_shape` + the logical axes of each leaf, found by its path: `param_axes`), places
host batches along the batch axes (multi-host: `jax.make_array_from_process_local_data`), and
is what `train.train` uses when one is active (`with partitioner.activate(): ...`), so callers
of the loop need no change. A dimension that the mesh axes do not divide is replicated
rather than failing (e.g. a 30,522-token vocabulary on 4 model shards).

Multi-host (TPU pod slices, multi-GPU nodes): `initialize_distributed()` calls
`jax.distributed.initialize` from the environment before any device is touched (every script
does, through `cli`). Each process then reads only its own rows of every global batch
(`Partitioner.process_rows`, `data.batching.process_local`): the global batch is the
concatenation of the processes' shares in the order one process would use, so N processes
train on exactly the batches of one. `is_primary()` / `barrier(name)`: process 0 writes the
run's files (`files`, `train`, `teacher_cache`), the others wait where they must read one.

Candidate-parallel search: `DeviceGroups` splits the devices into k disjoint sub-meshes, each
with its own `Partitioner`; `with groups.acquire(): ...` (one per concurrent candidate, e.g.
one per thread of the search's evaluator) takes a free one and activates it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import queue
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "model")

# Logical axis -> mesh axes (MaxText's table, cut to the names this model uses).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("seq", None),
    ("embed", "fsdp"),
    ("heads", "model"),
    ("mlp", "model"),
    ("vocab", "model"),
)

# Parameter path (suffix, '/'-joined) -> logical axes. Matches the names `models/bert.py`
# gives (checked against flax's own metadata in tests/test_sharding.py), at any depth of a
# bigger tree (KD {'student': ..., 'proj': ...}, optimizer moments mirroring the params).
PARAM_AXES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    (r"word_embeddings/embedding$", ("vocab", "embed")),
    (r"(position|token_type)_embeddings/embedding$", (None, "embed")),
    (r"attention/(query|key|value)/kernel$", ("embed", "heads")),
    (r"attention/(query|key|value)/bias$", ("heads",)),
    (r"attention/output/kernel$", ("heads", "embed")),
    (r"ffn_in/kernel$", ("embed", "mlp")),
    (r"ffn_in/bias$", ("mlp",)),
    (r"ffn_out/kernel$", ("mlp", "embed")),
    (r"classifier/kernel$", ("embed", None)),
    (r"classifier/bias$", (None,)),
    (r"mlm_bias$", ("vocab",)),
    (r"(pooler|head_pooler|mlm_transform)/kernel$", ("embed", "embed")),
    (r"(LayerNorm|_norm)/(scale|bias)$", ("embed",)),
    (r"(output|ffn_out|pooler|head_pooler|mlm_transform)/bias$", ("embed",)),
    (r"proj/\d+$", ("embed", None)),  # KD projections [H_student, H_teacher]
)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh shape: sizes of ('data', 'fsdp', 'model'); one of them may be -1 = the rest."""

    data: int = -1
    fsdp: int = 1
    model: int = 1
    rules: tuple[tuple[str, Any], ...] = DEFAULT_RULES

    def shape(self, n_devices: int) -> tuple[int, int, int]:
        """The resolved (data, fsdp, model) sizes for `n_devices` devices."""
        sizes = [self.data, self.fsdp, self.model]
        free = [i for i, s in enumerate(sizes) if s == -1]
        if len(free) > 1 or any(s == 0 or s < -1 for s in sizes):
            raise ValueError(
                f"mesh {dict(zip(MESH_AXES, sizes))}: each size must be >= 1, "
                "and at most one may be -1"
            )
        known = math.prod(s for s in sizes if s != -1)
        if free:
            if n_devices % known:
                raise ValueError(
                    f"mesh {dict(zip(MESH_AXES, sizes))}: {n_devices} devices "
                    f"are not a multiple of {known}"
                )
            sizes[free[0]] = n_devices // known
        if math.prod(sizes) != n_devices:
            raise ValueError(
                f"mesh {dict(zip(MESH_AXES, sizes))} needs {math.prod(sizes)} "
                f"devices, {n_devices} available"
            )
        return tuple(sizes)


def make_mesh(cfg: MeshConfig = MeshConfig(), devices: Sequence[Any] | None = None) -> Mesh:
    """A ('data', 'fsdp', 'model') mesh over `devices` (default: all)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = cfg.shape(len(devices))
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def initialize_distributed(
    coordinator_address: str = "", num_processes: int = 0, process_id: int = -1
) -> bool:
    """`jax.distributed.initialize` for multi-host runs; True if it ran (now or before).

    Arguments left empty come from the environment (`JAX_COORDINATOR_ADDRESS`,
    `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`), and on TPU pod slices / SLURM / Open MPI JAX finds
    them itself: set `BORT_DISTRIBUTED=1` there. Single-host runs (nothing set) skip it, and a
    second call is a no-op. Must run before anything touches a device (`cli` calls it first).
    """
    if jax.distributed.is_initialized():
        return True
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    num_processes = num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0"))
    if process_id < 0:
        process_id = int(os.environ.get("JAX_PROCESS_ID", "-1"))
    if not coordinator_address and os.environ.get("BORT_DISTRIBUTED", "") != "1":
        return False
    kwargs = {}
    if coordinator_address:
        kwargs = dict(
            coordinator_address=coordinator_address,
            num_processes=num_processes or None,
            process_id=process_id if process_id >= 0 else None,
        )
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        # cross-process collectives between CPU devices (tests, CPU clusters); only the CPU
        # client reads it (jax 0.10's default is already gloo)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


def multi_process() -> bool:
    """True in a multi-process run (without touching the backend when none was set up)."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_primary() -> bool:
    """True on the process that writes the run's files: process 0 (or the only one)."""
    return not multi_process() or jax.process_index() == 0


_BARRIERS: dict[str, int] = {}
BARRIER_TIMEOUT_S = 3600  # e.g. process 0 alone computing the teacher's outputs


def barrier(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
    """All processes wait here until each has arrived; a no-op on one process. `name` must be
    the same string on every process at this point.

    The wait is the coordination service's barrier (no device program: a cross-process
    collective, e.g. `sync_global_devices`, would give up after gloo's 30 s connect timeout
    on CPU while process 0 builds a file the others wait for). Each use of a name gets its own
    barrier id (a per-name count, the same on every process).
    """
    if not multi_process():
        return
    from jax._src import distributed

    count = _BARRIERS.get(name, 0)
    _BARRIERS[name] = count + 1
    client = distributed.global_state.client
    if client is None:  # initialised some other way: a device-level barrier
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
        return
    client.wait_at_barrier(f"bort_jax/{name}/{count}", timeout_in_ms=int(timeout_s * 1000))


def host_get(tree: Any) -> Any:
    """`jax.device_get(tree)`, also for arrays sharded over other processes' devices (gathered
    to every process: `multihost_utils.process_allgather`)."""
    if not multi_process():
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def one(x):
        if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return jax.device_get(x)

    return jax.tree_util.tree_map(one, tree)


# --------------------------------------------------------------------------- logical axes


def _path_str(path: Sequence[Any]) -> str:
    parts = []
    for p in path:
        key = getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))
        parts.append(str(key))
    return "/".join(parts)


def param_axes(path: str, ndim: int) -> tuple[str | None, ...]:
    """Logical axes of the leaf at `path` (PARAM_AXES), replicated when nothing matches.

    A leaf of the scanned layout (`Bert(scan_layers=True)`: under 'layers/', one more
    dimension than its pattern's axes) gets a leading 'layers' axis, which no rule maps to a
    mesh axis (so it is never sharded), as flax's scan metadata names it.
    """
    stacked = re.search(r"(^|/)layers/", path) is not None
    for pattern, axes in PARAM_AXES:
        if re.search(pattern, path):
            if stacked and len(axes) == ndim - 1:
                return ("layers",) + axes
            if len(axes) == ndim:
                return axes
    return (None,) * ndim


def mesh_spec(
    logical: Sequence[str | None],
    shape: Sequence[int],
    mesh: Mesh,
    rules: Sequence[tuple[str, Any]],
) -> PartitionSpec:
    """PartitionSpec of one array: each logical axis mapped by `rules` to mesh axes that are
    not used yet in this array and whose size divides the dimension (else replicated)."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name, dim in zip(logical, shape):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used and mesh.shape[a] > 1)
        if axes and dim % math.prod(mesh.shape[a] for a in axes) == 0:
            used.update(axes)
            out.append(axes[0] if len(axes) == 1 else axes)
        else:
            out.append(None)
    return PartitionSpec(*out)


# ----------------------------------------------------------------------------- partitioner


@dataclasses.dataclass(frozen=True)
class Partitioner:
    """A mesh and its logical-axis rules: shardings for train states and batches."""

    mesh: Mesh
    rules: tuple[tuple[str, Any], ...] = DEFAULT_RULES

    @classmethod
    def from_config(
        cls, cfg: MeshConfig = MeshConfig(), devices: Sequence[Any] | None = None
    ) -> Partitioner:
        return cls(make_mesh(cfg, devices), tuple(cfg.rules))

    @property
    def batch_axes(self) -> tuple[str, ...]:
        target = dict(self.rules).get("batch") or ()
        return (target,) if isinstance(target, str) else tuple(target)

    @property
    def batch_divisor(self) -> int:
        return math.prod(self.mesh.shape[a] for a in self.batch_axes)

    def tree_shardings(self, tree: Any) -> Any:
        """NamedShardings for every array leaf of `tree` (concrete or `jax.eval_shape`)."""

        def one(path, leaf):
            shape = tuple(np.shape(leaf))
            axes = param_axes(_path_str(path), len(shape))
            return NamedSharding(self.mesh, mesh_spec(axes, shape, self.mesh, self.rules))

        return jax.tree_util.tree_map_with_path(one, tree)

    def batch_sharding(self, ndim: int = 1) -> NamedSharding:
        return NamedSharding(
            self.mesh, PartitionSpec(self.batch_axes or None, *([None] * (ndim - 1)))
        )

    def process_rows(self, global_rows: int) -> np.ndarray:
        """Positions (into a global batch of `global_rows` rows) that this process's devices
        hold, ascending: the rows this process reads and hands to `put_batch`. All of them on
        one process; on N processes over a mesh whose batch axes run across processes, its
        1/N share (contiguous for `make_mesh`'s process-ordered devices)."""
        self._check_rows("batch", global_rows)
        index_map = self.batch_sharding(1).addressable_devices_indices_map((global_rows,))
        keep = np.zeros(global_rows, bool)
        for index in index_map.values():
            keep[index[0]] = True
        return np.flatnonzero(keep)

    def _check_rows(self, key: str, global_rows: int) -> None:
        if global_rows % self.batch_divisor:
            raise ValueError(
                f"batch '{key}' has {global_rows} rows, not divisible by the "
                f"{self.batch_divisor} data-parallel shards "
                f"({dict(self.mesh.shape)})"
            )

    def put_batch(
        self, batch: Mapping[str, np.ndarray], global_rows: int | None = None
    ) -> dict[str, jax.Array]:
        """Host batch -> global arrays split along the batch axes.

        One process: `batch` is the whole batch. Several: `batch` holds this process's rows,
        `process_rows(global_rows)` of the global batch, in that order (`global_rows` None:
        rows × process count, every process holding an equal, distinct share).
        """
        out = {}
        for key, value in batch.items():
            value = np.asarray(value)
            if jax.process_count() == 1:
                self._check_rows(key, value.shape[0])
                out[key] = jax.device_put(value, self.batch_sharding(value.ndim))
                continue
            rows = global_rows or value.shape[0] * jax.process_count()
            positions = self.process_rows(rows)
            if len(positions) != value.shape[0]:
                raise ValueError(
                    f"batch '{key}' has {value.shape[0]} rows on process "
                    f"{jax.process_index()}, which holds {len(positions)} of the {rows}"
                )
            out[key] = self._from_local(value, positions, rows)
        return out

    def _from_local(self, value: np.ndarray, positions: np.ndarray, rows: int) -> jax.Array:
        """The global array [rows, ...] whose rows `positions` are `value` (this process's)."""
        where = np.full(rows, -1)
        where[positions] = np.arange(len(positions))

        def shard(index):
            first = index[0]
            sel = where[np.arange(rows)[first]]
            return value[(sel,) + tuple(index[1:])]

        return jax.make_array_from_callback(
            (rows,) + value.shape[1:], self.batch_sharding(value.ndim), shard
        )

    @contextlib.contextmanager
    def activate(self) -> Iterator[Partitioner]:
        """Make this the partitioner `train.train` uses, and enter mesh + axis rules."""
        token = _CURRENT.set(self)
        try:
            with self.mesh, nn.logical_axis_rules(self.rules):
                yield self
        finally:
            _CURRENT.reset(token)

    def per_device_bytes(self, tree: Any) -> int:
        """Bytes of `tree`'s shards held by the first device of the mesh."""
        device = self.mesh.devices.flat[0]
        total = 0
        for leaf in jax.tree_util.tree_leaves(tree):
            for shard in leaf.addressable_shards:
                if shard.device == device:
                    total += shard.data.nbytes
        return total


_CURRENT: contextvars.ContextVar[Partitioner | None] = contextvars.ContextVar(
    "bort_jax_partitioner", default=None
)


def current() -> Partitioner | None:
    """The partitioner activated by `Partitioner.activate`, or None (single device)."""
    return _CURRENT.get()


@contextlib.contextmanager
def use_mesh(cfg: MeshConfig) -> Iterator[Partitioner | None]:
    """The partitioner for a library entry point (pretrain, finetune, extract) with mesh `cfg`.

    An already active partitioner (the caller's own) wins; otherwise, with more than one
    device, a mesh of all devices shaped by `cfg` is activated; with one device nothing is
    (the single-device path stays exactly as without sharding).
    """
    active = current()
    if active is not None or jax.device_count() == 1:
        yield active
        return
    with Partitioner.from_config(cfg).activate() as part:
        yield part


# --------------------------------------------------------------------------- device groups


def split_devices(count: int, devices: Sequence[Any] | None = None) -> list[list[Any]]:
    """`devices` (default: all) cut into `count` equal, contiguous groups, in device order."""
    devices = list(jax.devices() if devices is None else devices)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"parallel (device groups) must be a positive int, got {count!r}")
    if len(devices) % count:
        raise ValueError(
            f"parallel={count} device groups: {len(devices)} devices do not split into "
            f"{count} equal groups"
        )
    size = len(devices) // count
    return [devices[k * size : (k + 1) * size] for k in range(count)]


class DeviceGroups:
    """k disjoint sub-meshes for k concurrent jobs (candidate-parallel search).

    Each group is a `Partitioner` over `len(devices) // k` devices with the mesh shape `cfg`
    (its -1 axis takes the rest of the group). `acquire()` blocks until a group is free,
    activates it for the calling thread (`train.train` and everything under it see it through
    `current()`) and returns it to the pool afterwards. Single process only: on a multi-host
    run every process would have to launch the same programs in the same order, which
    concurrent jobs do not, so there each candidate spans the whole mesh (k = 1).
    """

    def __init__(
        self, count: int, cfg: MeshConfig = MeshConfig(), devices: Sequence[Any] | None = None
    ) -> None:
        if count > 1 and jax.process_count() > 1:
            raise ValueError(
                f"parallel={count}: candidate-parallel search runs in one process; this run "
                f"has {jax.process_count()} (multi-host): set parallel=1 (each candidate then "
                "uses the whole mesh)"
            )
        self.partitioners = [Partitioner.from_config(cfg, g) for g in split_devices(count, devices)]
        self._free: queue.SimpleQueue[Partitioner] = queue.SimpleQueue()
        for p in self.partitioners:
            self._free.put(p)

    def __len__(self) -> int:
        return len(self.partitioners)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[Partitioner]:
        """A free group, active in this thread for the duration of the block."""
        part = self._free.get()
        try:
            with part.activate():
                yield part
        finally:
            self._free.put(part)
