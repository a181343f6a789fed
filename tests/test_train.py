"""The one training loop: optimisation, exact resume after SIGKILL, non-finite stop."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _kill import run_to_end, stall_and_kill

from bort_jax import train

WORKER = Path(__file__).with_name("_train_worker.py")


def _linear_problem():
    w_true = np.array([1.0, -2.0, 3.0], np.float32)

    def batch_fn(step):
        x = np.random.default_rng(step).normal(size=(16, 3)).astype(np.float32)
        return {"x": x, "y": x @ w_true}

    def loss_fn(p, b, rng):
        return jnp.mean((b["x"] @ p["w"] - b["y"]) ** 2), {}

    return w_true, batch_fn, loss_fn


def test_converges_logs_evaluates_and_checkpoints(tmp_path):
    w_true, batch_fn, loss_fn = _linear_problem()
    calls = []

    def evaluator(params, step):
        calls.append(step)
        return {"err": float(jnp.abs(params["w"] - w_true).max())}

    loop = train.LoopConfig(num_steps=200, log_every=50, eval_every=60)
    optim = train.OptimConfig(learning_rate=0.1, warmup_steps=10, weight_decay=0.0)
    res = train.train(
        loss_fn,
        {"w": jnp.zeros(3)},
        batch_fn,
        loop,
        optim,
        evaluators=[evaluator],
        workdir=tmp_path,
    )
    np.testing.assert_allclose(res.state.params["w"], w_true, atol=1e-2)
    steps = [r["step"] for r in res.history if not r.get("eval")]
    assert steps == [50, 100, 150, 200]
    assert calls == [60, 120, 180, 200] == [r["step"] for r in res.evals]
    assert res.evals[-1]["err"] < 1e-2 < res.evals[0]["err"] + 1
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == len(res.history)
    # checkpoints follow the evaluations (checkpoint_every=0), the last two kept
    assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints")) == [180, 200]
    # a rerun after the end trains and evaluates nothing, and reads the history back
    again = train.train(
        loss_fn,
        {"w": jnp.zeros(3)},
        batch_fn,
        loop,
        optim,
        evaluators=[evaluator],
        workdir=tmp_path,
    )
    assert again.resumed_from == 200 and calls == [60, 120, 180, 200]
    assert again.history == res.history


def test_constants_reach_the_step_as_arguments_not_literals():
    """A frozen array given as `constants` trains exactly like the same array closed over,
    but the compiled step takes it as an argument: its lowered program has no V × H literal
    (a closure embeds one; the MLM-head fit's tied embedding is the case)."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(500, 8)).astype(np.float32)
    y = rng.integers(0, 500, 64)

    def batch_fn(step):
        x = np.random.default_rng(step).normal(size=(16, 8)).astype(np.float32)
        return {"x": x, "y": y[(16 * step) % 64 :][:16]}

    def ce(p, b, e):
        z = (b["x"] @ p["w"]) @ e.T
        return jnp.mean(jax.nn.logsumexp(z, -1) - jnp.take_along_axis(z, b["y"][:, None], 1)[:, 0])

    def with_constant(p, b, rng):
        return ce(p, b, b["emb"]), {}

    def closed_over(p, b, rng):
        return ce(p, b, jnp.asarray(emb)), {}

    loop = train.LoopConfig(num_steps=5)
    optim = train.OptimConfig(learning_rate=0.1, weight_decay=0.0)
    p0 = {"w": jnp.eye(8)}
    a = train.train(with_constant, p0, batch_fn, loop, optim, constants={"emb": emb})
    b = train.train(closed_over, p0, batch_fn, loop, optim)
    np.testing.assert_allclose(a.state.params["w"], b.state.params["w"], rtol=1e-5, atol=1e-6)
    assert [r["loss"] for r in a.history] == pytest.approx([r["loss"] for r in b.history])

    state = train.init_state(p0, train.make_optimizer(optim, 5), 0)
    batch = jax.device_put(batch_fn(0))
    text = {
        name: train._shared_train_step(fn, optim, None, None).lower(state, extra).as_text()
        for name, fn, extra in (
            ("constant", with_constant, {**batch, "emb": jnp.asarray(emb)}),
            ("closure", closed_over, batch),
        )
    }
    assert len(text["closure"]) > len(text["constant"]) + 4 * emb.size  # the literal's digits
    assert "tensor<500x8xf32>" in text["constant"]  # an argument of the step

    with pytest.raises(ValueError, match=r"constants \['x'\] shadow batch entries"):
        train.train(with_constant, p0, batch_fn, loop, optim, constants={"x": emb, "emb": emb})


@pytest.mark.parametrize("warmup", [dict(warmup_steps=2), dict(warmup_ratio=0.2)])
def test_schedule_warmup_then_linear_decay(warmup):
    sched = train.learning_rate_schedule(
        train.OptimConfig(learning_rate=1.0, end_lr=0.0, **warmup), 10
    )
    # warm-up 0 → 1 over 2 steps, then 1 → 0 over 8
    np.testing.assert_allclose(
        [float(sched(s)) for s in (0, 1, 2, 6, 10)], [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6
    )


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
@pytest.mark.parametrize("warmup", [0, 3])
def test_schedule_matches_optax(schedule, warmup):
    """The jnp schedule (numbers in the optimizer state) equals optax's own schedules."""
    cfg = train.OptimConfig(learning_rate=2e-3, end_lr=1e-4, warmup_steps=warmup, schedule=schedule)
    n = 20
    decay = {
        "linear": optax.linear_schedule(2e-3, 1e-4, n - warmup),
        "cosine": optax.cosine_decay_schedule(2e-3, n - warmup, alpha=1e-4 / 2e-3),
        "constant": optax.constant_schedule(2e-3),
    }[schedule]
    ref = (
        optax.join_schedules([optax.linear_schedule(0.0, 2e-3, warmup), decay], [warmup])
        if warmup
        else decay
    )
    ours = train.learning_rate_schedule(cfg, n)
    np.testing.assert_allclose(
        [float(ours(t)) for t in range(n + 2)], [float(ref(t)) for t in range(n + 2)], rtol=1e-5
    )


def test_one_program_for_every_learning_rate_and_length():
    """Learning rate, warm-up, length and weight decay are optimizer *state*: two runs that
    differ only in them lower to the same program (one compilation, one cache entry), and the
    numbers in the state are the run's."""

    def loss_fn(p, b, rng):
        return jnp.sum((p["w"] - b["x"]) ** 2), {}

    params, batch = {"w": jnp.zeros(3)}, {"x": jnp.ones(3)}
    texts = []
    for cfg, n in [
        (train.OptimConfig(learning_rate=1e-3, warmup_steps=2), 10),
        (train.OptimConfig(learning_rate=5e-4, warmup_ratio=0.5, weight_decay=0.1), 37),
    ]:
        tx = train.make_optimizer(cfg, n)
        state = train.init_state(params, tx, 0)
        assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(
            cfg.learning_rate
        )
        assert float(state.opt_state.hyperparams["decay_steps"]) == n - cfg.warmup(n)
        texts.append(train.make_train_step(loss_fn, tx).lower(state, batch).as_text())
    assert texts[0] == texts[1]
    # a different *kind* of schedule is a different program
    tx = train.make_optimizer(train.OptimConfig(schedule="cosine"), 10)
    other = train.make_train_step(loss_fn, tx).lower(train.init_state(params, tx, 0), batch)
    assert other.as_text() != texts[0]


def _step_compiles(records) -> int:
    return sum("Compiling jit(step_fn)" in r.getMessage() for r in records)


def test_runs_of_one_kind_share_one_compiled_step(caplog):
    """`train.train` compiles its step once per run shape in a process: the first state is
    committed like the ones the step returns (no second signature), and runs that differ
    only in the optimizer's numbers (learning rate, length, warm-up) reuse the step; each
    run still trains with its own numbers (equal to a run alone in a fresh process)."""
    _, batch_fn, loss_fn = _linear_problem()
    params = {"w": np.zeros(3, np.float32)}
    runs = [
        (train.OptimConfig(learning_rate=0.05), 6),
        (train.OptimConfig(learning_rate=0.01, warmup_steps=2, weight_decay=0.1), 9),
    ]

    def fit(optim, n):
        loop = train.LoopConfig(num_steps=n, log_every=3)
        return np.asarray(train.train(loss_fn, params, batch_fn, loop, optim).state.params["w"])

    jax.clear_caches()
    train._step_for.cache_clear()
    alone = fit(*runs[1])
    jax.clear_caches()
    train._step_for.cache_clear()
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        first, second = fit(*runs[0]), fit(*runs[1])
        assert _step_compiles(caplog.records) == 1
        np.testing.assert_array_equal(second, alone)
        assert not np.array_equal(first, second)
        fit(train.OptimConfig(learning_rate=0.01, schedule="cosine"), 4)  # another kind
        assert _step_compiles(caplog.records) == 2


def test_warmup_is_resolved_once():
    assert train.OptimConfig(warmup_ratio=0.05).warmup(12) == 1  # rounded, not truncated
    assert train.OptimConfig(warmup_steps=50).warmup(12) == 12  # capped at the run
    assert train.OptimConfig().warmup(100) == 0


def test_weight_decay_mask():
    mask = train.decay_mask({"dense": {"kernel": 1, "bias": 2}, "norm": {"scale": 3, "bias": 4}})
    assert mask == {
        "dense": {"kernel": True, "bias": False},
        "norm": {"scale": False, "bias": False},
    }


def test_bad_optim_and_loop_config_named():
    with pytest.raises(ValueError, match="warmup_steps or warmup_ratio"):
        train.OptimConfig(warmup_steps=2, warmup_ratio=0.1)
    with pytest.raises(ValueError, match="optim.warmup_ratio"):
        train.OptimConfig(warmup_ratio=1.5)
    with pytest.raises(ValueError, match="num_steps must be positive"):
        train.LoopConfig(num_steps=0)


def test_nonfinite_loss_stops_and_keeps_checkpoint(tmp_path):
    def batch_fn(step):
        return {"x": np.float32(np.nan if step == 13 else 1.0)}

    def loss_fn(p, b, rng):
        return (p["w"] - b["x"]) ** 2, {}

    loop = train.LoopConfig(num_steps=30, checkpoint_every=10, log_every=5)
    with pytest.raises(train.NonFiniteLoss, match="step 13.*step 10"):
        train.train(
            loss_fn,
            {"w": jnp.zeros(())},
            batch_fn,
            loop,
            train.OptimConfig(learning_rate=0.1),
            workdir=tmp_path,
        )
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]


def _run(workdir, out, kill_at=None):
    env = dict(os.environ, KILL_AT=str(kill_at if kill_at is not None else -1))
    return subprocess.run(
        [sys.executable, str(WORKER), str(workdir), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The worker's 30-step run without a kill: its final parameters."""
    tmp = tmp_path_factory.mktemp("ref")
    ref = _run(tmp / "ref", tmp / "ref.npz")
    assert ref.returncode == 0, ref.stderr
    out = np.load(tmp / "ref.npz")
    assert int(out["resumed"]) == -1
    return out


def _assert_same_params(a, b):
    assert a.files == b.files
    for k in a.files:
        if k != "resumed":
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_sigkill_and_resume_gives_identical_parameters(tmp_path, uninterrupted):
    killed = _run(tmp_path / "run", tmp_path / "run.npz", kill_at=23)
    assert killed.returncode == -9, killed.stderr
    assert not (tmp_path / "run.npz").exists()
    resumed = _run(tmp_path / "run", tmp_path / "run.npz")
    assert resumed.returncode == 0, resumed.stderr
    b = np.load(tmp_path / "run.npz")
    assert int(b["resumed"]) == 20
    _assert_same_params(uninterrupted, b)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["ckpt_tmp:20", "ckpt_commit:20"])
def test_sigkill_during_checkpoint_save_resumes_from_the_previous_one(
    tmp_path, uninterrupted, point
):
    """SIGKILL inside `checkpoint.save` of step 20 (bort_jax/checkpoint.py): once Orbax's
    temporary directory exists but before any array is in it (ckpt_tmp), and once every
    array is written but before the commit marker and the rename (ckpt_commit). The half
    save is invisible: the rerun resumes from step 10 and ends with the same parameters."""
    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    args = [str(WORKER), str(workdir), str(tmp_path / "run.npz")]
    stall_and_kill(args, point, marker)
    ckpts = workdir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if p.name.isdigit()) == ["10"]
    assert [p for p in ckpts.iterdir() if p.name.startswith("20.orbax-checkpoint-tmp")]
    assert not (tmp_path / "run.npz").exists()
    run_to_end(args)
    b = np.load(tmp_path / "run.npz")
    assert int(b["resumed"]) == 10
    _assert_same_params(uninterrupted, b)
    assert sorted(p.name for p in ckpts.iterdir() if p.name.isdigit()) == ["20", "30"]
