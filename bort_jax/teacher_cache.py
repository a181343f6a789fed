"""On-disk cache of teacher outputs, shared by every candidate of a search.

The FPTAS proxy-trains many students against one teacher on one fixed data set, so the
teacher's outputs are computed once, stored as float16 `.npy` files and memory-mapped by each
candidate: a search costs one teacher pass, not one per candidate.

Layout: `<cache_dir>/<key>/{meta.json, <name>.npy ...}` where `key` is a SHA-256 over the
teacher's identity (config.json + weights file size/mtime/first MiB digest), the data (digest
of the input arrays) and the cache config. An entry is written into a temporary directory and
renamed when complete (a kill never leaves a half entry under the real name); on read, every
array's shape/dtype and SHA-256 must match `meta.json`, else the entry is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

META = "meta.json"


def digest_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def digest_checkpoint(path: str | os.PathLike) -> str:
    """Identity of a checkpoint directory: config + weights (size, first MiB)."""
    path = Path(path)
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        f = path / name
        if f.is_file():
            h.update(name.encode())
            h.update(str(f.stat().st_size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
    return h.hexdigest()


def make_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def load(entry: Path, verify: bool = True) -> dict[str, np.ndarray] | None:
    """Memory-mapped arrays of a complete, intact entry; None if missing or corrupt."""
    meta_path = entry / META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        out = {}
        for name, info in meta["arrays"].items():
            f = entry / f"{name}.npy"
            if verify and _file_sha(f) != info["sha256"]:
                return None
            a = np.load(f, mmap_mode="r")
            if list(a.shape) != info["shape"] or str(a.dtype) != info["dtype"]:
                return None
            out[name] = a
        return out
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def get_or_build(cache_dir: str | os.PathLike, key: str,
                 build: Callable[[], Mapping[str, np.ndarray]], dtype=np.float16,
                 info: Mapping | None = None) -> tuple[dict[str, np.ndarray], bool]:
    """(arrays, hit). On a miss or a corrupt entry, `build()` and store it atomically.

    Floating arrays are stored as `dtype` (float16 by default); integer arrays unchanged.
    """
    entry = Path(cache_dir) / key
    cached = load(entry)
    if cached is not None:
        return cached, True
    arrays = build()
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{key}.tmp"))
    meta = {"key": key, "info": dict(info or {}), "arrays": {}}
    for name, a in arrays.items():
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(dtype)
        f = tmp / f"{name}.npy"
        np.save(f, a)
        meta["arrays"][name] = {"shape": list(a.shape), "dtype": str(a.dtype),
                                "sha256": _file_sha(f)}
    (tmp / META).write_text(json.dumps(meta, indent=1))
    if entry.exists():
        shutil.rmtree(entry)
    os.replace(tmp, entry)
    return load(entry, verify=False), False
