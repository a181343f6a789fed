"""The error-signal audit (bort_jax.experiments.error_audit) and the signals it compares:
the normalised output-layer hidden error and the MLM head fitted on the frozen source."""

import json
from pathlib import Path

import _tiny_source
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _kill import run_to_end, stall_and_kill
from scipy import stats

from bort_jax import distill, hf, losses, mlm_head, proxy
from bort_jax.experiments import error_audit, without_seconds
from bort_jax.models.bert import Bert
from configs import error_audit as error_audit_config


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 5, size=9).astype(float)  # ties on purpose
        y = rng.normal(size=9)
        assert error_audit.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    np.testing.assert_array_equal(error_audit.rankdata([3.0, 1.0, 3.0, 2.0]), [3.5, 1, 3.5, 2])
    assert error_audit.spearman([1, 2, 3], [30, 20, 10]) == -1.0
    assert np.isnan(error_audit.spearman([1, 1, 1], [1, 2, 3]))


def test_elasticity_recovers_a_power_law():
    """err = c · e^k exactly → k and R² = 1; scipy's linregress on the logs as reference."""
    e = np.array([5.1, 5.4, 5.5, 5.9, 6.0])
    err = 0.02 * e**6.0
    k, r2 = error_audit.elasticity(e, err)
    assert k == pytest.approx(6.0, rel=1e-9) and r2 == pytest.approx(1.0)
    noisy = err * np.array([1.1, 0.9, 1.05, 0.97, 1.0])
    ref = stats.linregress(np.log(e), np.log(noisy))
    k, r2 = error_audit.elasticity(e, noisy)
    assert k == pytest.approx(ref.slope) and r2 == pytest.approx(ref.rvalue**2)
    assert np.isnan(error_audit.elasticity([1.0, 2.0], [1.0, 2.0])[0])  # < 3 points


def test_normalised_hidden_error_is_one_minus_r2():
    """Teacher states ±1 per feature (mean 0, variance 1 over the real tokens); the student
    reproduces half of them through a known linear map: MSE = 0.25, so 1 − R² = 0.25."""
    rng = np.random.default_rng(1)
    teacher = rng.choice([-1.0, 1.0], size=(2, 4, 3))
    teacher[:, :, :] = np.where(np.arange(4)[None, :, None] % 2 == 0, teacher, -teacher)
    teacher[1] = -teacher[0]  # every feature has mean exactly 0 over the 8 tokens
    mask = np.ones((2, 5))
    mask[:, 4] = 0  # a padding slot holding garbage must not count
    t = np.concatenate([teacher, np.full((2, 1, 3), 50.0)], axis=1)
    a = np.array([[2.0, 0, 0], [0, 1, 1], [0, 0, 4]])  # student basis → teacher basis
    student = (0.5 * t) @ np.linalg.inv(a)
    var = distill.masked_variance(t, mask)
    assert var == pytest.approx(1.0)
    mse = float(losses.hidden_kd(jnp.asarray(student), jnp.asarray(t), jnp.asarray(mask), a))
    assert mse == pytest.approx(0.25, rel=1e-5)
    assert mse / var == pytest.approx(0.25, rel=1e-5)
    with pytest.raises(ValueError, match="mask"):
        distill.masked_variance(t, mask[:, :3])


def test_normalised_total_swaps_the_raw_hidden_term():
    m = {"heldout_output_total": 6.0, "heldout_hidden_last": 0.1, "heldout_hidden_nmse": 1.2}
    assert proxy.normalised_total(m, 1.0) == pytest.approx(7.1)  # 5.9 + 1.2
    assert proxy.normalised_total(m, 0.5) == pytest.approx(6.55)  # 5.95 + 0.6


@pytest.fixture(scope="module")
def kd_data(minilm_dir):
    teacher = distill.Teacher.load(minilm_dir)
    data = distill.prepare(
        teacher,
        minilm_dir,
        "embedded",
        32,
        max_sequences=120,
        heldout_fraction=0.2,
        seed=0,
        cache_dir=None,
    )
    return teacher.checkpoint, data


def _heldout_ce(ck: hf.Checkpoint, rows) -> float:
    """CE of the whole model (encoder + head through `Bert`, not `mlm_head.head_logits`)."""
    model = Bert(ck.arch, ck.spec, mlm_head=True)

    @jax.jit
    def ce(params):
        out = model.apply(
            {"params": params},
            rows["input_ids"],
            rows["attention_mask"],
            rows["token_type_ids"],
            mlm_positions=rows["mlm_positions"],
        )
        return losses.mlm_cross_entropy(out["mlm_logits"], rows["mlm_ids"], rows["mlm_weights"])

    return float(ce(ck.params))


@pytest.mark.slow
def test_fitted_head_lowers_heldout_mlm_ce_and_is_cached(kd_data, tmp_path):
    source, data = kd_data
    cfg = mlm_head.HeadConfig(num_steps=20, batch_size=64, learning_rate=3e-3)
    head = mlm_head.fit_mlm_head(source, data.train, cfg, cache_dir=str(tmp_path))
    fresh = mlm_head.init_head(source.arch.hidden, source.spec.vocab_size, 0)
    fitted_ce = _heldout_ce(mlm_head.with_head(source, head), data.heldout)
    fresh_ce = _heldout_ce(mlm_head.with_head(source, fresh), data.heldout)
    # held-out rows the head never saw: the fitted head must beat a fresh one by a wide margin
    assert fitted_ce < fresh_ce - 2.0, (fitted_ce, fresh_ce)
    # the disk cache gives the same head back, without refitting
    mlm_head._MEMO.clear()
    (entry,) = tmp_path.glob("mlm_head_*.npz")
    again = mlm_head.fit_mlm_head(source, data.train, cfg, cache_dir=str(tmp_path))
    for k in ("mlm_bias",):
        np.testing.assert_array_equal(again[k], head[k])
    np.testing.assert_array_equal(again["mlm_transform"]["kernel"], head["mlm_transform"]["kernel"])
    with pytest.raises(ValueError, match="mlm_transform/kernel"):
        mlm_head.with_head(source, {**head, "mlm_transform": {"kernel": np.zeros((2, 2))}})


# The smoke audit on the 4-layer source of the pipeline tests (MiniLM sliced to
# D4/A4/H128/I512, tests/_tiny_source.py), with three candidates below it
CANDIDATES = "1,2,64,256;1,2,64,512;1,4,128,256"


def smoke_config(task_data_dir):
    config = error_audit_config.get_config("smoke")
    config.data_dir = str(task_data_dir)
    config.source_dir, config.candidates = _tiny_source.path(), CANDIDATES
    return config


@pytest.fixture(scope="module")
def smoke_audit(task_data_dir, tmp_path_factory):
    """One uninterrupted smoke audit: (config, workdir, report)."""
    workdir = tmp_path_factory.mktemp("error_audit")
    config = smoke_config(task_data_dir)
    return config, workdir, error_audit.run(config, str(workdir))


@pytest.mark.slow
def test_smoke_audit_end_to_end(smoke_audit):
    config, tmp_path, report = smoke_audit
    rows = report["rows"]
    assert [r["arch"] for r in rows] == ["D1/A2/H64/I256", "D1/A2/H64/I512", "D1/A4/H128/I256"]
    err = [r["downstream_error"] for r in rows]
    for name, s in report["signals"].items():
        if name == "params":
            continue
        v = [r["signals"][name] for r in rows]
        # 4 fine-tuning steps may leave every model at the majority class: ρ is then nan
        assert s["spearman"] == pytest.approx(stats.spearmanr(v, err)[0], abs=1e-9, nan_ok=True)
        assert s["max_over_min"] == pytest.approx(max(v) / min(v))
    # the same signals against distinct downstream scores: ρ is defined and must match scipy
    plan = error_audit.validate(config)
    sig = {
        error_audit.tag(a): {
            n: json.loads((tmp_path / "signals" / f"{error_audit.tag(a)}_{n}.json").read_text())
            for n in plan.proxies
        }
        for a in plan.candidates
    }
    scores = [0.9, 0.6, 0.75]
    down = {
        error_audit.tag(a): {"scores": {"sst2": {"final": x}}, "pretrain_final_heldout": None}
        for a, x in zip(plan.candidates, scores)
    }
    spec = hf.load(plan.source_dir).spec
    synth = error_audit.build_report(plan, spec, down, sig)
    for name, s in synth["signals"].items():
        if name != "params":
            v = [r["signals"][name] for r in synth["rows"]]
            ref = stats.spearmanr(v, [1 - x for x in scores])[0]
            assert s["spearman"] == pytest.approx(ref, abs=1e-9) and np.isfinite(ref)
            lr = stats.linregress(np.log(v), np.log([1 - x for x in scores]))
            assert s["elasticity"] == pytest.approx(lr.slope)
            assert s["gamma"] == pytest.approx(lr.slope * plan.gamma_task)
    assert "| k | R² | γ |" in error_audit.markdown(synth)
    # every number of the report is the one its stage file holds: downstream scores from
    # downstream/<tag>.json (the fine-tuning's dev metric at the last step), signals from
    # signals/<tag>_<variant>.json
    n_dev = config.finetune.max_eval_examples
    for r, arch in zip(rows, plan.candidates):
        stage = json.loads((tmp_path / "downstream" / f"{error_audit.tag(arch)}.json").read_text())
        assert set(stage["scores"]) == set(r["scores"]) == {"sst2"}
        for task, score in r["scores"].items():
            assert score == stage["scores"][task]["final"]
            assert stage["scores"][task]["metric"] == "accuracy"
            assert score * n_dev == pytest.approx(round(score * n_dev), abs=1e-6)  # k of 32
            assert stage["scores"][task]["best"] >= score
        mean = np.mean([stage["scores"][t]["final"] for t in config.tasks.split(",")])
        assert r["downstream_error"] == pytest.approx(1.0 - mean, abs=1e-12)
        assert r["pretrain_heldout"] is stage["pretrain_final_heldout"] is None  # no pretraining
        for name in plan.proxies:
            metrics = sig[error_audit.tag(arch)][name]["metrics"]
            for m in error_audit.METRICS:
                if f"heldout_{m}" in metrics:
                    assert r["signals"][f"{name}.{m}"] == metrics[f"heldout_{m}"]
            assert r["signals"][f"{name}.output_total"] == metrics["heldout_output_total"]
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())
    for r in rows:  # fitted head: the MLM term starts from a fitted head, not log V
        assert 0 < r["signals"]["fitted.hidden_nmse"] and 0 < r["signals"]["fitted.mlm"]
        assert 0.0 <= r["downstream_error"] <= 1.0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["signals"] == json.loads(json.dumps(report["signals"]))
    assert "Spearman" in (tmp_path / "report.md").read_text()
    # resumable: a rerun reads every stage back and reports the same
    rerun = error_audit.run(config, str(tmp_path))
    assert json.dumps(rerun, sort_keys=True) == json.dumps(report, sort_keys=True)  # nan-safe


@pytest.mark.slow
def test_script_killed_at_three_points_resumes_to_the_same_report(smoke_audit, tmp_path):
    """`scripts/audit_error.py` (smoke config) SIGKILLed at three deterministic points, rerun
    after each, ends with the uninterrupted run's report and stage files.

    The points are the audit's own stage boundaries: (1) the second candidate's fine-tuning
    right after its step-4 checkpoint was saved, before its downstream stage file; (2) the
    second candidate's proxy run done, before its signal file; (3) before report.json. (Kills
    inside a checkpoint save and while the teacher outputs stream into the cache:
    test_train.py and test_kill_resume.py.)"""
    config, ref_dir, ref = smoke_audit
    workdir, marker = tmp_path / "run", tmp_path / "stalled"
    root = Path(__file__).resolve().parents[1]
    args = [
        str(root / "scripts" / "audit_error.py"),
        f"--config={root / 'configs' / 'error_audit.py'}:smoke",
        f"--config.data_dir={config.data_dir}",
        f"--config.source_dir={config.source_dir}",
        f"--config.candidates={CANDIDATES}",
        f"--workdir={workdir}",
    ]
    second = error_audit.tag(error_audit.validate(config).candidates[1])
    for point in (
        f"saved:{workdir}/work/{second}/finetune_sst2/checkpoints:4",
        f"write:{workdir}/signals/{second}_fitted.json",
        f"write:{workdir}/report.json",
    ):
        stall_and_kill(args, point, marker)
        assert not (workdir / "report.json").exists(), point
    run_to_end(args)
    again = json.loads((workdir / "report.json").read_text())
    assert json.dumps(again, sort_keys=True) == json.dumps(
        json.loads((ref_dir / "report.json").read_text()), sort_keys=True
    )  # nan-safe
    for sub in ("downstream", "signals"):
        names = sorted(p.name for p in (ref_dir / sub).glob("*.json"))
        assert sorted(p.name for p in (workdir / sub).glob("*.json")) == names
        for name in names:
            a, b = (json.loads((d / sub / name).read_text()) for d in (workdir, ref_dir))
            assert json.dumps(without_seconds(a), sort_keys=True) == json.dumps(
                without_seconds(b), sort_keys=True
            ), name
