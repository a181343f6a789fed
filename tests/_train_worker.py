"""Subprocess body for the kill-and-resume test: a tiny BERT MLM run; SIGKILLs itself at
step $KILL_AT (inside batch_fn, i.e. mid-run, between checkpoints) when that is set."""

import os
import signal
import sys

import jax
import numpy as np
import optax

from bort_jax import train
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params

workdir, out = sys.argv[1], sys.argv[2]
kill_at = int(os.environ.get("KILL_AT", "-1"))
model = Bert(Arch(1, 2, 16, 24), Spec(vocab_size=32, max_positions=16), mlm_head=True)
params = init_params(model, jax.random.PRNGKey(0))


def batch_fn(step):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    rng = np.random.default_rng(step)
    return {"ids": rng.integers(0, 32, (4, 8)).astype(np.int32)}


def loss_fn(p, batch, rng):
    logits = model.apply({"params": p}, batch["ids"], deterministic=False, rngs={"dropout": rng})[
        "mlm_logits"
    ]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["ids"]).mean()
    return loss, {}


res = train.train(
    loss_fn,
    params,
    batch_fn,
    train.LoopConfig(num_steps=30, seed=1, checkpoint_every=10, log_every=5),
    train.OptimConfig(learning_rate=1e-3, warmup_steps=5),
    workdir=workdir,
)
np.savez(
    out,
    *jax.tree_util.tree_leaves(jax.device_get(res.state.params)),
    resumed=-1 if res.resumed_from is None else res.resumed_from,
)
