"""Run a script of `scripts/` (or a test body) with one deterministic stall point, for the
kill-and-resume tests.

    STALL=POINT STALL_MARKER=PATH python tests/_stall_worker.py scripts/bort.py --workdir=... ...

The script runs as `__main__` (absl flags, config file and all), with one library function
wrapped so that at POINT the process creates PATH and sleeps; the test SIGKILLs it there (a
real signal; the library knows nothing of it). POINT is one of

  write:GLOB        before `files.atomic_write_bytes` writes a file whose path matches GLOB
                    (fnmatch on the full path): the stage's work is done, its output not saved
  saved:GLOB:STEP   right after `checkpoint.save` finished step STEP in a checkpoint directory
                    matching GLOB (between two training steps, the checkpoint complete)
  ckpt_tmp:STEP     inside the save of step STEP: Orbax's temporary directory exists (with its
                    metadata), no array written yet
  ckpt_commit:STEP  inside the save of step STEP: every array written to the temporary
                    directory, before the commit marker and the rename to the final name
  teacher_chunk:N   while the teacher-output cache entry is being streamed: after the N-th
                    chunk was written into the staging memory-maps
  teacher_commit    the whole cache entry written and flushed in its staging directory, before
                    it is hashed and renamed into place

Without STALL the script just runs. Nothing here changes what the library computes.
"""

import fnmatch
import os
import runpy
import sys
import time
from pathlib import Path

point = os.environ.get("STALL", "")
marker = Path(os.environ.get("STALL_MARKER", os.devnull))


def stall() -> None:
    marker.write_text(f"{point}\n")
    time.sleep(3600)


kind, _, arg = point.partition(":")
if kind == "write":
    from bort_jax import files

    real_write = files.atomic_write_bytes

    def write(path, data):
        if fnmatch.fnmatch(os.path.abspath(os.fspath(path)), arg):
            stall()
        return real_write(path, data)

    files.atomic_write_bytes = write
elif kind == "saved":
    from bort_jax import checkpoint

    glob, _, step = arg.rpartition(":")
    real_save = checkpoint.save

    def save(mngr, at, state):
        real_save(mngr, at, state)
        if int(at) == int(step) and fnmatch.fnmatch(str(mngr.directory), glob):
            stall()

    checkpoint.save = save
elif kind in ("ckpt_tmp", "ckpt_commit"):
    from orbax.checkpoint._src.path import atomicity

    cls = atomicity.AtomicRenameTemporaryPath
    name = "create" if kind == "ckpt_tmp" else "finalize"
    real = getattr(cls, name)

    async def hooked(self, *a, **kw):
        at_step = self.get_final().name == arg
        if at_step and kind == "ckpt_commit":
            stall()
        out = await real(self, *a, **kw)
        if at_step and kind == "ckpt_tmp":
            stall()
        return out

    setattr(cls, name, hooked)
elif kind == "teacher_chunk":
    from bort_jax import distill

    real_outputs = distill.teacher_outputs
    written = [0]

    class Stalling:
        def __init__(self, a):
            self.a = a

        def __setitem__(self, key, value):
            self.a[key] = value
            if key_is_last[0] == id(self):
                written[0] += 1
                if written[0] == int(arg):
                    self.a.flush()
                    stall()

    key_is_last = [None]

    def outputs(*a, out=None, **kw):
        if out is not None:
            wrapped = {k: Stalling(v) for k, v in out.items()}
            key_is_last[0] = id(list(wrapped.values())[-1])  # one count per chunk
            out = wrapped
        return real_outputs(*a, out=out, **kw)

    distill.teacher_outputs = outputs
elif kind == "teacher_commit":
    from bort_jax import teacher_cache

    real_commit = teacher_cache._commit

    def commit(*a, **kw):
        stall()
        return real_commit(*a, **kw)

    teacher_cache._commit = commit
elif point:
    raise SystemExit(f"unknown STALL point {point!r}")

sys.argv = sys.argv[1:]
sys.path.insert(0, str(Path(sys.argv[0]).resolve().parent))
runpy.run_path(sys.argv[0], run_name="__main__")
