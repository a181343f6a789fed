"""One process of a multi-process pretraining run (tests/test_multihost.py).

    python tests/_multihost_worker.py WORKDIR OUT_JSON [STEPS]

The device count comes from XLA_FLAGS, the process group from JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID (`cli.distributed`, as every script joins it; unset: one
process). Runs `pretrain.pretrain` on the smoke config, then again (a resume after the last
step), and writes to OUT_JSON the training history, both summaries, the process index and count,
the device counts and every file path under WORKDIR this process opened for writing or renamed
onto (Orbax's own writes excepted).
"""

import builtins
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_platforms", "cpu")

from bort_jax import cli, sharding  # noqa: E402


def main(workdir: str, out: str, steps: int) -> None:
    cli.distributed()
    print(f"process {jax.process_index()} of {jax.process_count()}: start", flush=True)
    from bort_jax import pretrain, train
    from configs import pretrain_bort

    root = os.path.realpath(workdir)
    writes: list[str] = []

    def record(path) -> None:
        try:
            p = os.path.realpath(os.fspath(path))
        except TypeError:
            return
        if p.startswith(root):
            writes.append(os.path.relpath(p, root))

    real_open, real_replace = builtins.open, os.replace

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            record(file)
        return real_open(file, mode, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        record(dst)
        return real_replace(src, dst, *args, **kwargs)

    results = []
    real_train = train.train

    def train_(*args, **kwargs):
        results.append(real_train(*args, **kwargs))
        return results[-1]

    builtins.open, os.replace, train.train = open_, replace, train_
    cfg = pretrain_bort.get_config("smoke")
    cfg.num_steps, cfg.log_every, cfg.eval_every, cfg.checkpoint_every = steps, 1, 2, 2
    try:
        summary = pretrain.pretrain(cfg, workdir)
        print(f"process {jax.process_index()}: pretrained", flush=True)
    finally:
        builtins.open, os.replace, train.train = real_open, real_replace, real_train
    # a rerun resumes from the last checkpoint: restores, reads the history, trains nothing
    rerun = pretrain.pretrain(cfg, workdir)
    print(f"process {jax.process_index()}: reran", flush=True)
    result = dict(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        device_count=jax.device_count(),
        local_device_count=jax.local_device_count(),
        summary=summary,
        rerun=rerun,
        history=results[0].history,
        writes=writes,
    )
    with real_open(out, "w") as f:
        json.dump(result, f)
    print(f"process {jax.process_index()}: done", flush=True)
    sharding.barrier("worker/done")  # leave together: the shutdown barrier then has no wait
    if sharding.multi_process():
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 4)
