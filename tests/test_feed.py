"""Feeding the device: batches placed ahead by the prefetch thread, the sharded held-out
evaluation and the sharded, pipelined teacher pass give the results of the host-fed code.

Tests named "shard" / "mesh" need 8 devices (`.ci/run` reruns them with
XLA_FLAGS=--xla_force_host_platform_device_count=8); the others run on one.
"""

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bort_jax import distill, hf, plan, sharding, train
from bort_jax.arch import Arch, Spec
from bort_jax.data import batching
from bort_jax.models.bert import Bert, init_params

needs_8 = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (.ci/run)",
)

TEACHER, TSPEC = Arch(2, 2, 16, 32), Spec(vocab_size=48, max_positions=16, pooler=False)
STUDENT = Arch(1, 2, 8, 16)
KD = distill.KDWeights(mlm=1.0, hidden=1.0, logit=0.5)


def _data(rows: int = 16) -> distill.KDData:
    return plan.synthetic_data(
        rows, 8, 3, TEACHER, TSPEC, (0, 1, 2), want_logits=True, top_k=0, temperature=2.0
    )


def _student(data):
    return distill.build_student(STUDENT, data, TSPEC, KD, seed=0)


_PREFETCHER = batching.Prefetcher


class _HostFed:
    """The loop as it was: the thread reads host batches, the loop places each one itself."""

    def __init__(self, source, start, stop, depth=2, place=None):
        self._inner = _PREFETCHER(source, start, stop, depth)
        self._place = place

    def __iter__(self):
        for s, b in self._inner:
            yield s, self._place(b)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._inner.close()


def _run(data, monkeypatch=None, host_fed=False):
    student = _student(data)
    if host_fed:
        monkeypatch.setattr(batching, "Prefetcher", _HostFed)
    try:
        res = train.train(
            student.loss_fn,
            student.params,
            distill.train_batches(data, 8, 0),
            train.LoopConfig(num_steps=4, log_every=2),
            train.OptimConfig(learning_rate=1e-3),
        )
    finally:
        if host_fed:
            monkeypatch.undo()
    return jax.device_get(res.state.params), res.history


# ----------------------------------------------------------------------------- prefetcher


def test_prefetcher_places_in_its_thread_and_stops_when_closed():
    rows = {"x": np.arange(40, dtype=np.float32).reshape(20, 2)}
    source = batching.epoch_batches(rows, 4, seed=0)
    threads = []

    def place(b):
        threads.append(threading.get_ident())
        return jax.device_put(b)

    got = list(batching.Prefetcher(source, 0, 5, place=place))
    assert [s for s, _ in got] == list(range(5))
    assert set(threads) and threading.get_ident() not in threads
    for s, b in got:
        assert isinstance(b["x"], jax.Array)
        np.testing.assert_array_equal(np.asarray(b["x"]), source(s)["x"])
    # abandoning the loop early stops the thread (no batches left pinned on device)
    pre = batching.Prefetcher(source, 0, 1000, depth=2, place=place)
    with pre:
        for s, _ in pre:
            if s == 1:
                break
    assert not pre._thread.is_alive() and pre._q.empty()
    with pytest.raises(ValueError, match="depth"):
        batching.Prefetcher(source, 0, 1, depth=0)
    # an error in `place` surfaces at its step
    bad = batching.Prefetcher(source, 0, 3, place=lambda b: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        list(bad)


@pytest.mark.slow
def test_device_fed_training_equals_host_fed(monkeypatch):
    data = _data()
    new, hist_new = _run(data)
    old, hist_old = _run(data, monkeypatch, host_fed=True)
    jax.tree_util.tree_map(np.testing.assert_array_equal, new, old)
    assert hist_new == hist_old


@needs_8
def test_device_fed_training_equals_host_fed_on_mesh(monkeypatch):
    data = _data()
    part = sharding.Partitioner.from_config(sharding.MeshConfig(data=4, fsdp=2))
    with part.activate():
        new, hist_new = _run(data)
        old, hist_old = _run(data, monkeypatch, host_fed=True)
    jax.tree_util.tree_map(np.testing.assert_array_equal, new, old)
    assert hist_new == hist_old


# ------------------------------------------------------------------------- held-out metrics


def _heldout_host_fed(evaluator, params):
    """The evaluator as it was: one `device_get` per batch, mean on the host."""
    ms = [jax.device_get(evaluator._metric(params, b)) for b in evaluator.batches]
    return {f"heldout_{k}": float(np.mean([m[k] for m in ms])) for k in ms[0]}


def test_heldout_evaluator_equals_per_batch_fetch():
    data = _data(24)
    student = _student(data)
    evaluator = distill.HeldoutEvaluator(student.loss_fn, data, 8)
    params = jax.device_put(student.params)
    assert len(evaluator.batches) == 3
    assert evaluator(params, 0) == _heldout_host_fed(evaluator, params)
    assert evaluator(jax.device_get(params), 0) == _heldout_host_fed(evaluator, params)


@needs_8
def test_heldout_evaluator_sharded_along_data_on_mesh():
    data = _data(24)
    student = _student(data)
    evaluator = distill.HeldoutEvaluator(student.loss_fn, data, 8)
    reference = _heldout_host_fed(evaluator, jax.device_put(student.params, jax.devices()[0]))
    part = sharding.Partitioner.from_config(sharding.MeshConfig(data=8))
    placed = []
    real = part.put_batch

    def spy(batch, *a):
        out = real(batch, *a)
        placed.append(out["input_ids"].sharding)
        return out

    object.__setattr__(part, "put_batch", spy)  # frozen dataclass: only for this test
    with part.activate():
        params = jax.device_put(student.params, part.tree_shardings(student.params))
        got = evaluator(params, 0)
    assert len(placed) == 3 and all(not s.is_fully_replicated for s in placed)
    assert got.keys() == reference.keys()
    for k in got:
        np.testing.assert_allclose(got[k], reference[k], rtol=2e-6, atol=1e-7, err_msg=k)
    # fewer rows than data shards: replicated, still evaluated
    small = distill.HeldoutEvaluator(student.loss_fn, _data(4), 8)
    with part.activate():
        assert np.isfinite(small(params, 0)["heldout_total"])


# ----------------------------------------------------------------------------- teacher pass


@pytest.fixture(scope="module")
def tiny_teacher():
    arch, spec = Arch(2, 2, 16, 32), Spec(vocab_size=30522, max_positions=32, pooler=False)
    params = jax.device_get(init_params(Bert(arch, spec, mlm_head=True), jax.random.PRNGKey(3)))
    ck = hf.Checkpoint(arch, spec, params, {}, "", True)
    return distill.Teacher(ck, None)


def _teacher_reference(teacher, arrays, batch_size, layers, top_k, temperature):
    """The teacher pass as it was: one device, a blocking `device_get` after every chunk."""
    from bort_jax import losses

    model = teacher.model
    keep = np.asarray(layers, np.int32)

    @jax.jit
    def run(params, batch):
        r = model.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            output_hidden_states=True,
            mlm_positions=batch["mlm_positions"],
        )
        tk = losses.topk_teacher(r["mlm_logits"], top_k, temperature)
        return {
            "hidden": jnp.stack(r["hidden_states"], 1)[:, keep].astype(jnp.float16),
            "topk_values": tk["values"].astype(jnp.float16),
            "topk_ids": tk["ids"],
            "rest_logmass": tk["rest"],
        }

    n, parts = arrays["input_ids"].shape[0], []
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        pad = batch_size - len(idx)
        idx = np.concatenate([idx, np.full(pad, idx[-1])])
        res = jax.device_get(
            run(teacher.checkpoint.params, {k: arrays[k][idx] for k in distill.INPUT_KEYS})
        )
        parts.append({k: v[: batch_size - pad] for k, v in res.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _teacher_inputs(rows=21):
    return plan.synthetic_data(
        rows, 12, 3, TEACHER, Spec(vocab_size=30522), (), False, 0, 1.0, seed=5
    ).train


def test_pipelined_teacher_pass_equals_blocking_pass(tiny_teacher):
    arrays = _teacher_inputs()
    opts = dict(layers=(0, 2), top_k=4, temperature=2.0)
    got = distill.teacher_outputs(tiny_teacher, arrays, True, 8, **opts)
    ref = _teacher_reference(tiny_teacher, arrays, 8, (0, 2), 4, 2.0)
    assert got.keys() == ref.keys()
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    assert distill.teacher_partitioner() is None or jax.device_count() > 1


@needs_8
def test_teacher_pass_sharded_over_data_on_mesh(tiny_teacher, monkeypatch):
    arrays = _teacher_inputs()
    opts = dict(layers=(0, 2), top_k=4, temperature=2.0)
    part = distill.teacher_partitioner()
    assert part is not None and part.mesh.shape["data"] == 8
    sizes = []
    real_run = jax.jit

    def spy_jit(fn, *a, **kw):
        compiled = real_run(fn, *a, **kw)

        def call(params, batch):
            sizes.append((batch["input_ids"].shape[0], len(batch["input_ids"].sharding.device_set)))
            return compiled(params, batch)

        return call

    monkeypatch.setattr(distill.jax, "jit", spy_jit)
    got = distill.teacher_outputs(tiny_teacher, arrays, True, 4, **opts)  # 4 → 8 rows / chunk
    monkeypatch.undo()
    assert sizes == [(8, 8)] * 3
    ref = _teacher_reference(tiny_teacher, arrays, 8, (0, 2), 4, 2.0)
    for k in ref:
        if k == "topk_ids":
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
        else:
            np.testing.assert_allclose(
                np.asarray(got[k], np.float32), np.asarray(ref[k], np.float32), rtol=1e-3, atol=1e-3
            )
    # under an active partitioner the teacher uses every device of its mesh, as one data axis
    with sharding.Partitioner.from_config(sharding.MeshConfig(data=2, model=4)).activate():
        assert distill.teacher_partitioner().mesh.shape["data"] == 8
