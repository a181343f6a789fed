"""One process of a multi-process pretraining or extraction run (tests/test_multihost.py).

    python tests/_multihost_worker.py WORKDIR OUT_JSON [STEPS] [pretrain|extract]

The device count comes from XLA_FLAGS, the process group from JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID (`cli.distributed`, as every script joins it; unset: one
process). 'pretrain' (the default) runs `pretrain.pretrain` on the smoke config, then again (a
resume after the last step), and writes to OUT_JSON the training history, both summaries, the
process index and count, the device counts and every file path under WORKDIR this process
opened for writing or renamed onto (Orbax's own writes excepted). 'extract' runs
`extract.extract` on the smoke config cut to two candidates and STEPS proxy steps (the latency
model: $LATENCY_MODEL when set, else calibrated into WORKDIR) and writes the summary, the
e-values this process computed, the writes, and the SHA-256 of the latency model it used
(also printed).
"""

import builtins
import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_platforms", "cpu")

from bort_jax import cli, sharding  # noqa: E402


def record_writes(workdir: str) -> tuple[list[str], object]:
    """Start recording the paths under `workdir` opened for writing or renamed onto; returns
    (the list they go to, a function that stops the recording)."""
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

    builtins.open, os.replace = open_, replace

    def stop() -> None:
        builtins.open, os.replace = real_open, real_replace

    return writes, stop


def base_result() -> dict:
    return dict(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        device_count=jax.device_count(),
        local_device_count=jax.local_device_count(),
    )


def finish(out: str, result: dict) -> None:
    with open(out, "w") as f:
        json.dump(result, f)
    print(f"process {jax.process_index()}: done", flush=True)
    sharding.barrier("worker/done")  # leave together: the shutdown barrier then has no wait
    if sharding.multi_process():
        jax.distributed.shutdown()


def run_extract(workdir: str, out: str, steps: int) -> None:
    from bort_jax import extract, proxy
    from configs import default

    used, errors = [], []  # the latency model; (candidate, e) as this process computed them
    real_model, real_proxy_error = extract.latency_model, proxy.proxy_error

    def latency_model(*args, **kwargs):
        used.append(real_model(*args, **kwargs))
        return used[-1]

    def proxy_error(arch, *args, **kwargs):
        result = real_proxy_error(arch, *args, **kwargs)
        errors.append((str(arch), result.error))
        return result

    extract.latency_model, proxy.proxy_error = latency_model, proxy_error
    cfg = default.get_config("smoke")
    cfg.grid.depth, cfg.grid.hidden, cfg.grid.heads = [1, 2], [128], [4]  # two candidates
    cfg.proxy.num_steps, cfg.compilation_cache = steps, ""
    cfg.latency_model = os.environ.get("LATENCY_MODEL", "")
    writes, stop = record_writes(workdir)
    try:
        summary = extract.extract(cfg, workdir)
    finally:
        stop()
    digest = hashlib.sha256(json.dumps(used[0].to_json(), sort_keys=True).encode()).hexdigest()
    print(f"process {jax.process_index()}: latency model sha256 {digest}", flush=True)
    path = extract.latency_model_path(extract.ExtractConfig.from_config(cfg), workdir)
    result = dict(
        base_result(),
        summary=summary,
        errors=errors,
        latency_sha256=digest,
        latency_path=str(path),
        writes=writes,
    )
    finish(out, result)


def main(workdir: str, out: str, steps: int, mode: str = "pretrain") -> None:
    cli.distributed()
    print(f"process {jax.process_index()} of {jax.process_count()}: start", flush=True)
    if mode == "extract":
        return run_extract(workdir, out, steps)
    from bort_jax import pretrain, train
    from configs import pretrain_bort

    results = []
    real_train = train.train

    def train_(*args, **kwargs):
        results.append(real_train(*args, **kwargs))
        return results[-1]

    train.train = train_
    cfg = pretrain_bort.get_config("smoke")
    cfg.num_steps, cfg.log_every, cfg.eval_every, cfg.checkpoint_every = steps, 1, 2, 2
    writes, stop = record_writes(workdir)
    try:
        summary = pretrain.pretrain(cfg, workdir)
        print(f"process {jax.process_index()}: pretrained", flush=True)
    finally:
        stop()
        train.train = real_train
    # a rerun resumes from the last checkpoint: restores, reads the history, trains nothing
    rerun = pretrain.pretrain(cfg, workdir)
    print(f"process {jax.process_index()}: reran", flush=True)
    result = dict(
        base_result(), summary=summary, rerun=rerun, history=results[0].history, writes=writes
    )
    finish(out, result)


if __name__ == "__main__":
    main(
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]) if len(sys.argv) > 3 else 4,
        sys.argv[4] if len(sys.argv) > 4 else "pretrain",
    )
