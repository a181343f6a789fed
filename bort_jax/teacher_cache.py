"""On-disk cache of teacher outputs, shared by every candidate of a search.

The FPTAS proxy-trains many students against one teacher on one fixed data set, so the
teacher's outputs are computed once, stored as float16 `.npy` files and memory-mapped by each
candidate: a search costs one teacher pass, not one per candidate.

Layout: `<cache_dir>/<key>/{meta.json, <name>.npy ...}` where `key` is a SHA-256 over the
teacher's identity (`digest_checkpoint`: the full SHA-256 of config.json and of the weights
file), the data (digest of the input arrays) and the cache config. An entry is written into a
temporary directory and renamed when complete (a kill never leaves a half entry under the real
name), with a manifest in `meta.json`: per array its shape, dtype, file size, SHA-256 and the
SHA-256 of every `CHUNK_BYTES` chunk of the file (all from one read at commit time). On read
the entry is checked against the manifest, else rebuilt; how much is read is `verify`:

  "sizes"   shapes, dtypes and file sizes only (no data read);
  "sample"  (default) sizes + the first and last chunk of every file + `SAMPLE_CHUNKS` chunks
            drawn at random per load: ≤ (2 + SAMPLE_CHUNKS) × 32 MiB per array instead of the
            whole cache (132 GB for bert_large's full logits: minutes of hashing per load);
  "full"    every chunk (the whole cache read and hashed, as each load did before).

The trade-off: "sample" always catches a truncated or extended file, a rewritten header and a
damaged first/last chunk (where a killed copy or a partial write shows), but a flipped byte
in the middle of a file is caught on a given load only with probability SAMPLE_CHUNKS / (chunks
− 2) (over many loads the random draws cover the file). Where silent corruption matters more
than load time (a cache copied from elsewhere, suspect disks) pass verify="full" or set
`BORT_JAX_CACHE_VERIFY=full` for the run. An entry written before the manifest (no chunk
digests) is verified in full.

`get_or_build_streamed` fills pre-allocated `.npy` memory-maps in the staging directory while
the outputs are computed (host memory: a chunk or two), then commits the same way.

Multi-process runs: process 0 alone looks up and builds an entry while the others wait at a
barrier, then they map it. Where the cache directory is not shared (a host-local disk), a
process that finds no entry after the barrier builds its own copy there.

The weights' full digest is computed once per file version and memoised beside the checkpoint
(`.bort_jax_digests.json`), keyed by the file's size, mtime (ns) and a sample digest of its first
and last MiB; any change to those recomputes it. A rewrite that keeps size, mtime and both ends
byte for byte (e.g. `touch -d` restoring the old mtime after editing the middle of the file) is
the one case the memo cannot see; delete the memo file to force a full re-hash. If the checkpoint
directory is read-only the digest is simply recomputed every run (about 0.5 s per GB).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from bort_jax import hub
from bort_jax.files import atomic_write_json

META = "meta.json"
DIGEST_MEMO = ".bort_jax_digests.json"  # beside the checkpoint: {file name: memo entry}
CHECKPOINT_FILES = ("config.json", "model.safetensors")
_SAMPLE = 1 << 20  # bytes read at each end for the memo's sample digest
CHUNK_BYTES = 32 << 20  # granularity of the manifest's per-chunk digests
SAMPLE_CHUNKS = 2  # random chunks per file that verify="sample" hashes besides first and last
VERIFY_MODES = ("sizes", "sample", "full")
VERIFY_ENV = "BORT_JAX_CACHE_VERIFY"  # the default verify mode of a run ("sample" if unset)


def digest_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _sample_digest(path: Path, size: int) -> str:
    """SHA-256 of the first and last MiB: cheap evidence that a memoised digest still applies."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(_SAMPLE))
        if size > _SAMPLE:
            f.seek(max(size - _SAMPLE, _SAMPLE))
            h.update(f.read())
    return h.hexdigest()


def _read_memo(path: Path) -> dict[str, Any]:
    try:
        memo = json.loads(path.read_text())
        return memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        return {}


def file_digest(path: str | os.PathLike) -> str:
    """Full SHA-256 of a file, memoised beside it (see the module docstring).

    The memo entry is reused only while the file's size, mtime (ns) and the digest of its first
    and last MiB are unchanged; otherwise the whole file is hashed again and the memo updated
    (atomically; silently skipped where the directory is not writable).
    """
    path = Path(path)
    st = path.stat()
    stamp = {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sample": _sample_digest(path, st.st_size),
    }
    memo_path = path.parent / DIGEST_MEMO
    memo = _read_memo(memo_path)
    entry = memo.get(path.name)
    if (
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and all(entry.get(k) == v for k, v in stamp.items())
    ):
        return entry["sha256"]
    digest = _file_sha(path)
    memo[path.name] = {**stamp, "sha256": digest}
    try:
        atomic_write_json(memo_path, memo, indent=1, sort_keys=True)
    except OSError:  # read-only checkpoint directory: no memo, the digest is still exact
        pass
    return digest


def digest_checkpoint(path: str | os.PathLike) -> str:
    """Identity of a checkpoint directory: name, size and full SHA-256 of config.json and of
    the weights (`model.safetensors`), so any byte that differs gives a different key. A hub
    id (`hf:org/name`) is digested through its resolved local snapshot."""
    path = Path(hub.resolve(path))
    h = hashlib.sha256()
    for name in CHECKPOINT_FILES:
        f = path / name
        if f.is_file():
            h.update(f"{name}:{f.stat().st_size}:{file_digest(f)}\n".encode())
    return h.hexdigest()


def make_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_manifest(path: Path) -> dict[str, Any]:
    """{'size', 'sha256', 'chunk_bytes', 'chunks'}: the whole file's and each `CHUNK_BYTES`
    chunk's SHA-256, from one read."""
    chunk_bytes = CHUNK_BYTES
    whole, chunks, size = hashlib.sha256(), [], 0
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            whole.update(block)
            chunks.append(hashlib.sha256(block).hexdigest())
            size += len(block)
    return {"size": size, "sha256": whole.hexdigest(), "chunk_bytes": chunk_bytes, "chunks": chunks}


def verify_mode(verify: str | bool | None = None) -> str:
    """The verify mode: `verify` itself, True = "full", False = "sizes", None = the run's
    default (`BORT_JAX_CACHE_VERIFY`, else "sample")."""
    if verify is None:
        verify = os.environ.get(VERIFY_ENV, "") or "sample"
    elif verify is True:
        verify = "full"
    elif verify is False:
        verify = "sizes"
    if verify not in VERIFY_MODES:
        raise ValueError(f"teacher cache verify={verify!r}; use one of {VERIFY_MODES}")
    return verify


def _chunks_intact(path: Path, info: Mapping[str, Any], mode: str) -> bool:
    """Whether the chunks of `path` that `mode` reads match the manifest entry `info`."""
    chunks, size = info["chunks"], int(info["chunk_bytes"])
    if mode == "full" or len(chunks) <= 2 + SAMPLE_CHUNKS:
        which = range(len(chunks))
    else:
        middle = np.random.default_rng().choice(
            np.arange(1, len(chunks) - 1), SAMPLE_CHUNKS, replace=False
        )
        which = sorted({0, len(chunks) - 1, *middle.tolist()})
    with open(path, "rb") as f:
        for i in which:
            f.seek(i * size)
            if hashlib.sha256(f.read(size)).hexdigest() != chunks[i]:
                return False
    return True


def load(entry: Path, verify: str | bool | None = None) -> dict[str, np.ndarray] | None:
    """Memory-mapped arrays of a complete, intact entry; None if missing or corrupt.

    `verify`: how much of the data is checked against the manifest ("sizes", "sample",
    "full"; see the module docstring; None = `verify_mode()`'s default).
    """
    mode = verify_mode(verify)
    meta_path = entry / META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        out = {}
        for name, info in meta["arrays"].items():
            f = entry / f"{name}.npy"
            if "chunks" not in info:  # written before the manifest: the whole-file digest
                if _file_sha(f) != info["sha256"]:
                    return None
            elif f.stat().st_size != info["size"]:
                return None
            elif mode != "sizes" and not _chunks_intact(f, info, mode):
                return None
            a = np.load(f, mmap_mode="r")
            if list(a.shape) != info["shape"] or str(a.dtype) != info["dtype"]:
                return None
            out[name] = a
        return out
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None


def get_or_build(
    cache_dir: str | os.PathLike,
    key: str,
    build: Callable[[], Mapping[str, np.ndarray]],
    dtype=np.float16,
    info: Mapping | None = None,
    verify: str | bool | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """(arrays, hit). On a miss or a corrupt entry, `build()` and store it atomically.

    Floating arrays are stored as `dtype` (float16 by default); integer arrays unchanged.
    `verify`: how a found entry is checked (`load`).
    """
    return _shared(cache_dir, key, lambda: _build(cache_dir, key, build, dtype, info), verify)


def _shared(
    cache_dir: str | os.PathLike,
    key: str,
    make: Callable[[], dict[str, np.ndarray]],
    verify: str | bool | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """(arrays, hit): the entry `key` loaded, else made by `make()` — on process 0 only while
    the others wait, which then load it (or make their own where they cannot see it)."""
    from bort_jax import sharding

    entry = Path(cache_dir) / key
    primary = sharding.is_primary()
    cached = load(entry, verify) if primary else None
    hit = cached is not None
    if primary and cached is None:
        cached = make()
    sharding.barrier(f"teacher_cache/{key}")
    if cached is None:  # not process 0
        cached = load(entry, verify)
        hit = cached is not None
        if cached is None:  # the cache directory is not shared with process 0
            cached = make()
    return cached, hit


def _build(cache_dir, key, build, dtype, info) -> dict[str, np.ndarray]:
    arrays = build()
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    # A unique staging directory (not `files.atomic_write_dir`'s fixed name): two processes
    # sharing a cache may build the same key at once.
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{key}.tmp"))
    for name, a in arrays.items():
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(dtype)
        np.save(tmp / f"{name}.npy", a)
    return _commit(tmp, Path(cache_dir) / key, key, list(arrays), info)


def get_or_build_streamed(
    cache_dir: str | os.PathLike,
    key: str,
    specs: Mapping[str, tuple[tuple[int, ...], Any]],
    fill: Callable[[dict[str, np.ndarray]], None],
    info: Mapping | None = None,
    verify: str | bool | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """(arrays, hit) like `get_or_build`, but the entry is written while it is computed.

    On a miss, `specs` {name: (shape, dtype)} are pre-allocated as `.npy` files in the staging
    directory (`np.lib.format.open_memmap`) and `fill(arrays)` writes into those memory-maps
    (chunk by chunk: the host holds at most what `fill` holds, not the whole output); then the
    files are flushed, hashed and the entry committed as in `get_or_build` (atomic rename,
    manifest in meta.json).
    """
    make = lambda: _build_streamed(cache_dir, key, specs, fill, info)  # noqa: E731
    return _shared(cache_dir, key, make, verify)


def _build_streamed(cache_dir, key, specs, fill, info) -> dict[str, np.ndarray]:
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{key}.tmp"))
    try:
        out = {}
        for name, (shape, dt) in specs.items():
            f = tmp / f"{name}.npy"
            if int(np.prod(shape)) == 0:  # an empty file cannot be mapped: nothing to fill
                np.save(f, np.zeros(shape, dt))
                out[name] = np.zeros(shape, dt)
            else:
                out[name] = np.lib.format.open_memmap(f, mode="w+", dtype=dt, shape=tuple(shape))
        fill(out)
        for a in out.values():
            if isinstance(a, np.memmap):
                a.flush()
        del out
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _commit(tmp, Path(cache_dir) / key, key, list(specs), info)


def _commit(
    tmp: Path, entry: Path, key: str, names: list[str], info: Mapping | None
) -> dict[str, np.ndarray]:
    """Hash the staged `<name>.npy` files, write meta.json, rename `tmp` to `entry`, map it."""
    meta = {"key": key, "info": dict(info or {}), "arrays": {}}
    for name in names:
        f = tmp / f"{name}.npy"
        a = np.load(f, mmap_mode="r")
        meta["arrays"][name] = {
            "shape": list(a.shape),
            "dtype": str(a.dtype),
            **_file_manifest(f),
        }
        del a
    (tmp / META).write_text(json.dumps(meta, indent=1))
    if entry.exists():
        existing = load(entry)
        if existing is not None:  # another writer committed the same key meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            return existing
        shutil.rmtree(entry, ignore_errors=True)  # a corrupt entry
    try:
        os.replace(tmp, entry)
    except OSError:  # another writer committed between the check and the rename
        existing = load(entry)
        if existing is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return existing
    return load(entry, verify="sizes")
