"""Subprocess body of the extraction tests: `extract.extract` on the smoke config.

  python tests/_extract_worker.py WORKDIR SHARED_DIR

SHARED_DIR holds what the runs of one test share on purpose: the latency model
(`config.latency_model`; the first run calibrates it, the others reuse it) and the JAX
compilation cache (`config.compilation_cache`). Every proxy evaluation is appended to
WORKDIR/calls.log as "<pid> <candidate>" before it starts. With $KILL_AFTER=n set, the process
SIGKILLs itself right after the n-th candidate entry was stored; the tests also kill it from
outside at other points (both are real signals, nothing in the library knows about them).
"""

import os
import signal
import sys

from bort_jax import extract, proxy
from configs import default

workdir, shared = sys.argv[1], sys.argv[2]
kill_after = int(os.environ.get("KILL_AFTER", "0"))
real_proxy_error = proxy.proxy_error


def logged_proxy_error(*args, **kwargs):
    with open(os.path.join(workdir, "calls.log"), "a") as f:
        f.write(f"{os.getpid()} {args[0]}\n")
    return real_proxy_error(*args, **kwargs)


proxy.proxy_error = logged_proxy_error
real_put = extract.CandidateCache.put


def put_then_maybe_die(self, key, value, metrics=None):
    real_put(self, key, value, metrics)
    if kill_after and len(self) >= kill_after:
        os.kill(os.getpid(), signal.SIGKILL)


extract.CandidateCache.put = put_then_maybe_die
cfg = default.get_config("smoke")
cfg.latency_model = os.path.join(shared, "latency_model.json")
cfg.compilation_cache = os.path.join(shared, "jax_cache")
summary = extract.extract(cfg, workdir)
print("CHOSEN", summary["chosen"], summary["n_cache_hits"])
