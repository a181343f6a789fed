"""The one training loop: proxy training, KD pretraining and fine-tuning all run through `train`.

A run is defined by
  * `loss_fn(params, batch, rng) -> (loss, metrics)`  — pure, jit-able;
  * `batch_fn(step) -> batch`                           — stateless: the batch of global step
    `step` depends only on (data, seed, step), so the data position *is* the step;
  * an optax transformation from `make_optimizer`.
`train_step` is `jax.jit`-compiled once per batch shape, donates the old state, skips (does
not apply) an update whose loss or gradient is not finite, and never syncs with the host
except every `log_every` steps. Checkpoints (Orbax, atomic) hold params, optimizer state, the
step and the rng, so a run killed at any point and restarted ends with bit-identical
parameters to an uninterrupted one. A non-finite loss stops the run cleanly, names the step
and leaves the last good checkpoint untouched.

Sharding: `train` takes optional `state_sharding`/`batch_sharding` (e.g. `NamedSharding`s on a
`Mesh`); with `None` everything lives on the default device. Nothing here is device-specific.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import queue
import time
from typing import Any, Callable, Iterator, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bort_jax import checkpoint as ckpt_lib

Batch = Mapping[str, np.ndarray]
LossFn = Callable[[Any, Batch, jax.Array], tuple[jax.Array, dict]]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW (decoupled, lr-scaled weight decay as BERTAdam) with warm-up + decay, clipping."""

    learning_rate: float = 1e-4
    total_steps: int = 1000
    warmup_steps: int = 0
    schedule: str = "linear"        # linear | cosine | constant (after warm-up)
    end_lr: float = 0.0
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-6
    clip_norm: float | None = 1.0
    optimizer: str = "adamw"        # adamw | sgd (the FPTAS' AB^nC analysis assumes SGD)
    momentum: float = 0.0

    def __post_init__(self):
        if self.total_steps <= 0:
            raise ValueError(f"OptimConfig.total_steps must be positive, got {self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"OptimConfig.warmup_steps={self.warmup_steps} must be in "
                             f"[0, total_steps={self.total_steps}]")
        if self.learning_rate <= 0:
            raise ValueError(f"OptimConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ValueError(f"OptimConfig.schedule={self.schedule!r} unknown")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"OptimConfig.optimizer={self.optimizer!r} unknown")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "OptimConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(config).items() if k in names})


def learning_rate_schedule(cfg: OptimConfig) -> optax.Schedule:
    """Linear warm-up to `learning_rate`, then linear/cosine decay to `end_lr` (or constant)."""
    decay_steps = max(cfg.total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "linear":
        decay = optax.linear_schedule(cfg.learning_rate, cfg.end_lr, decay_steps)
    elif cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps,
                                            alpha=cfg.end_lr / cfg.learning_rate)
    else:
        decay = optax.constant_schedule(cfg.learning_rate)
    if cfg.warmup_steps == 0:
        return decay
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def decay_mask(params: Any) -> Any:
    """True for weights that get weight decay: not biases, not LayerNorm scales."""
    def keep(path, _):
        names = [getattr(p, "key", str(p)) for p in path]
        return not (names[-1] in ("bias", "scale") or names[-1].endswith("bias"))
    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    schedule = learning_rate_schedule(cfg)
    if cfg.optimizer == "adamw":
        opt = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                          weight_decay=cfg.weight_decay, mask=decay_mask)
    else:
        opt = optax.sgd(schedule, momentum=cfg.momentum or None)
    if cfg.clip_norm:
        opt = optax.chain(optax.clip_by_global_norm(cfg.clip_norm), opt)
    return opt


@flax.struct.dataclass
class TrainState:
    """Everything a resume needs; the data position is `step` (see `batch_fn`)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def init_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params), rng=jax.random.PRNGKey(seed))


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation,
                    state_sharding=None, batch_sharding=None) -> Callable:
    """`(state, batch) -> (state, metrics)`, jitted, state donated.

    The step's rng is `fold_in(state.rng, step)`, so it depends on the step alone. An update
    with a non-finite loss or gradient norm is not applied; metrics['finite'] records it.
    """
    def step_fn(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, rng)
        gnorm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        pick = lambda new, old: jax.tree_util.tree_map(  # noqa: E731
            lambda a, b: jnp.where(finite, a, b), new, old)
        new_state = state.replace(step=state.step + 1, params=pick(new_params, state.params),
                                  opt_state=pick(new_opt, state.opt_state))
        metrics = dict(metrics, loss=loss, grad_norm=gnorm, finite=finite)
        return new_state, metrics

    kwargs = {}
    if state_sharding is not None:
        kwargs = dict(in_shardings=(state_sharding, batch_sharding),
                      out_shardings=(state_sharding, None))
    return jax.jit(step_fn, donate_argnums=(0,), **kwargs)


class NonFiniteLoss(RuntimeError):
    """Raised when training produced a non-finite loss; names the step."""


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    history: list[dict]          # one record per log step (and per eval)
    resumed_from: int | None
    seconds: float


class _Prefetch:
    """Computes batch_fn(step) for upcoming steps in a background thread."""

    def __init__(self, batch_fn: Callable[[int], Batch], start: int, stop: int, depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, args=(batch_fn, start, stop),
                                        daemon=True)
        self._thread.start()

    def _run(self, batch_fn, start, stop):
        for s in range(start, stop):
            try:
                self._q.put((s, batch_fn(s), None))
            except Exception as e:  # surfaced in the main thread
                self._q.put((s, None, e))
                return
        self._q.put(None)  # end of stream

    def __iter__(self) -> Iterator[tuple[int, Batch]]:
        while (item := self._q.get()) is not None:
            s, batch, err = item
            if err is not None:
                raise err
            yield s, batch


def _to_host(metrics: list[dict]) -> list[dict]:
    host = jax.device_get(metrics)
    return [{k: (float(v) if np.ndim(v) == 0 else np.asarray(v).tolist())
             for k, v in m.items()} for m in host]


def train(loss_fn: LossFn, params: Any, tx: optax.GradientTransformation,
          batch_fn: Callable[[int], Batch], num_steps: int, *, seed: int = 0,
          workdir: str | os.PathLike | None = None, checkpoint_every: int = 0,
          eval_fn: Callable[[Any], Mapping[str, float]] | None = None, eval_every: int = 0,
          log_every: int = 50, progress: bool = False, desc: str = "train",
          state_sharding=None, batch_sharding=None, max_to_keep: int = 2,
          stop_after: int | None = None) -> TrainResult:
    """Run `num_steps` steps of `loss_fn` from `params` (or resume from `workdir`).

    `eval_fn(params) -> {name: value}` runs every `eval_every` steps and at the end.
    `checkpoint_every > 0` (needs `workdir`) saves atomically; the final state is always saved
    when `workdir` is set. `stop_after` ends the call after that many steps of this
    invocation (for tests of kill-and-resume; the schedule still spans `num_steps`).
    History records go to `workdir/metrics.jsonl` as well.
    """
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    if checkpoint_every and workdir is None:
        raise ValueError("checkpoint_every needs a workdir")
    t0 = time.perf_counter()
    params = jax.tree_util.tree_map(jnp.array, params)  # a copy: the step donates its state
    state = init_state(params, tx, seed)
    mngr, resumed = None, None
    history: list[dict] = []
    if workdir is not None:
        mngr = ckpt_lib.manager(workdir, max_to_keep)
        if mngr.latest_step() is not None:
            state = ckpt_lib.restore(mngr, state)
            resumed = int(state.step)
            history = _read_history(workdir, resumed)
    if state_sharding is not None:
        state = jax.device_put(state, state_sharding)
    step_fn = make_train_step(loss_fn, tx, state_sharding, batch_sharding)
    start = int(state.step)
    stop = num_steps if stop_after is None else min(num_steps, start + stop_after)
    pending: list[dict] = []
    last_saved = resumed
    bar = _progress(progress, start, num_steps, desc)

    def flush(step: int) -> None:
        nonlocal pending
        if not pending:
            return
        records = _to_host(pending)
        first = step - len(records)
        for k, r in enumerate(records):
            if not r.pop("finite"):
                raise NonFiniteLoss(
                    f"non-finite loss ({r['loss']}) at step {first + k}; stopped. Last good "
                    f"checkpoint: {'step ' + str(last_saved) if last_saved is not None else 'none'}"
                    f" in {workdir}")
        mean = {k: float(np.mean([r[k] for r in records])) for k in records[0]}
        mean["step"] = step
        _append(history, mean, workdir)
        if bar is not None:
            bar.set_postfix(loss=f"{mean['loss']:.4f}")
        pending = []

    for s, batch in _Prefetch(batch_fn, start, stop):
        state, metrics = step_fn(state, batch)
        pending.append(metrics)
        done = s + 1
        if bar is not None:
            bar.update(1)
        if done % log_every == 0 or done == stop:
            flush(done)
        if eval_fn is not None and eval_every and done % eval_every == 0 and done != num_steps:
            _append(history, dict(eval_fn(state.params), step=done, eval=True), workdir)
        if mngr is not None and (done == stop or (checkpoint_every and
                                                  done % checkpoint_every == 0)):
            flush(done)
            ckpt_lib.save(mngr, done, state)
            last_saved = done
        if done >= stop:
            break
    if bar is not None:
        bar.close()
    if eval_fn is not None and int(state.step) == num_steps:
        _append(history, dict(eval_fn(state.params), step=num_steps, eval=True), workdir)
    return TrainResult(state, history, resumed, time.perf_counter() - t0)


def _progress(enabled: bool, start: int, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True)


def _append(history: list[dict], record: dict, workdir) -> None:
    history.append(record)
    if workdir is not None:
        with open(os.path.join(os.fspath(workdir), "metrics.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")


def _read_history(workdir, upto: int) -> list[dict]:
    """Records up to the restored step (later ones belong to the lost part of a killed run)."""
    path = os.path.join(os.fspath(workdir), "metrics.jsonl")
    if not os.path.exists(path):
        return []
    keep = []
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a kill
            if r.get("step", math.inf) <= upto:
                keep.append(r)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
    return keep


def evaluate(metric_fn: Callable[[Any, Batch], dict], params: Any,
             batches: list[Batch]) -> dict[str, float]:
    """Mean of jitted `metric_fn(params, batch)` over `batches` weighted by metrics['count']
    when present (so a partial last batch is weighted correctly)."""
    fn = jax.jit(metric_fn)
    sums: dict[str, float] = {}
    total = 0.0
    for b in batches:
        m = jax.device_get(fn(params, b))
        w = float(m.pop("count", 1.0))
        total += w
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + float(v) * w
    return {k: v / max(total, 1e-12) for k, v in sums.items()}
