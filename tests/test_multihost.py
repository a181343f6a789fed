"""Multi-process runs: each process reads its own rows, process 0 alone writes the run's files.

The end-to-end tests start real processes (`jax.distributed` on localhost, CPU devices, gloo
collectives) running `pretrain.pretrain` or `extract.extract` (tests/_multihost_worker.py):
2 processes × 4 devices must train and choose like 1 process × 8 devices, with one latency
model. They are skipped under pytest-xdist (their three processes would compete with the xdist
workers for the CPUs); `.ci/run` runs them alone with `pytest -k multihost`. The other tests
here are single-process checks of the same pieces.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from bort_jax import checkpoint, files, sharding, teacher_cache
from bort_jax.data import batching

WORKER = Path(__file__).resolve().parent / "_multihost_worker.py"
STEPS = 4
# float32 losses of the same program whose cross-device sums run in another order (one
# process's in-memory all-reduce vs gloo across processes): equal to a few ulps (measured: 1 ulp,
# ~1e-7 relative); 1e-5 leaves room for that to grow over the steps, far below what one
# duplicated or missing row of a 8-row batch would change.
RTOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(
    workdir: Path,
    out: Path,
    devices: int,
    rank: int = 0,
    peers: int = 1,
    port: int = 0,
    mode: str = "pretrain",
    steps: int = STEPS,
    **extra_env: str,
):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env.update(JAX_PLATFORMS="cpu", **extra_env)
    for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(key, None)
    if peers > 1:
        env.update(
            JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
            JAX_NUM_PROCESSES=str(peers),
            JAX_PROCESS_ID=str(rank),
        )
    log = open(out.with_suffix(".log"), "w")
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(workdir), str(out), str(steps), mode],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait(procs, outs, timeout=900):
    try:
        for p in procs:
            p.wait(timeout=timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        logs = []
        for p, out in zip(procs, outs):
            lines = out.with_suffix(".log").read_text().splitlines()
            lines = [line for line in lines if "[Gloo]" not in line]
            start = next((k for k, line in enumerate(lines) if "Traceback" in line), 0)
            logs.append(f"--- {out.stem}: exit {p.returncode}\n" + "\n".join(lines[start:][:60]))
        pytest.fail("\n".join(logs))
    return [json.loads(out.read_text()) for out in outs]


def _values(history):
    return [(r["step"], bool(r.get("eval")), r) for r in history]


def _folded(result) -> list[str]:
    """Paths a process wrote outside Orbax's checkpoints (those Orbax coordinates itself),
    staging names folded onto their target, one entry per completed write (the rename onto
    the target; a staging file's own writes are dropped)."""
    out = []
    for w in result["writes"]:
        if w.startswith("checkpoints/"):
            continue
        parts = w.split("/")
        if any(p.startswith(".") and ".tmp" in p for p in parts):
            continue  # inside a staging file or directory: its rename is the write
        out.append(w)
    return out


def _own_writes(result):
    """Paths a process wrote outside Orbax's checkpoints (those Orbax coordinates itself),
    staging names folded onto their target."""
    out = set()
    for w in result["writes"]:
        if w.startswith("checkpoints/"):
            continue
        parts = w.split("/")
        parts = [p.split(".tmp")[0] if p.startswith(".") and ".tmp" in p else p for p in parts]
        out.add("/".join(parts))
    return out


alone = pytest.mark.skipif(
    bool(os.environ.get("PYTEST_XDIST_WORKER")),
    reason="starts 3 processes: run alone (pytest -k multihost; .ci/run does)",
)


@alone
def test_multihost_pretrain_2x4_matches_1x8(tmp_path):
    port = _free_port()
    outs = [tmp_path / "ref.json", tmp_path / "p0.json", tmp_path / "p1.json"]
    # one after the other: the pair alone on the CPUs (gloo gives a peer 30 s to join each
    # collective, so a process starved by a third one can time out)
    p0, p1 = _wait(
        [_start(tmp_path / "multi", outs[k + 1], 4, k, 2, port) for k in range(2)], outs[1:]
    )
    (ref,) = _wait([_start(tmp_path / "ref", outs[0], devices=8)], outs[:1])

    assert (ref["process_count"], ref["device_count"]) == (1, 8)
    assert [(p["process_index"], p["process_count"]) for p in (p0, p1)] == [(0, 2), (1, 2)]
    assert p0["device_count"] == p1["device_count"] == 8 and p0["local_device_count"] == 4

    # the same losses, step by step, on both processes as on one
    assert len(ref["history"]) == len(p0["history"]) == len(p1["history"]) == STEPS + STEPS // 2
    for (s, e, r), (s0, e0, a), (s1, e1, b) in zip(
        _values(ref["history"]), _values(p0["history"]), _values(p1["history"])
    ):
        assert (s, e) == (s0, e0) == (s1, e1)
        assert a == b  # the processes hold one global result
        assert set(r) == set(a)
        for key in r:
            if key not in ("step", "eval"):
                np.testing.assert_allclose(a[key], r[key], rtol=RTOL, err_msg=f"{key} @ {s}")
    heldout = p0["summary"]["final_heldout"]["heldout_total"]
    np.testing.assert_allclose(heldout, ref["summary"]["final_heldout"]["heldout_total"], RTOL)

    # a rerun resumes after the last step on every process, with the run's results
    for p in (ref, p0, p1):
        assert p["rerun"]["resumed_from"] == STEPS and p["rerun"]["teacher_cache_hit"]
        assert p["rerun"]["final_heldout"] == p["summary"]["final_heldout"]

    # process 0 wrote what one process writes; process 1 wrote nothing but its Orbax shards
    assert _own_writes(p0) == _own_writes(ref)
    assert {"metrics.jsonl", "summary.json", "loss_curve.png"} <= _own_writes(p0)
    assert _own_writes(p1) == set()
    multi, single = tmp_path / "multi", tmp_path / "ref"
    lines = (multi / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((single / "metrics.jsonl").read_text().splitlines())
    assert sorted(os.listdir(multi / "checkpoints")) == sorted(os.listdir(single / "checkpoints"))
    assert sorted(os.listdir(multi / "export")) == sorted(os.listdir(single / "export"))
    assert len(os.listdir(multi / "teacher_cache")) == 1  # one entry, no staging leftovers


@alone
def test_multihost_extraction_2x4_matches_1x8_with_one_latency_model(tmp_path):
    """The smoke extraction cut to two candidates: process 0 calibrates the latency model,
    both processes load that file (equal SHA-256), compute the e-values one process computes
    on 8 devices (given the same model) and choose the same candidate; process 0 alone writes
    the outputs, each once, as one process does."""
    port, steps = _free_port(), 2
    outs = [tmp_path / "x_ref.json", tmp_path / "x_p0.json", tmp_path / "x_p1.json"]
    p0, p1 = _wait(
        [
            _start(tmp_path / "multi", outs[k + 1], 4, k, 2, port, "extract", steps)
            for k in range(2)
        ],
        outs[1:],
    )
    model = p0["latency_path"]
    (ref,) = _wait(
        [_start(tmp_path / "ref", outs[0], 8, mode="extract", steps=steps, LATENCY_MODEL=model)],
        outs[:1],
    )
    assert [(p["process_index"], p["process_count"]) for p in (p0, p1)] == [(0, 2), (1, 2)]
    assert ref["process_count"] == 1 and ref["device_count"] == p0["device_count"] == 8

    # one latency model: calibrated once (process 0, in its workdir), loaded by every process
    assert p0["latency_sha256"] == p1["latency_sha256"] == ref["latency_sha256"]
    assert Path(model).parent == tmp_path / "multi"
    # the same evaluations, e-values and choice
    assert len(ref["errors"]) == 2
    for got in (p0, p1):
        assert [c for c, _ in got["errors"]] == [c for c, _ in ref["errors"]]
        np.testing.assert_allclose(
            [e for _, e in got["errors"]], [e for _, e in ref["errors"]], rtol=RTOL
        )
        assert got["summary"]["chosen"] == ref["summary"]["chosen"]
        assert got["summary"]["n_evaluations"] == ref["summary"]["n_evaluations"]
    assert p0["errors"] == p1["errors"]  # one global result on both processes

    # process 0 wrote every output as often as the one process did (plus the latency model the
    # reference run read from here), process 1 nothing
    latency_file = os.path.relpath(model, tmp_path / "multi")
    folded = lambda r: sorted(_folded(r))  # noqa: E731
    assert folded(p0) == sorted(folded(ref) + [latency_file])
    assert {"summary.json", "report.md", "report.json", "pretrain_config.py"} <= set(folded(p0))
    assert folded(p0).count("summary.json") == 1
    assert p1["writes"] == []


# ------------------------------------------------------------------ single-process pieces


def test_multihost_process_local_rows_concatenate_to_the_global_batch():
    arrays = {"x": np.arange(40).reshape(20, 2), "y": np.arange(20)}
    trim = lambda b: {k: v[..., :1] if k == "x" else v for k, v in b.items()}  # noqa: E731
    for transform in (None, trim):
        source = batching.epoch_batches(arrays, 8, seed=3, transform=transform)
        assert batching.global_batch_size(source) == 8
        shares = [np.arange(0, 4), np.arange(4, 8)]  # 2 processes, 4 rows each
        for step in (0, 2, 5):
            whole = source(step)
            parts = [batching.process_local(source, pos)(step) for pos in shares]
            for k in whole:
                np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])
    plain = lambda step: {"x": np.full((6, 2), step)}  # noqa: E731 - any callable source
    assert batching.global_batch_size(plain) == 6
    assert batching.process_local(plain, np.arange(3, 6))(4)["x"].shape == (3, 2)


def test_multihost_one_process_holds_every_row():
    part = sharding.Partitioner.from_config(sharding.MeshConfig(), jax.devices()[:1])
    np.testing.assert_array_equal(part.process_rows(6), np.arange(6))
    assert not sharding.multi_process() and sharding.is_primary()
    sharding.barrier("no-op on one process")
    assert not sharding.initialize_distributed()  # nothing set: single process
    assert jax.tree_util.tree_map(int, sharding.host_get({"a": jax.numpy.ones(())})) == {"a": 1}


def test_multihost_remote_paths_are_kept():
    assert files.is_remote("gs://bucket/run") and not files.is_remote("/data/run")
    assert files.join("gs://bucket/run/", "checkpoints") == "gs://bucket/run/checkpoints"
    assert files.resolve("gs://bucket/run") == "gs://bucket/run"
    assert checkpoint.directory("gs://bucket/run") == "gs://bucket/run/checkpoints"
    assert checkpoint.directory("rel/run") == os.path.abspath("rel/run/checkpoints")


def test_multihost_only_process_0_writes(tmp_path, monkeypatch):
    files.append_text(tmp_path / "log", "one\n")
    assert files.read_text(tmp_path / "log") == "one\n" and files.read_text(tmp_path / "no") is None
    monkeypatch.setattr(sharding, "is_primary", lambda: False)
    files.append_text(tmp_path / "log", "two\n")
    assert files.read_text(tmp_path / "log") == "one\n"
    (tmp_path / "log").unlink()
    files.atomic_write_json(tmp_path / "a.json", {"x": 1})
    files.atomic_write_dir(tmp_path / "d", lambda d: (d / "f").write_text("x"))
    # remote targets are not touched either (no network: a non-primary process returns early)
    assert files.atomic_write_text("gs://bucket/run/summary.json", "{}") == (
        "gs://bucket/run/summary.json"
    )
    assert os.listdir(tmp_path) == []


def test_multihost_teacher_cache_made_by_process_0_loaded_by_the_others(tmp_path, monkeypatch):
    specs = {"h": ((3, 2), np.dtype(np.float16))}

    def fill(out):
        out["h"][:] = 1.5

    arrays, hit = teacher_cache.get_or_build_streamed(tmp_path, "k", specs, fill)
    assert not hit
    monkeypatch.setattr(sharding, "is_primary", lambda: False)
    arrays, hit = teacher_cache.get_or_build_streamed(
        tmp_path, "k", specs, lambda out: pytest.fail("rebuilt")
    )
    assert hit and float(arrays["h"][0, 0]) == 1.5
    # a cache directory process 0's entry is not in (host-local disks): built here
    arrays, hit = teacher_cache.get_or_build_streamed(tmp_path / "local", "k", specs, fill)
    assert not hit and float(arrays["h"][2, 1]) == 1.5
