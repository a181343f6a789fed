"""Run a long job in a subprocess and SIGKILL it at a chosen point (a real signal)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("_job_worker.py")


def kill_when(
    job: str,
    config: dict[str, Any],
    workdir: Path,
    ready: Callable[[], bool],
    stall: tuple[str, Path] | None = None,
    timeout: float = 300,
) -> None:
    """Start `tests/_job_worker.py JOB ...`; SIGKILL it as soon as `ready()` holds.

    `stall=(file name, marker)` makes the worker stop before writing that output file and
    create `marker`; pass `ready=marker.exists` to kill it there.
    """
    args = [sys.executable, str(WORKER), job, json.dumps(config), str(workdir)]
    if stall is not None:
        args += [stall[0], str(stall[1])]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(
                "worker ended before the kill point: " + proc.stderr.read().decode()[-3000:]
            )
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("worker never reached the kill point")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
