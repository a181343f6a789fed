"""The one training loop: proxy training, KD pretraining and fine-tuning all run through `train`.

A run is defined by (the shape of the flax examples' `train_and_evaluate`)
  * `loss_fn(params, batch, rng) -> (loss, metrics)`  — pure, jit-able;
  * initial `params`;
  * a batch source `batches(step) -> batch`            — stateless (`data.batching`): the batch
    of global step `step` depends only on (data, seed, step), so the data position *is* the step;
  * a `LoopConfig` (steps, seed, cadence of logs, evaluations and checkpoints);
  * an `OptimConfig` (the one optimizer builder, `make_optimizer`);
  * evaluators: objects called as `evaluator(params, step)` returning named metrics.
`train_step` is `jax.jit`-compiled once per batch shape, donates the old state, skips (does
not apply) an update whose loss or gradient is not finite, and never syncs with the host
except every `log_every` steps. Checkpoints (Orbax, atomic) hold params, optimizer state, the
step and the rng, so a run killed at any point and restarted ends with bit-identical
parameters to an uninterrupted one. A non-finite loss stops the run cleanly, names the step
and leaves the last good checkpoint untouched.

Sharding: under an active `sharding.Partitioner` (a mesh + logical-axis rules) the same call
runs SPMD: the state is created in its shardings (`sharded_state`: parameters placed leaf by
leaf, optimizer moments born sharded under `jax.jit(out_shardings=...)`), batches are split
along the data axes, checkpoints are saved and restored sharded. Without one everything lives
on the default device. Either way the batches are read and placed on device two steps ahead,
in a thread (`batching.Prefetcher`).

Multi-process (`sharding.initialize_distributed`): every process runs this same loop; each
reads only its own rows of the global batch of a step (`Partitioner.process_rows`,
`batching.process_local`), so N processes train on the batches one process would. Process 0
alone writes `metrics.jsonl`; Orbax coordinates the checkpoint writes itself.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from bort_jax import checkpoint as ckpt_lib
from bort_jax import files, sharding
from bort_jax.data import batching
from bort_jax.data.batching import Batch, BatchSource

LossFn = Callable[[Any, Batch, jax.Array], tuple[jax.Array, dict]]


class Evaluator(Protocol):
    """Called after evaluation steps with the current parameters; returns named metrics."""

    def __call__(self, params: Any, step: int) -> Mapping[str, float]: ...


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW (decoupled, lr-scaled weight decay as BERTAdam) or SGD; warm-up + decay; clipping.

    The schedule spans the run's `LoopConfig.num_steps`. Warm-up is given either as steps
    (`warmup_steps`) or as a share of the run (`warmup_ratio`, rounded to the nearest step),
    never both; `warmup(num_steps)` resolves it, once, for every caller.
    """

    learning_rate: float = 1e-4
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    schedule: str = "linear"  # linear | cosine | constant (after warm-up)
    end_lr: float = 0.0
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-6
    clip_norm: float | None = 1.0  # None or 0: no clipping
    optimizer: str = "adamw"  # adamw | sgd (the FPTAS' AB^nC analysis assumes SGD)
    momentum: float = 0.0

    def __post_init__(self):
        if self.learning_rate <= 0:
            raise ValueError(f"optim.learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"optim.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("optim: set warmup_steps or warmup_ratio, not both")
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ValueError(f"optim.schedule={self.schedule!r}; use linear, cosine or constant")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optim.optimizer={self.optimizer!r}; use adamw or sgd")

    def warmup(self, num_steps: int) -> int:
        """Warm-up steps of a run of `num_steps` steps (at most num_steps)."""
        steps = self.warmup_steps or int(round(self.warmup_ratio * num_steps))
        return min(steps, num_steps)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How long and how a run goes: steps, seed, logging, evaluation and checkpoint cadence.

    Evaluators run after every `eval_every` steps (0: only at the end) and always after the
    last step; with a workdir, a checkpoint is written after every `checkpoint_every` steps (0:
    with every evaluation) and always after the last step, so a kill loses at most that many.
    """

    num_steps: int
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0
    checkpoint_every: int = 0
    max_to_keep: int = 2
    progress: bool = False
    desc: str = "train"

    def __post_init__(self):
        if self.num_steps <= 0:
            raise ValueError(f"num_steps must be positive, got {self.num_steps}")
        for name in ("log_every",):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def is_eval_step(self, step: int) -> bool:
        return step == self.num_steps or bool(self.eval_every and step % self.eval_every == 0)

    def is_checkpoint_step(self, step: int) -> bool:
        every = self.checkpoint_every or self.eval_every
        return step == self.num_steps or bool(every and step % every == 0)


def schedule_hparams(cfg: OptimConfig, num_steps: int) -> dict[str, float]:
    """The numbers of a run's optimizer: the schedule of `num_steps` steps and AdamW/SGD's
    constants. `make_optimizer` keeps them in the optimizer *state*, not in the program."""
    warmup = cfg.warmup(num_steps)
    return dict(
        learning_rate=cfg.learning_rate,
        end_lr=cfg.end_lr,
        warmup_steps=float(warmup),
        decay_steps=float(max(num_steps - warmup, 1)),
        weight_decay=cfg.weight_decay,
        b1=cfg.b1,
        b2=cfg.b2,
        eps=cfg.eps,
        momentum=cfg.momentum,
        clip_norm=cfg.clip_norm or 0.0,
    )


def _schedule(kind: str, hp: Mapping[str, Any]) -> optax.Schedule:
    """lr(count): linear warm-up 0 → peak over `warmup_steps`, then linear / cosine decay to
    `end_lr` over `decay_steps` (or constant). Pure jnp in every number, so the numbers may
    be traced values (they live in the optimizer state)."""
    peak, end = hp["learning_rate"], hp["end_lr"]
    warm, span = hp["warmup_steps"], hp["decay_steps"]

    def lr(count):
        count = jnp.asarray(count, jnp.float32)
        frac = jnp.clip((count - warm) / span, 0.0, 1.0)
        if kind == "linear":
            after = peak + (end - peak) * frac
        elif kind == "cosine":
            after = end + (peak - end) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        else:
            after = peak + 0.0 * frac
        before = peak * count / jnp.maximum(warm, 1.0)
        return jnp.where(count < warm, before, after)

    return lr


def learning_rate_schedule(cfg: OptimConfig, num_steps: int) -> optax.Schedule:
    """Linear warm-up to `learning_rate`, then linear/cosine decay to `end_lr` (or constant)."""
    return _schedule(cfg.schedule, schedule_hparams(cfg, num_steps))


def decay_mask(params: Any) -> Any:
    """True for weights that get weight decay: not biases, not LayerNorm scales."""

    def keep(path, _):
        names = [getattr(p, "key", str(p)) for p in path]
        return not (names[-1] in ("bias", "scale") or names[-1].endswith("bias"))

    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg: OptimConfig, num_steps: int) -> optax.GradientTransformation:
    """The one optimizer builder: `cfg` over a run of `num_steps` steps.

    Every number (learning rate, warm-up and decay lengths, weight decay, Adam's constants,
    the clipping norm) is an `optax.inject_hyperparams` entry of the optimizer state, so the
    compiled train step depends only on the *kind* of optimizer and schedule: runs that differ
    in learning rate or length share one executable (and the persistent compilation cache).
    """
    kind, sgd, clip = cfg.schedule, cfg.optimizer == "sgd", bool(cfg.clip_norm)
    use_momentum = bool(cfg.momentum)

    def factory(
        learning_rate,
        end_lr,
        warmup_steps,
        decay_steps,
        weight_decay,
        b1,
        b2,
        eps,
        momentum,
        clip_norm,
    ) -> optax.GradientTransformation:  # named: inject_hyperparams reads the signature
        schedule = _schedule(
            kind,
            dict(
                learning_rate=learning_rate,
                end_lr=end_lr,
                warmup_steps=warmup_steps,
                decay_steps=decay_steps,
            ),
        )
        if sgd:
            opt = optax.sgd(schedule, momentum=momentum if use_momentum else None)
        else:
            opt = optax.adamw(
                schedule,
                b1=b1,
                b2=b2,
                eps=eps,
                weight_decay=weight_decay,
                mask=decay_mask,
            )
        if clip:
            opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
        return opt

    return optax.inject_hyperparams(factory)(**_hparam_arrays(cfg, num_steps))


def _hparam_arrays(cfg: OptimConfig, num_steps: int) -> dict[str, jax.Array]:
    """`schedule_hparams` as float32 scalars: the `inject_hyperparams` state entries."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in schedule_hparams(cfg, num_steps).items()}


def with_hparams(opt_state: Any, cfg: OptimConfig, num_steps: int) -> Any:
    """`opt_state` (e.g. restored from a checkpoint) with this run's optimizer numbers, each
    placed like the entry it replaces."""
    old = opt_state.hyperparams
    hp = {
        k: jax.device_put(np.asarray(v), getattr(old[k], "sharding", None))
        for k, v in _hparam_arrays(cfg, num_steps).items()
    }
    return opt_state._replace(hyperparams=hp)


@flax.struct.dataclass
class TrainState:
    """Everything a resume needs; the data position is `step` (batch sources are stateless)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def init_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """The initial state on `params`' device(s): step 0, `tx.init(params)`, PRNGKey(seed)."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.PRNGKey(seed),
    )


def state_shardings(
    partitioner: sharding.Partitioner, params: Any, tx: optax.GradientTransformation, seed: int
) -> TrainState:
    """The NamedSharding of every leaf of `init_state(params, tx, seed)`, found from its
    abstract shape (`jax.eval_shape`: no array is created)."""
    abstract = jax.eval_shape(lambda p: init_state(p, tx, seed), params)
    return partitioner.tree_shardings(abstract)


def _place(x: Any, s: jax.sharding.Sharding) -> jax.Array:
    """A copy of `x` in sharding `s`; in a multi-process run from the host value (which every
    process holds) unless `x` is already a global array."""
    if sharding.multi_process() and not (isinstance(x, jax.Array) and not x.is_fully_addressable):
        x = np.asarray(jax.device_get(x))
    return jax.device_put(x, s, may_alias=False)


def _with_constants(place: Callable, consts: Mapping[str, jax.Array]) -> Callable:
    """`place` followed by adding the already placed `consts` to the batch (in the prefetch
    thread, like the placement itself); a batch entry of the same name is an error."""

    def placed(batch):
        clash = sorted(consts.keys() & batch.keys())
        if clash:
            raise ValueError(f"constants {clash} shadow batch entries")
        return {**place(batch), **consts}

    return placed


def sharded_state(
    params: Any, tx: optax.GradientTransformation, seed: int, shardings: TrainState
) -> TrainState:
    """`init_state(params, tx, seed)` created directly in `shardings` (`state_shardings`).

    Each parameter leaf is placed with its own sharding (a copy, since the train step donates
    it; in a multi-process run from the host value, which every process holds), and the
    optimizer state, step and rng are created in place by one jitted init with
    `out_shardings`: the AdamW moments are born sharded, and the whole state never sits on
    one device. The values are those of `init_state`.
    """
    placed = jax.tree_util.tree_map(_place, params, shardings.params)

    def rest(p):
        return jnp.zeros((), jnp.int32), tx.init(p), jax.random.PRNGKey(seed)

    out = (shardings.step, shardings.opt_state, shardings.rng)
    step, opt_state, rng = jax.jit(rest, out_shardings=out)(placed)
    return TrainState(step=step, params=placed, opt_state=opt_state, rng=rng)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    state_sharding: Any = None,
    metrics_sharding: Any = None,
) -> Callable:
    """`(state, batch) -> (state, metrics)`, jitted, state donated.

    The step's rng is `fold_in(state.rng, step)`, so it depends on the step alone. An update
    with a non-finite loss or gradient norm is not applied; metrics['finite'] records it.
    """

    def step_fn(state: TrainState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
        gnorm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        updates, new_opt = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        pick = lambda new, old: jax.tree_util.tree_map(
            lambda a, b: jnp.where(finite, a, b), new, old
        )
        new_state = state.replace(
            step=state.step + 1,
            params=pick(new_params, state.params),
            opt_state=pick(new_opt, state.opt_state),
        )
        metrics = dict(metrics, loss=loss, grad_norm=gnorm, finite=finite)
        return new_state, metrics

    kwargs = {}
    if state_sharding is not None:  # inputs: as placed (state sharded, batch split)
        kwargs = dict(out_shardings=(state_sharding, metrics_sharding))
    return jax.jit(step_fn, donate_argnums=(0,), **kwargs)


def optimizer_kind(cfg: OptimConfig) -> tuple:
    """What of `cfg` the compiled train step depends on (`make_optimizer` keeps every number
    in the optimizer state): the schedule, the optimizer, clipping and momentum on or off."""
    return cfg.schedule, cfg.optimizer, bool(cfg.clip_norm), bool(cfg.momentum)


@functools.lru_cache(maxsize=16)
def _step_for(loss_fn: LossFn, kind: tuple, shardings: tuple) -> Callable:
    schedule, optimizer, clip, momentum = kind
    cfg = OptimConfig(
        schedule=schedule,
        optimizer=optimizer,
        clip_norm=1.0 if clip else None,
        momentum=0.9 if momentum else 0.0,
    )
    state_sharding, metrics_sharding = (
        None if s is None else jax.tree_util.tree_unflatten(*s) for s in shardings
    )
    return make_train_step(loss_fn, make_optimizer(cfg, 1), state_sharding, metrics_sharding)


def _shared_train_step(
    loss_fn: LossFn, optim: OptimConfig, state_sharding: Any, metrics_sharding: Any
) -> Callable:
    """`make_train_step` shared by the runs of one `loss_fn`, optimizer kind and layout.

    Its numbers live in the optimizer state, so runs that differ only in them (a learning-rate
    grid, seeds, Agora's rounds) call one jitted function: traced and compiled once per batch
    shape in the process, instead of once per run. Pass the same `loss_fn` object to share
    (e.g. `finetune.classification_loss_fn` is memoised per model).
    """

    def key(tree):
        if tree is None:
            return None
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        return treedef, tuple(leaves)

    return _step_for(loss_fn, optimizer_kind(optim), (key(state_sharding), key(metrics_sharding)))


class NonFiniteLoss(RuntimeError):
    """Raised when training produced a non-finite loss; names the step."""


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    history: list[dict]  # one record per log step and one per evaluation (eval=True)
    resumed_from: int | None
    seconds: float

    @property
    def evals(self) -> list[dict]:
        return [r for r in self.history if r.get("eval")]


def _to_host(metrics: list[dict]) -> list[dict]:
    host = jax.device_get(metrics)
    return [
        {k: (float(v) if np.ndim(v) == 0 else np.asarray(v).tolist()) for k, v in m.items()}
        for m in host
    ]


def train(
    loss_fn: LossFn,
    params: Any,
    batches: BatchSource,
    loop: LoopConfig,
    optim: OptimConfig,
    *,
    evaluators: Sequence[Evaluator] = (),
    workdir: str | os.PathLike | None = None,
    partitioner: sharding.Partitioner | None = None,
    constants: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Run `loop.num_steps` steps of `loss_fn` from `params`, or resume from `workdir`.

    After each step `s` (1-based) that `loop.is_eval_step(s)`, every evaluator is called as
    `evaluator(params, s)` and its metrics go to the history as one record (eval=True), before
    the checkpoint of step `s` is written. So a run resumed from a checkpoint at step `r` has
    done exactly the evaluations of steps ≤ r, and finds them in `workdir/metrics.jsonl`; a run
    resumed after its last step trains nothing and evaluates nothing.

    Sharding: with a `partitioner` (default: the one active through
    `sharding.Partitioner.activate`, else none = one device), the train state is placed with
    `partitioner.tree_shardings`, a checkpoint is restored straight onto that layout (also
    when it was saved on another mesh) and every batch is split along the batch axes.

    `constants` ({name: array}) are frozen inputs every step reads whole, e.g. a tied embedding
    that is not trained: placed once (replicated under a partitioner) and added to each batch
    under their names, so they reach the compiled step as arguments. A closed-over array
    would instead be embedded in the program as a literal (V × H floats: seconds more to
    compile, tens of MB in the compilation cache).
    """
    partitioner = partitioner or sharding.current()
    if partitioner is not None and sharding.current() is not partitioner:
        with partitioner.activate():
            return train(
                loss_fn,
                params,
                batches,
                loop,
                optim,
                evaluators=evaluators,
                workdir=workdir,
                partitioner=partitioner,
                constants=constants,
            )
    t0 = time.perf_counter()
    tx = make_optimizer(optim, loop.num_steps)
    state_sharding = metrics_sharding = None
    # Batches reach the step already on device: the prefetch thread reads and places them
    # (`batching.Prefetcher`), on the state's device or split along the batch axes.
    if partitioner is None:
        params = jax.tree_util.tree_map(jnp.array, params)  # a copy: the step donates its state
        state = init_state(params, tx, loop.seed)
        device = next(iter(jax.tree_util.tree_leaves(state)[0].devices()))
        # committed to that device, like the states the step returns: an uncommitted first
        # state would give the step a second signature and compile it twice per run
        state = jax.device_put(state, device)
        place = lambda batch: jax.device_put(dict(batch), device)  # noqa: E731
        consts = jax.device_put(dict(constants or {}), device)
    else:  # created in its shardings (`sharded_state`), never whole on one device
        state_sharding = state_shardings(partitioner, params, tx, loop.seed)
        state = sharded_state(params, tx, loop.seed, state_sharding)
        metrics_sharding = NamedSharding(partitioner.mesh, PartitionSpec())
        consts = {k: _place(v, metrics_sharding) for k, v in (constants or {}).items()}
        place = partitioner.put_batch
        if sharding.multi_process():  # each process reads and places only its own rows
            rows = batching.global_batch_size(batches)
            batches = batching.process_local(batches, partitioner.process_rows(rows))
            place = lambda batch: partitioner.put_batch(batch, rows)  # noqa: E731
    if consts:
        place = _with_constants(place, consts)
    mngr, resumed = None, None
    history: list[dict] = []
    if workdir is not None:
        mngr = ckpt_lib.manager(workdir, loop.max_to_keep)
        if mngr.latest_step() is not None:
            state = ckpt_lib.restore(mngr, state)  # onto `state`'s shardings
            # the config, not the checkpoint, says the schedule (e.g. a longer rerun)
            state = state.replace(opt_state=with_hparams(state.opt_state, optim, loop.num_steps))
            resumed = int(state.step)
            history = _read_history(workdir, resumed)
    step_fn = _shared_train_step(loss_fn, optim, state_sharding, metrics_sharding)
    start, stop = int(state.step), loop.num_steps
    pending: list[dict] = []
    last_saved = resumed
    bar = _progress(loop.progress, start, stop, loop.desc)

    def check_finite(step: int) -> None:
        """NonFiniteLoss naming the first pending step whose loss was not finite."""
        flags = jax.device_get([m["finite"] for m in pending])
        first = step - len(flags)
        for k, ok in enumerate(flags):
            if not ok:
                loss = float(jax.device_get(pending[k]["loss"]))
                raise NonFiniteLoss(
                    f"non-finite loss ({loss}) at step {first + k}; stopped. Last good "
                    f"checkpoint: {'step ' + str(last_saved) if last_saved is not None else 'none'}"
                    f" in {workdir}"
                )

    def flush(step: int) -> None:
        """One log record: the mean of the metrics since the last one."""
        nonlocal pending
        if not pending:
            return
        check_finite(step)
        records = _to_host(pending)
        for r in records:
            r.pop("finite")
        mean = {k: float(np.mean([r[k] for r in records])) for k in records[0]}
        mean["step"] = step
        _append(history, mean, workdir)
        if bar is not None:
            bar.set_postfix(loss=f"{mean['loss']:.4f}")
        pending = []

    with batching.Prefetcher(batches, start, stop, place=place) as prefetch:
        for s, batch in prefetch:
            state, metrics = step_fn(state, batch)
            pending.append(metrics)
            done = s + 1
            if bar is not None:
                bar.update(1)
            if done % loop.log_every == 0 or done == stop:
                flush(done)
            if evaluators and loop.is_eval_step(done):
                record = {}
                for evaluator in evaluators:
                    record.update(evaluator(state.params, done))
                _append(history, dict(record, step=done, eval=True), workdir)
            if mngr is not None and loop.is_checkpoint_step(done):
                check_finite(done)
                ckpt_lib.save(mngr, done, state)
                last_saved = done
    if bar is not None:
        bar.close()
    return TrainResult(state, history, resumed, time.perf_counter() - t0)


def _progress(enabled: bool, start: int, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True)


def _append(history: list[dict], record: dict, workdir) -> None:
    history.append(record)
    if workdir is not None:  # process 0 only (files.append_text)
        files.append_text(files.join(workdir, "metrics.jsonl"), json.dumps(record) + "\n")


def _read_history(workdir, upto: int) -> list[dict]:
    """Records up to the restored step (later ones belong to the lost part of a killed run).

    Every process reads them; then process 0 rewrites the file without the later ones."""
    path = files.join(workdir, "metrics.jsonl")
    text = files.read_text(path)
    sharding.barrier("train/read_history")  # all have read before process 0 rewrites it
    if text is None:
        return []
    keep = []
    for line in text.splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a kill
        if r.get("step", math.inf) <= upto:
            keep.append(r)
    files.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
    return keep
