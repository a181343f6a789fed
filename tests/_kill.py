"""Run a long job in a subprocess and SIGKILL it at a chosen point (a real signal)."""

from __future__ import annotations

import json
import os
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


STALL_WORKER = Path(__file__).with_name("_stall_worker.py")


def stall_and_kill(
    args: list[str], point: str, marker: Path, cwd: Path | None = None, timeout: float = 900
) -> None:
    """Run `tests/_stall_worker.py ARGS` (a script with one stall point, see that file);
    SIGKILL it once it stalls at `point` (a deterministic place in the run)."""
    env = dict(os.environ, STALL=point, STALL_MARKER=str(marker))
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(STALL_WORKER), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"worker ended (status {proc.returncode}) before the kill point {point}: "
                + proc.stderr.read().decode()[-3000:]
            )
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"worker never reached the kill point {point}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def run_to_end(args: list[str], cwd: Path | None = None, timeout: float = 900) -> str:
    """Run `tests/_stall_worker.py ARGS` without a stall point; its stdout (status 0 asserted)."""
    env = {k: v for k, v in os.environ.items() if k not in ("STALL", "STALL_MARKER")}
    proc = subprocess.run(
        [sys.executable, str(STALL_WORKER), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
