"""Atomic file writes: the one place that writes a file so a kill never leaves it half-written.

Every writer stages the content in a temporary sibling, flushes it to disk and `os.replace`s it
onto the target (atomic on POSIX), so readers see either the old file or the whole new one.

Multi-process runs (`sharding.initialize_distributed`): only process 0 writes; on the others
every writer returns the path without touching it (`sharding.is_primary`). A process that must
read what process 0 wrote waits at a `sharding.barrier` first.

Remote paths (`gs://bucket/...`, any `scheme://`) stay strings as given (never `abspath`-ed or
`pathlib`-ed, which would turn `gs://b` into `gs:/b`) and are written through `etils.epath`
(what Orbax uses): an object store writes each object whole, so a single file is atomic there
too; a directory is uploaded file by file after it is complete locally.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def is_remote(path: str | os.PathLike) -> bool:
    """True for a URL-like path (`gs://...`, `s3://...`): not a local file system path."""
    return "://" in os.fspath(path)


def join(base: str | os.PathLike, *parts: str) -> str:
    """`base/part/...` as a string; a remote `base` keeps its `scheme://` intact."""
    base = os.fspath(base)
    if is_remote(base):
        return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts])
    return os.path.join(base, *parts)


def resolve(path: str | os.PathLike) -> str:
    """An absolute local path (`os.path.abspath`), or a remote path unchanged."""
    path = os.fspath(path)
    return path if is_remote(path) else os.path.abspath(path)


def read_text(path: str | os.PathLike) -> str | None:
    """The text of `path` (local or remote), None when there is no such file."""
    if is_remote(path):
        from etils import epath

        target = epath.Path(os.fspath(path))
        return target.read_text() if target.exists() else None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append `text` to `path` (a log: a kill may leave a torn last line); process 0 only.
    A remote object cannot be appended to: it is rewritten whole."""
    if not _primary():
        return
    if is_remote(path):
        _remote_write(os.fspath(path), ((read_text(path) or "") + text).encode("utf-8"))
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def _primary() -> bool:
    from bort_jax import sharding  # lazily: sharding imports jax and flax

    return sharding.is_primary()


def _remote_write(path: str, data: bytes):
    from etils import epath

    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (parent directories are created); process 0 only."""
    if is_remote(path):
        return _remote_write(os.fspath(path), data) if _primary() else path
    path = Path(path)
    if not _primary():
        return path
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
    under `.name.old` from which the next call recovers. Process 0 only. A remote `path`:
    filled in a local temporary directory, then uploaded file by file (not atomic as a whole).
    """
    if not _primary():
        return path if is_remote(path) else Path(path)
    if is_remote(path):
        return _upload_dir(os.fspath(path), fill)
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


def _upload_dir(path: str, fill: Callable[[Path], Any]):
    from etils import epath

    target = epath.Path(path)
    with tempfile.TemporaryDirectory(prefix="bort_jax_upload_") as tmp:
        fill(Path(tmp))
        target.mkdir(parents=True, exist_ok=True)
        for f in sorted(Path(tmp).rglob("*")):
            if f.is_file():
                dest = target / f.relative_to(tmp).as_posix()
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(f.read_bytes())
    return target
