"""Fine-tuning: learning on an easy synthetic task, encodings, best-dev selection, errors,
determinism and exact resume. A tiny random BERT (Arch 1,2,32,64) with a WordPiece vocabulary
built here keeps the whole file well under a minute on two CPU cores."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from _kill import kill_when

from bort_jax import finetune as ft
from bort_jax import hf
from bort_jax.arch import Arch, Spec
from bort_jax.config import ConfigError
from bort_jax.models.bert import Bert, fresh_params
from bort_jax.tasks import Example, get_task
from bort_jax.tasks.encoding import encode_examples, trim
from bort_jax.tasks.loading import DataNotFoundError, load_examples

POSITIVE = ("good", "great", "fine", "nice")
NEGATIVE = ("bad", "awful", "poor", "dull")
FILLER = (
    "the",
    "movie",
    "was",
    "a",
    "film",
    "plot",
    "actor",
    "really",
    "this",
    "and",
    "story",
    "very",
    "it",
    "so",
)
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TINY = Arch(1, 2, 32, 64)


def _sentence(rng: np.random.Generator, label: int) -> str:
    words = list(rng.choice(FILLER, size=rng.integers(3, 7)))
    words.insert(
        int(rng.integers(0, len(words) + 1)), str(rng.choice(POSITIVE if label else NEGATIVE))
    )
    return " ".join(words)


def _write_sst2(root: Path, n_train: int, n_dev: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    task_dir = root / "glue" / "SST-2"
    task_dir.mkdir(parents=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        labels = rng.integers(0, 2, size=n)
        rows = [f"{_sentence(rng, int(y))}\t{int(y)}" for y in labels]
        (task_dir / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A random tiny BERT in HF format with its own vocab.txt."""
    root = tmp_path_factory.mktemp("tiny")
    vocab = SPECIAL + POSITIVE + NEGATIVE + FILLER + ("cause", "effect", "?", ".")
    tok_dir = root / "tok"
    tok_dir.mkdir()
    (tok_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    spec = Spec(vocab_size=len(vocab), max_positions=32, pooler=False)
    params = fresh_params(Bert(TINY, spec))
    return hf.save(root / "model", jax.device_get(params), TINY, spec, tokenizer_dir=tok_dir)


@pytest.fixture(scope="module")
def sst2_dir(tmp_path_factory) -> Path:
    return _write_sst2(tmp_path_factory.mktemp("data"), n_train=512, n_dev=128)


def _config(tiny_dir, data_dir, **kw) -> dict:
    base = dict(
        task="sst2",
        init=str(tiny_dir),
        data_dir=str(data_dir),
        max_seq_len=16,
        batch_size=16,
        learning_rate=2e-3,
        num_steps=24,
        eval_every=8,
        log_every=4,
        warmup_ratio=0.1,
        dropout_rate=0.0,
        eval_batch_size=64,
    )
    return dict(base, **kw)


# ------------------------------------------------------------------------------ learning


@pytest.mark.slow
def test_loss_decreases_and_dev_accuracy_rises(tiny_dir, sst2_dir, tmp_path):
    res = ft.finetune(
        _config(tiny_dir, sst2_dir, num_steps=160, eval_every=40, log_every=20), tmp_path
    )
    losses = [r["loss"] for r in res["train_loss"]]
    assert losses[-1] < 0.5 * losses[0], losses
    accs = [r["dev_accuracy"] for r in res["evals"]]
    assert res["best"]["accuracy"] >= 0.9 > 0.5, accs
    # best-dev selection: the first eval step with the highest primary metric
    assert res["best_step"] == res["evals"][int(np.argmax(accs))]["step"]
    assert [r["step"] for r in res["evals"]] == [40, 80, 120, 160]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["best"] == res["best"] and summary["evals"] == res["evals"]
    # the saved best model (HF backbone + head) reproduces the best dev accuracy
    model, params, task, info = hf.load_classifier(tmp_path / ft.BEST_DIR)
    assert task.name == "sst2" and info["step"] == res["best_step"]
    prep = ft.prepare(_config(tiny_dir, sst2_dir))
    again = ft.evaluate_task(model, params, task, prep.dev)
    assert again["accuracy"] == pytest.approx(res["best"]["accuracy"])
    assert (tmp_path / ft.BEST_DIR / "vocab.txt").is_file()


@pytest.mark.slow
def test_same_seed_same_run(tiny_dir, sst2_dir, tmp_path):
    """Two runs of the same config agree exactly; a finished workdir is reloaded, not rerun."""
    cfg = _config(tiny_dir, sst2_dir)
    a, b = ft.finetune(cfg), ft.finetune(cfg, tmp_path)
    assert a["evals"] == b["evals"] and a["train_loss"] == b["train_loss"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, a["params"], b["params"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["16", "24"]
    again = ft.finetune(cfg, tmp_path)
    assert again["evals"] == a["evals"] and again["seconds"] == b["seconds"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, again["params"], a["params"])


# ---------------------------------------------------------------------------- encodings


def test_pair_encoding_rte(tiny_dir):
    tok = hf.load_tokenizer(tiny_dir)
    task = get_task("rte")
    examples = [
        Example("the movie was good", "it was fine", label=0),
        Example("the plot", "so dull", label=1),
    ]
    arrays = encode_examples(tok, task, examples, 12)
    assert arrays["input_ids"].shape == arrays["token_type_ids"].shape == (2, 12)
    assert arrays["label"].tolist() == [0, 1] and arrays["label"].dtype == np.int32
    sep = tok.token_to_id("[SEP]")
    row, types, mask = (
        arrays["input_ids"][0],
        arrays["token_type_ids"][0],
        arrays["attention_mask"][0],
    )
    assert row[0] == tok.token_to_id("[CLS]") and (row == sep).sum() == 2
    first_sep = int(np.argmax(row == sep))
    assert types[: first_sep + 1].sum() == 0 and types[first_sep + 1 : mask.sum()].all()


def test_real_rte_with_minilm_tokenizer(task_data_dir, minilm_dir):
    task = get_task("rte")
    dev = load_examples(task, "dev", str(task_data_dir))
    arrays = encode_examples(hf.load_tokenizer(minilm_dir), task, dev[:32], 64)
    assert arrays["input_ids"].shape == (32, 64)
    assert (arrays["token_type_ids"].max(axis=1) == 1).all()


@pytest.mark.slow
def test_multiple_choice_shapes_and_loss(tiny_dir):
    ckpt = hf.load(tiny_dir)
    task = get_task("copa")
    examples = [
        Example("the movie was good", "effect", choices=["nice", "dull"], label=0),
        Example("the plot was bad", "cause", choices=["fine", "poor"], label=1),
        Example("the actor", "effect", choices=["great", "awful"], label=0),
    ]
    arrays = encode_examples(hf.load_tokenizer(tiny_dir), task, examples, 16)
    assert arrays["input_ids"].shape == (3, 2, 16) and arrays["label"].shape == (3,)
    model, params = ft.build_classifier(ckpt, task)
    assert model.num_labels == 1
    logits_fn = jax.jit(lambda p, x: ft.task_logits(model, p, x))
    logits = logits_fn(params, arrays)
    assert logits.shape == (3, 2)
    # the second choice is scored exactly like the same pair encoded on its own
    alone = encode_examples(
        hf.load_tokenizer(tiny_dir),
        get_task("rte"),
        [Example("the movie was good", "effect dull", label=0)],
        16,
    )
    np.testing.assert_allclose(logits_fn(params, alone)[0, 0], logits[0, 1], atol=1e-5)
    loss, _ = jax.jit(ft.classification_loss_fn(model, task.kind))(params, arrays, None)
    expected = np.mean(jax.nn.logsumexp(logits, -1) - logits[np.arange(3), arrays["label"]])
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert ft.predict(model, params, arrays, batch_size=2).shape == (3, 2)


def test_regression_head_uses_mse(tiny_dir):
    ckpt = hf.load(tiny_dir)
    task = get_task("stsb")
    arrays = encode_examples(
        hf.load_tokenizer(tiny_dir),
        task,
        [Example("a film", "the movie", label=4.5), Example("good", "bad", label=0.5)],
        16,
    )
    assert arrays["label"].dtype == np.float32
    model, params = ft.build_classifier(ckpt, task)
    out = ft.predict(model, params, arrays)
    assert out.shape == (2, 1)
    loss, _ = jax.jit(ft.classification_loss_fn(model, task.kind))(params, arrays, None)
    assert float(loss) == pytest.approx(
        float(np.mean((out[:, 0] - arrays["label"]) ** 2)), rel=1e-5
    )
    metrics = ft.evaluate_task(model, params, task, arrays)
    assert set(metrics) == {"pearson", "spearman"}


def test_predict_order_and_trim_invariant(tiny_dir, sst2_dir):
    prep = ft.prepare(_config(tiny_dir, sst2_dir))
    a = ft.predict(prep.model, prep.params, prep.dev, batch_size=64, bucket=0)
    b = ft.predict(prep.model, prep.params, prep.dev, batch_size=48, bucket=4)
    np.testing.assert_allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------- batching / selection


def test_train_batches_are_stateless_trimmed_and_cover_each_epoch():
    n, bsz = 10, 4
    mask = np.zeros((n, 32), np.int32)
    mask[:, :3] = 1
    arrays = {
        "input_ids": np.arange(n)[:, None].repeat(32, 1).astype(np.int32),
        "attention_mask": mask,
        "label": np.arange(n),
        "ignored": np.zeros(n),
    }
    fn = ft.train_batches(arrays, bsz, seed=3, bucket=8)
    np.testing.assert_array_equal(fn(7)["label"], fn(7)["label"])
    assert set(fn(0)) == {"input_ids", "attention_mask", "label"}
    assert fn(0)["input_ids"].shape == (bsz, 8)
    seen = np.concatenate([fn(s)["label"] for s in range(5)])  # 2 epochs of 10 rows
    assert sorted(seen[:n]) == list(range(n)) and sorted(seen[n : 2 * n]) == list(range(n))
    assert not np.array_equal(seen[:n], seen[n : 2 * n])


def test_trim_keeps_a_bucket_multiple():
    mask = np.zeros((2, 32), np.int32)
    mask[0, :5], mask[1, :9] = 1, 1
    out = trim({"input_ids": mask, "attention_mask": mask, "label": np.zeros(2)}, 8)
    assert out["input_ids"].shape == (2, 16) and out["label"].shape == (2,)


def test_dev_evaluator_keeps_first_maximum(tiny_dir, sst2_dir, monkeypatch):
    prep = ft.prepare(_config(tiny_dir, sst2_dir))
    accs = iter((0.6, 0.8, 0.7, 0.8, float("nan")))
    monkeypatch.setattr(ft, "evaluate_task", lambda *a, **k: {"accuracy": next(accs)})
    saved = []
    dev = ft.DevEvaluator(
        prep.model, prep.task, prep.dev, on_best=lambda d: saved.append(d.best_step)
    )
    for step in (10, 20, 30, 40, 50):
        out = dev({"w": np.full(2, step)}, step)
        assert set(out) == {"dev_accuracy"}
    assert dev.best_step == 20 and dev.best_value == 0.8 and dev.best_params["w"][0] == 20
    assert saved == [10, 20]


def test_dev_evaluator_ranks_nan_last(tiny_dir, sst2_dir, monkeypatch):
    """An undefined dev metric (NaN: e.g. Pearson of constant predictions) is the worst value:
    the first NaN is kept only until a number comes, and a run of NaNs still has a best."""
    prep = ft.prepare(_config(tiny_dir, sst2_dir))
    values = iter((float("nan"), float("nan"), 0.3, float("nan"), 0.2))
    monkeypatch.setattr(ft, "evaluate_task", lambda *a, **k: {"accuracy": next(values)})
    saved = []
    dev = ft.DevEvaluator(
        prep.model, prep.task, prep.dev, on_best=lambda d: saved.append(d.best_step)
    )
    for step in (10, 20, 30, 40, 50):
        dev({"w": np.full(2, step)}, step)
    assert dev.best_step == 30 and dev.best_value == 0.3 and dev.best_params["w"][0] == 30
    assert saved == [10, 30]

    only_nan = ft.DevEvaluator(prep.model, prep.task, prep.dev)
    only_nan.restore_metrics(
        [{"eval": True, "step": s, "dev_accuracy": float("nan")} for s in (10, 20)]
    )
    assert only_nan.best_step == 10 and np.isnan(only_nan.best_value)


# ------------------------------------------------------------------------- named errors


def test_named_errors_before_compiling(tiny_dir, sst2_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        ft.prepare(_config(tiny_dir, sst2_dir, task="sst3"))
    with pytest.raises(DataNotFoundError, match="RTE"):
        ft.prepare(_config(tiny_dir, sst2_dir, task="rte"))
    with pytest.raises(DataNotFoundError, match="does not exist"):
        ft.prepare(_config(tiny_dir, tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="max_seq_len=64 exceeds"):
        ft.prepare(_config(tiny_dir, sst2_dir, max_seq_len=64))
    with pytest.raises(ConfigError, match="config.lr"):
        ft.prepare(_config(tiny_dir, sst2_dir, lr=1.0))
    with pytest.raises(ConfigError, match="config.batch_size must be positive"):
        ft.prepare(_config(tiny_dir, sst2_dir, batch_size=0))
    with pytest.raises(ValueError, match="exceeds source hidden"):
        ft.prepare(_config(tiny_dir, sst2_dir, arch="1,2,64,64"))


@pytest.mark.slow
def test_sliced_candidate_trains(tiny_dir, sst2_dir):
    prep = ft.prepare(_config(tiny_dir, sst2_dir, arch="1,1,16,32"))
    assert prep.model.arch == Arch(1, 1, 16, 32)
    assert prep.params["embeddings"]["word_embeddings"]["embedding"].shape[1] == 16
    res = ft.finetune(_config(tiny_dir, sst2_dir, arch="1,1,16,32", num_steps=8, eval_every=8))
    assert res["arch"] == "D1/A1/H16/I32" and np.isfinite(res["train_loss"][-1]["loss"])


@pytest.mark.slow
def test_model_options_fine_tune_like_the_plain_model(tiny_dir, sst2_dir, tmp_path):
    """Scanned + remat + padded vocabulary: the plain run's losses and best step; the best
    model is saved canonical (HF layout) and reloaded into the training layout."""
    layout = dict(scan_layers=True, remat=True, vocab_multiple=128)
    short = dict(num_steps=8, eval_every=4, log_every=2)
    off = ft.finetune(_config(tiny_dir, sst2_dir, **short), tmp_path / "off")
    on_cfg = _config(tiny_dir, sst2_dir, **short, model=layout)
    on = ft.finetune(on_cfg, tmp_path / "on")
    model = on["model"]
    assert model.scan_layers and model.remat and model.padded_vocab == 128
    assert "layers" in on["params"] and "layers" not in off["params"]
    losses = lambda r: [x["loss"] for x in r["train_loss"]]  # noqa: E731
    assert len(losses(on)) == 4
    np.testing.assert_allclose(losses(on), losses(off), rtol=1e-5)
    assert on["best_step"] == off["best_step"]
    options = ft.FinetuneConfig.from_config(on_cfg).model
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
    canonical = options.to_canonical(on["params"], model.arch, model.spec)
    jax.tree_util.tree_map(close, canonical, off["params"])
    saved = {k: hf.load_classifier(tmp_path / k / ft.BEST_DIR)[1] for k in ("on", "off")}
    jax.tree_util.tree_map(close, saved["on"], saved["off"])
    again = ft.finetune(on_cfg, tmp_path / "on")  # finished: reloaded, in the training layout
    jax.tree_util.tree_map(np.testing.assert_array_equal, again["params"], on["params"])
    with pytest.raises(ConfigError, match="config.model.scan"):
        ft.FinetuneConfig.from_config(dict(on_cfg, model={"scan": True}))


def test_config_file_spells_out_every_field():
    from configs import finetune as finetune_config

    cfg = finetune_config.get_config()
    assert set(cfg) == {f.name for f in dataclasses.fields(ft.FinetuneConfig)}
    assert ft.FinetuneConfig.from_config(cfg).task == "sst2"
    smoke = ft.FinetuneConfig.from_config(finetune_config.get_config("smoke"))
    assert smoke.num_steps < ft.FinetuneConfig.from_config(cfg).num_steps


# ------------------------------------------------------------------------ kill and resume


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_first_checkpoint", "before_metrics_json"])
def test_sigkill_anywhere_resumes_to_the_same_result(tiny_dir, sst2_dir, tmp_path, point):
    """A real SIGKILL mid-run (after the step-8 checkpoint) or between the last checkpoint and
    metrics.json; the rerun ends with the uninterrupted run's evaluations, losses and best
    parameters."""
    cfg = _config(tiny_dir, sst2_dir)
    reference = ft.finetune(cfg)
    workdir = tmp_path / "run"
    if point == "after_first_checkpoint":
        kill_when("finetune", cfg, workdir, lambda: (workdir / "checkpoints" / "8").is_dir())
        assert not (workdir / "metrics.json").exists()
    else:
        marker = tmp_path / "stalled"
        kill_when("finetune", cfg, workdir, marker.exists, stall=("metrics.json", marker))
        assert (workdir / "checkpoints" / "24").is_dir()
        assert not (workdir / "metrics.json").exists()
    resumed = ft.finetune(cfg, workdir)
    assert resumed["resumed_from"] == (8 if point == "after_first_checkpoint" else 24)
    assert resumed["evals"] == reference["evals"]
    assert resumed["best_step"] == reference["best_step"]
    assert resumed["train_loss"] == reference["train_loss"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed["params"], reference["params"])
    saved = json.loads((workdir / "metrics.json").read_text())
    assert saved["evals"] == reference["evals"] and saved["best"] == reference["best"]
