"""Subprocess body for the extraction kill-and-resume test: SIGKILLs itself after the
$KILL_AFTER-th proxy evaluation finished (and was cached) when that is set."""
import os
import signal
import sys

from bort_jax import extract, proxy
from configs import default

workdir = sys.argv[1]
kill_after = int(os.environ.get("KILL_AFTER", "0"))
calls = {"n": 0}
real = proxy.proxy_error


def counting(*args, **kwargs):
    calls["n"] += 1
    with open(os.path.join(workdir, "calls.log"), "a") as f:
        f.write(f"{args[0]}\n")
    return real(*args, **kwargs)


proxy.proxy_error = counting
original_put = extract.CandidateCache.put


def put_then_maybe_die(self, key, value, metrics=None):
    original_put(self, key, value, metrics)
    if kill_after and len(self) >= kill_after:
        os.kill(os.getpid(), signal.SIGKILL)


extract.CandidateCache.put = put_then_maybe_die
cfg = default.get_config("smoke")
cfg.inference = "flops"
summary = extract.extract(cfg, workdir)
print("CHOSEN", summary["chosen"], summary["n_cache_hits"])
