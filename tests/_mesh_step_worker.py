"""Compiles a KD train step on a data=2 x fsdp=2 x model=2 mesh of 8 fake CPU devices.

Run by tests/test_bert_sharding.py in a subprocess, so that XLA's own warnings (written to
stderr by the C++ runtime, out of Python's reach) can be read: the SPMD partitioner reports
"Involuntary full rematerialization" there when it has to replicate a tensor to reshard it.
The persistent compilation cache is off, so every program is partitioned here.

    python tests/_mesh_step_worker.py step      # the KD step of a padded student (unrolled,
                                                #   then scanned + remat); prints the word
                                                #   table's PartitionSpec as JSON
    python tests/_mesh_step_worker.py control   # a gather with a table split along the same
                                                #   mesh axis as its rows (the partitioner
                                                #   must warn: shows the warning is caught)
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_compilation_cache", False)

from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from bort_jax import distill, sharding, train  # noqa: E402
from bort_jax.arch import Arch, Spec  # noqa: E402
from bort_jax.models.bert import (  # noqa: E402
    VOCAB_MULTIPLE,
    Bert,
    pad_vocab,
    stack_layers,
)

V, B, L, P = 30522, 8, 16, 4
ARCH, TEACHER_HIDDEN = Arch(2, 4, 32, 64), 48
SPEC = Spec(vocab_size=V, max_positions=L, pooler=False)
MESH = sharding.MeshConfig(data=2, fsdp=2, model=2)


def kd_step(part: sharding.Partitioner, scan_layers: bool) -> dict:
    model = Bert(
        ARCH,
        SPEC,
        mlm_head=True,
        scan_layers=scan_layers,
        remat=scan_layers,
        vocab_multiple=VOCAB_MULTIPLE,
    )
    params = distill.init_student(ARCH, SPEC, TEACHER_HIDDEN, seed=0)
    student = pad_vocab(params["student"], model.padded_vocab)
    if scan_layers:
        student = stack_layers(student, ARCH.depth)
    params = {**params, "student": student}
    data = distill.KDData({}, {}, {}, {}, ARCH.depth, TEACHER_HIDDEN, V)
    weights = distill.KDWeights(mlm=1.0, hidden=1.0, logit=1.0)
    loss_fn = distill.make_loss_fn(model, data, weights)
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(0, V, (B, L)).astype(np.int32),
        "attention_mask": np.ones((B, L), np.int32),
        "token_type_ids": np.zeros((B, L), np.int32),
        "mlm_positions": rng.integers(0, L, (B, P)).astype(np.int32),
        "mlm_ids": rng.integers(0, V, (B, P)).astype(np.int32),
        "mlm_weights": np.ones((B, P), np.float32),
        "teacher_hidden": np.zeros((B, ARCH.depth + 1, L, TEACHER_HIDDEN), np.float16),
        "teacher_logits": np.zeros((B, P, V), np.float16),
    }
    tx = train.make_optimizer(train.OptimConfig(learning_rate=1e-3), 10)
    state = train.init_state(params, tx, 0)
    shardings = part.tree_shardings(state)
    state = jax.device_put(state, shardings)
    step = train.make_train_step(loss_fn, tx, shardings, NamedSharding(part.mesh, PartitionSpec()))
    step.lower(state, part.put_batch(batch)).compile()
    table = state.params["student"]["embeddings"]["word_embeddings"]["embedding"]
    return {"shape": list(table.shape), "spec": [str(a) for a in table.sharding.spec]}


def control(part: sharding.Partitioner) -> None:
    """The pre-fix position-embedding lookup: table [P, H] split along 'embed' (fsdp), ids
    split along the batch (data, fsdp), output constrained to the batch split."""
    mesh = part.mesh
    table = jax.device_put(
        np.ones((L, ARCH.hidden), np.float32), NamedSharding(mesh, PartitionSpec(None, "fsdp"))
    )
    ids = jax.device_put(
        np.zeros((B, L), np.int32), NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    )

    def lookup(t, i):
        out = jax.numpy.take(t, i, axis=0)
        return jax.lax.with_sharding_constraint(
            out, NamedSharding(mesh, PartitionSpec(("data", "fsdp"), None, None))
        )

    jax.jit(lookup).lower(table, ids).compile()


def main() -> None:
    part = sharding.Partitioner.from_config(MESH)
    with part.activate():
        if sys.argv[1] == "control":
            control(part)
            print(json.dumps({"control": True}))
        else:
            out = {str(scan): kd_step(part, scan) for scan in (False, True)}
            print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
