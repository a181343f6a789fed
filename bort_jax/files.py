"""Atomic file writes: the one place that writes a file so a kill never leaves it half-written.

Every writer stages the content in a temporary sibling, flushes it to disk and `os.replace`s it
onto the target (atomic on POSIX), so readers see either the old file or the whole new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> Path:
    """`obj` as JSON (default indent 2), written atomically."""
    dump_kwargs.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(obj, **dump_kwargs))


def atomic_write_dir(path: str | os.PathLike, fill: Callable[[Path], Any]) -> Path:
    """Build a directory with `fill(staging_dir)` beside `path`, then swap it in.

    A kill while filling leaves the previous copy of `path` (if any) untouched; a kill during
    the two renames leaves either the old or the new directory under `path`, or the old one
    under `.name.old` from which the next call recovers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.new")
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():
        old.rename(path)  # a kill between the two renames of an earlier call
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    fill(staging)
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        path.rename(old)
    staging.rename(path)
    if old.exists():
        shutil.rmtree(old)
    return path
