"""SPMD sharding (bort_jax/sharding.py) and the sharded training loop.

The mesh tests need 8 devices: `.ci/run` runs this file in a second pytest process with
XLA_FLAGS=--xla_force_host_platform_device_count=8 (8 fake CPU devices); in the default
single-device process they are skipped with that reason.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bort_jax import sharding, train
from bort_jax.arch import Arch, Spec
from bort_jax.data import batching
from bort_jax.models.bert import Bert, init_params, logical_axes, stack_layers

needs_8 = pytest.mark.skipif(
    jax.device_count() < 8,
    reason="needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8 (.ci/run)",
)

ARCH, SPEC = Arch(2, 4, 32, 64), Spec(vocab_size=64, max_positions=16, pooler=True)


def test_param_axes_reproduce_the_model_annotations():
    model = Bert(ARCH, SPEC, mlm_head=True, num_labels=3)
    declared = logical_axes(model)
    flat = jax.tree_util.tree_flatten_with_path(
        declared, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
    )[0]
    assert len(flat) > 20
    for path, spec in flat:
        name = sharding._path_str(path)
        assert sharding.param_axes(name, len(spec)) == tuple(spec), name
    # the same leaves deeper in a KD / optimizer tree, and the KD projections
    assert sharding.param_axes("opt/0/mu/student/layer_1/ffn_in/kernel", 2) == ("embed", "mlp")
    assert sharding.param_axes("params/proj/3", 2) == ("embed", None)
    assert sharding.param_axes("opt/count", 0) == ()


def test_param_axes_reproduce_the_scanned_model_annotations():
    model = Bert(ARCH, SPEC, mlm_head=True, num_labels=3, scan_layers=True)
    declared = logical_axes(model)
    flat = jax.tree_util.tree_flatten_with_path(
        declared, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
    )[0]
    names = [sharding._path_str(path) for path, _ in flat]
    stacked = [spec for name, (_, spec) in zip(names, flat) if name.startswith("layers/")]
    assert len(stacked) == 16 and all(spec[0] == "layers" for spec in stacked)
    for path, spec in flat:
        name = sharding._path_str(path)
        assert sharding.param_axes(name, len(spec)) == tuple(spec), name
    # deeper in a KD / optimizer tree; the unrolled layout is unchanged
    assert sharding.param_axes("opt/0/mu/student/layers/ffn_in/kernel", 3) == (
        "layers",
        "embed",
        "mlp",
    )
    assert sharding.param_axes("opt/0/mu/student/layers/ffn_norm/scale", 2) == ("layers", "embed")
    assert sharding.param_axes("student/layer_1/ffn_in/kernel", 3) == (None, None, None)


@needs_8
def test_stacked_layers_axis_is_never_sharded_on_mesh():
    params = stack_layers(_problem()[0], ARCH.depth)
    part = sharding.Partitioner.from_config(sharding.MeshConfig(data=2, fsdp=2, model=2))
    shardings = part.tree_shardings(params)
    P = jax.sharding.PartitionSpec
    assert shardings["layers"]["ffn_in"]["kernel"].spec == P(None, "fsdp", "model")
    assert shardings["layers"]["attention"]["query"]["bias"].spec == P(None, "model")
    placed = jax.device_put(params, shardings)
    shard = placed["layers"]["ffn_in"]["kernel"].addressable_shards[0].data
    assert shard.shape == (ARCH.depth, 16, 32)


def test_mesh_config_resolution_and_errors():
    cfg = sharding.MeshConfig(data=-1, fsdp=2, model=2)
    assert cfg.shape(8) == (2, 2, 2) and sharding.MeshConfig().shape(8) == (8, 1, 1)
    with pytest.raises(ValueError, match="not a multiple of 3"):
        sharding.MeshConfig(model=3).shape(8)
    with pytest.raises(ValueError, match="at most one may be -1"):
        sharding.MeshConfig(data=-1, model=-1).shape(8)
    with pytest.raises(ValueError, match="needs 4 devices, 8 available"):
        sharding.MeshConfig(data=2, fsdp=2, model=1).shape(8)


def _problem():
    model = Bert(ARCH, SPEC, mlm_head=True, dropout_rate=0.0, attention_dropout_rate=0.0)
    params = jax.device_get(init_params(model, jax.random.PRNGKey(0)))
    ids = np.random.default_rng(0).integers(5, 64, (64, 16)).astype(np.int32)

    def loss_fn(p, batch, rng):
        logits = model.apply({"params": p}, batch["ids"], deterministic=True)["mlm_logits"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["ids"]).mean(), {}

    return params, batching.epoch_batches({"ids": ids}, 8, seed=0), loss_fn


def _run(partitioner=None, steps=4, workdir=None, checkpoint_every=0):
    params, batches, loss_fn = _problem()
    loop = train.LoopConfig(num_steps=steps, log_every=1, checkpoint_every=checkpoint_every)
    return train.train(
        loss_fn,
        params,
        batches,
        loop,
        train.OptimConfig(learning_rate=1e-2),
        workdir=workdir,
        partitioner=partitioner,
    )


def _assert_close(a, b, atol=2e-5):
    jax.tree_util.tree_map(
        lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-4),
        a,
        b,
    )


def _record_batches(monkeypatch):
    """Every batch `Partitioner.put_batch` placed (what the sharded loop fed its step)."""
    placed = []
    real = sharding.Partitioner.put_batch

    def put_batch(self, batch):
        out = real(self, batch)
        placed.append(out)
        return out

    monkeypatch.setattr(sharding.Partitioner, "put_batch", put_batch)
    return placed


@needs_8
@pytest.mark.parametrize("mesh", [dict(data=8), dict(data=2, fsdp=2, model=2)])
def test_sharded_step_equals_unsharded_on_mesh(mesh, monkeypatch):
    with jax.default_matmul_precision("highest"):
        ref = _run()
        part = sharding.Partitioner.from_config(sharding.MeshConfig(**mesh))
        placed = _record_batches(monkeypatch)
        with part.activate():  # callers of train.train change nothing
            out = _run()
    _assert_close(out.state.params, ref.state.params)
    for key in ("loss", "grad_norm"):  # grad_norm: a constant factor AdamW would hide
        assert [r[key] for r in out.history] == pytest.approx(
            [r[key] for r in ref.history], rel=1e-5
        ), key
    # every batch went through the mesh, its rows split over the data-parallel shards
    shape = {"data": 1, "fsdp": 1, "model": 1, **mesh}
    rows_per_shard = 8 // (shape["data"] * shape["fsdp"])
    assert len(placed) == 4
    for batch in placed:
        ids = batch["ids"]
        assert ids.sharding.mesh.shape == shape and len(ids.addressable_shards) == 8
        assert ids.sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"), None)
        assert {s.data.shape for s in ids.addressable_shards} == {(rows_per_shard, 16)}
        starts = {s.index[0].start or 0 for s in ids.addressable_shards}
        assert starts == set(range(0, 8, rows_per_shard))  # together the shards hold every row
    # the whole train state (params, AdamW moments, step, rng) lives on that mesh
    for leaf in jax.tree_util.tree_leaves(out.state):
        assert leaf.sharding.mesh.shape == shape
        assert {s.device for s in leaf.addressable_shards} == set(jax.devices())
    kernel = out.state.params["layer_0"]["ffn_in"]["kernel"]
    (mu,) = [
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(out.state.opt_state)[0]
        if sharding._path_str(path).endswith("mu/layer_0/ffn_in/kernel")
    ]
    if mesh.get("model", 1) > 1:  # [embed, mlp] split over (fsdp, model)
        assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "model")
        assert kernel.addressable_shards[0].data.shape == (16, 32)
        assert mu.sharding == kernel.sharding
    else:  # pure data parallelism: every device holds the whole state
        for leaf in jax.tree_util.tree_leaves(out.state):
            assert leaf.sharding.is_fully_replicated


@needs_8
def test_train_state_is_created_in_its_shardings_on_mesh(monkeypatch):
    """`train.train` on a mesh builds its state with `sharded_state`: every leaf carries the
    NamedSharding of the logical-axis rules, the optimizer state is created inside a jitted
    init (its `tx.init` sees tracers, never concrete arrays), the values are those of the old
    path (`init_state` on one device, then `device_put`), and training ends where it did."""
    params, _, loss_fn = _problem()
    tx = train.make_optimizer(train.OptimConfig(learning_rate=1e-2), 4)
    part = sharding.Partitioner.from_config(sharding.MeshConfig(data=2, fsdp=2, model=2))
    P = jax.sharding.PartitionSpec
    with part.activate():
        want = train.state_shardings(part, params, tx, 0)
        state = train.sharded_state(params, tx, 0, want)
        old = jax.device_put(train.init_state(jax.device_put(params), tx, 0), want)
    got = jax.tree_util.tree_map(lambda x: x.sharding, state)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert isinstance(g, jax.sharding.NamedSharding) and g == w
    kernel = state.params["layer_0"]["ffn_in"]["kernel"]
    (mu,) = [
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(state.opt_state)[0]
        if sharding._path_str(path).endswith("mu/layer_0/ffn_in/kernel")
    ]
    assert kernel.sharding.spec == P("fsdp", "model") == mu.sharding.spec
    assert mu.addressable_shards[0].data.shape == (16, 32)
    jax.tree_util.tree_map(
        np.testing.assert_array_equal, jax.device_get(state), jax.device_get(old)
    )
    # train.train takes this path: tx.init only ever traced (under jit), results unchanged
    seen = []
    real_make = train.make_optimizer

    def make_optimizer(cfg, num_steps):
        inner = real_make(cfg, num_steps)

        def init(p):
            seen.append(all(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(p)))
            return inner.init(p)

        return optax.GradientTransformation(init, inner.update)

    monkeypatch.setattr(train, "make_optimizer", make_optimizer)
    with jax.default_matmul_precision("highest"):
        ref = _run()
        out = _run(part)
    # one concrete init (the single-device run, as before), then the mesh run's: traced only
    assert seen[0] is False and len(seen) > 1 and all(seen[1:]), seen
    _assert_close(out.state.params, ref.state.params)
    assert [r["loss"] for r in out.history] == pytest.approx(
        [r["loss"] for r in ref.history], rel=1e-5
    )


@needs_8
@pytest.mark.parametrize("mesh", [dict(data=8), dict(data=2, fsdp=2, model=2)])
def test_sharded_step_gradients_equal_one_device_gradients_on_mesh(mesh):
    """The loop's jitted step on the mesh with plain SGD (lr 1): the update is exactly minus
    the gradient, so a wrong gradient (a missing or extra 1/8 from the split batch, a shard
    summed twice) shows here even where AdamW's normalisation would hide it."""
    params, batches, loss_fn = _problem()
    batch = batches(0)
    tx = optax.sgd(1.0)
    with jax.default_matmul_precision("highest"):
        want = jax.jit(jax.grad(lambda p: loss_fn(p, batch, None)[0]))(params)
        part = sharding.Partitioner.from_config(sharding.MeshConfig(**mesh))
        with part.activate():
            state = train.init_state(jax.tree_util.tree_map(jnp.array, params), tx, 0)
            state_sharding = part.tree_shardings(state)
            state = jax.device_put(state, state_sharding)
            before = jax.device_get(state.params)
            step = train.make_train_step(
                loss_fn,
                tx,
                state_sharding,
                jax.sharding.NamedSharding(part.mesh, jax.sharding.PartitionSpec()),
            )
            placed = part.put_batch(batch)
            new, metrics = step(state, placed)
    got = jax.tree_util.tree_map(lambda a, b: a - np.asarray(b), before, new.params)
    _assert_close(got, want, atol=1e-6)
    norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree_util.tree_leaves(want)))
    assert float(metrics["grad_norm"]) == pytest.approx(float(norm), rel=1e-5)
    assert (
        new.params["layer_0"]["ffn_in"]["kernel"].sharding
        == (state_sharding.params["layer_0"]["ffn_in"]["kernel"])
    )


@needs_8
def test_per_device_parameter_bytes_shrink_as_model_axis_grows_on_mesh():
    params, _, _ = _problem()
    sizes = []
    for model in (1, 2, 4):
        part = sharding.Partitioner.from_config(sharding.MeshConfig(model=model))
        placed = jax.device_put(params, part.tree_shardings(params))
        sizes.append(part.per_device_bytes(placed))
    total = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(params))
    assert sizes[0] == total and sizes[0] > sizes[1] > sizes[2], (total, sizes)


@needs_8
def test_put_batch_splits_rows_and_names_indivisible_batches_on_mesh():
    part = sharding.Partitioner.from_config(sharding.MeshConfig(data=4, fsdp=2))
    placed = part.put_batch({"ids": np.arange(16).reshape(8, 2)})
    assert placed["ids"].addressable_shards[0].data.shape == (1, 2)
    with pytest.raises(ValueError, match="'ids' has 6 rows, not divisible by the 8"):
        part.put_batch({"ids": np.zeros((6, 2))})


@needs_8
def test_checkpoint_saved_on_one_mesh_restores_onto_another_mesh(tmp_path):
    with jax.default_matmul_precision("highest"):
        ref = _run(steps=6)
        first = sharding.Partitioner.from_config(sharding.MeshConfig(data=8))
        _run(first, steps=6, workdir=tmp_path, checkpoint_every=3)
        # drop the final checkpoint: the rerun restores step 3 (saved on data=8) onto a
        # (2, 2, 2) mesh and trains steps 4-6 there
        import shutil

        shutil.rmtree(tmp_path / "checkpoints" / "6")
        second = sharding.Partitioner.from_config(sharding.MeshConfig(data=2, fsdp=2, model=2))
        out = _run(second, steps=6, workdir=tmp_path, checkpoint_every=3)
    assert out.resumed_from == 3
    leaf = out.state.params["embeddings"]["word_embeddings"]["embedding"]
    assert leaf.sharding.mesh.shape == {"data": 2, "fsdp": 2, "model": 2}
    _assert_close(out.state.params, ref.state.params)
    assert isinstance(out.state.step, jax.Array) and int(out.state.step) == 6
    assert jnp.isfinite(out.history[-1]["loss"])
