"""Subprocess worker for the kill-and-resume tests of the long jobs.

    python tests/_job_worker.py JOB CONFIG_JSON WORKDIR [STALL_FILE MARKER]

JOB is `finetune` or `pretrain`; CONFIG_JSON the job's config as JSON. With STALL_FILE, the
atomic write of that output file (e.g. metrics.json, written after the run's last checkpoint)
is replaced by creating MARKER and sleeping, so a test can SIGKILL the process exactly between
the last checkpoint and the final outputs.
"""

import json
import sys
import time
from pathlib import Path

import ml_collections

from bort_jax import files, finetune, pretrain

job, config, workdir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
if len(sys.argv) > 4:
    stall_name, marker = sys.argv[4], Path(sys.argv[5])
    real_write = files.atomic_write_json

    def stalled(path, obj, **kw):
        if Path(path).name == stall_name:
            marker.write_text("stalled")
            time.sleep(600)
        return real_write(path, obj, **kw)

    files.atomic_write_json = stalled
if job == "finetune":
    finetune.finetune(config, workdir)
elif job == "pretrain":
    pretrain.pretrain(ml_collections.ConfigDict(config), workdir)
else:
    raise SystemExit(f"unknown job {job!r}")
