"""Subprocess body of the Agora kill-and-resume test: `python tests/_agora_worker.py CONFIG.json
WORKDIR` runs `bort_jax.experiments.agora_glue.run` on the JSON config into WORKDIR (the test
SIGKILLs it from outside, then reruns it)."""

import json
import sys
from pathlib import Path

from bort_jax.experiments import agora_glue

config = json.loads(Path(sys.argv[1]).read_text())
agora_glue.run(config, sys.argv[2])
