"""The extraction cost plan (bort_jax/plan.py): byte counts by hand, the named error, the
check inside `extract.extract` before any teacher pass, and a measured smoke plan."""

import json
from pathlib import Path

import pytest

from bort_jax import arch as A
from bort_jax import distill, extract, hf
from bort_jax import plan as P
from configs import bert_large, default

GB = 10**9
AMPLE = dict(disk_free=10**15, host_mem=10**15, device_mem=10**15)


def _bert_large(**kd):
    c = bert_large.get_config()
    c.proxy.kd.update(kd)
    # no checkpoint here: RoBERTa-large teacher and BERT-large source by their family shapes
    return P.plan(
        c,
        "/nonexistent/ose",
        measure=False,
        teacher_family="roberta-large",
        source_family="bert-large",
    )


def test_bert_large_bytes_by_hand():
    p = _bert_large(top_k=0)
    # N = 65,536 rows (train 64,225 + held-out 1,311), L = 128, P = ceil(0.15·128) = 20,
    # V = 50,265 (RoBERTa BPE), logit KD with full logits (top_k=0), hidden KD off
    assert (p.n_sequences, p.seq_len, p.max_predictions, p.n_candidates) == (65536, 128, 20, 300)
    assert p.teacher_cache_bytes == {"mlm_logits": 65536 * 20 * 50265 * 2}
    assert p.teacher_cache_total == 131_766_681_600  # ≈ 132 GB
    assert p.input_bytes["input_ids"] == 65536 * 128 * 4 == 33_554_432
    assert p.input_bytes["mlm_weights"] == 65536 * 20 * 4
    assert sum(p.input_bytes.values()) == 65536 * (3 * 128 + 3 * 20) * 4 == 116_391_936
    # 2 arrays (train, held-out) + meta.json; chosen weights ≤ the largest candidate under
    # BERT-large's spec: D12/H1024/I3072, (30522 + 512 + 2)·1024 + 2·1024 + 12·(4·1024² +
    # 2·1024·3072 + 9·1024 + 3072) + 1024² + 1024 (pooler)
    chosen = (
        (30522 + 512 + 2) * 1024 + 2048 + 12 * (4 * 1024**2 + 2 * 1024 * 3072 + 9 * 1024 + 3072)
    )
    chosen += 1024**2 + 1024
    assert p.disk_bytes == 131_766_681_600 + 3 * P.HEADER_BYTES + 4 * chosen
    # RoBERTa-large with MLM head: 24 layers of 4H² + 2HI + 9H + I, embeddings (V + 514 + 1)·H
    # + 2H, pooler H² + H, head H² + 3H + V
    h, i = 1024, 4096
    teacher = (
        (50265 + 514 + 1) * h
        + 2 * h
        + 24 * (4 * h * h + 2 * h * i + 9 * h + i)
        + (h * h + h)
        + (h * h + 3 * h + 50265)
    )
    assert p.host_bytes["teacher params"] == 4 * teacher
    assert p.host_bytes["inputs"] == 116_391_936
    # one chunk of 32 rows of float16 logits
    assert p.host_bytes["teacher chunk"] == 32 * 20 * 50265 * 2
    assert p.largest == A.Arch(12, 16, 1024, 3072)  # most activation memory (A·L² scores)


@pytest.mark.parametrize("top_k, total", [(None, 8_058_306_560), (128, 1_011_875_840)])
def test_bert_large_top_k_bytes_by_hand(top_k, total):
    p = _bert_large() if top_k is None else _bert_large(top_k=top_k)
    n, slots, k = 65536, 20, top_k or 1024  # the config's default: the top 1,024 logits
    assert p.teacher_cache_bytes == {
        "topk_values": n * slots * k * 2,
        "topk_ids": n * slots * k * 4,
        "rest_logmass": n * slots * 4,
    }
    assert p.teacher_cache_total == total  # ≈ 8.1 GB (k = 1,024), 1.0 GB (k = 128), not 132 GB


def test_bfloat16_activation_and_device_bytes_by_hand():
    # D12/A16/H1024/I3072, B = 64, L = 128, P = 20, V = 50,265, full-logit KD: per token
    # c·(12·(10·1024 + 2·3072) + 4·1024) + 4·12·2·16·128 (float32 attention scores) bytes
    big = A.Arch(12, 16, 1024, 3072)
    logits = 4 * 64 * 20 * 50265 * 3  # float32 MLM logits whatever the dtype
    fp32 = 64 * 128 * (4 * 200_704 + 196_608) + logits
    bf16 = 64 * 128 * (2 * 200_704 + 196_608) + logits
    assert P.activation_bytes(big, 50265, 64, 128, 20, True) == fp32 == 8_959_351_808
    assert P.activation_bytes(big, 50265, 64, 128, 20, True, "bfloat16") == bf16 == 5_671_017_472
    # the plan: params, grads and both Adam moments stay float32 (16 B/param); bfloat16 adds
    # the per-step 2 B/param weight copies and halves the hidden / FFN activations
    c32, c16 = bert_large.get_config(), bert_large.get_config()
    c32.proxy.dtype, c16.proxy.dtype = "float32", "bfloat16"
    kw = dict(measure=False, teacher_family="roberta-large", source_family="bert-large")
    p32, p16 = P.plan(c32, "/nonexistent/ose", **kw), P.plan(c16, "/nonexistent/ose", **kw)
    assert p32.largest == p16.largest == big
    key = f"proxy step {big}"
    n = P.student_params(big, A.ROBERTA_SPEC, 1024)
    assert p32.device_bytes[key] - p16.device_bytes[key] == (fp32 - bf16) - 2 * n


def test_default_bytes_by_hand():
    p = P.plan(default.get_config(), "/nonexistent/default", measure=False)
    # MiniLM-L6 teacher (D6, H384), depths {1,2,4,6}: uniform maps {0,6} ∪ {0,3,6} ∪
    # {0,2,3,5,6} ∪ {0..6} = all 7 states; 640 rows × 32 tokens, float16
    assert (p.n_sequences, p.seq_len, p.max_predictions, p.n_candidates) == (640, 32, 5, 24)
    assert p.teacher_cache_bytes == {"hidden": 640 * 7 * 32 * 384 * 2}
    assert p.teacher_cache_total == 110_100_480
    assert sum(p.input_bytes.values()) == 640 * (3 * 32 + 3 * 5) * 4
    assert p.host_bytes["source params"] == 0  # the teacher is the source
    c = default.get_config()
    c.proxy.kd.hidden = 0.0  # nothing to store: MiniLM has no MLM head, no hidden KD
    assert P.plan(c, "/nonexistent/default", measure=False).teacher_cache_bytes == {}


def test_named_error_for_disk_host_device():
    p = _bert_large(top_k=0)
    P.check_fits(p, **AMPLE)
    with pytest.raises(
        P.PlanError, match=r"teacher cache needs 132 GB on disk.*; 40 GB free: set proxy.kd.top_k"
    ):
        P.check_fits(p, **{**AMPLE, "disk_free": 40 * GB})
    assert issubclass(P.PlanError, ValueError)  # scripts print it as one line
    with pytest.raises(P.PlanError, match="peak host memory"):
        P.check_fits(p, **{**AMPLE, "host_mem": 2 * GB})
    with pytest.raises(P.PlanError, match="peak device memory"):
        P.check_fits(p, **{**AMPLE, "device_mem": 4 * GB})
    # CPU backend (device_mem None): the device peak counts against host memory
    need = p.peak_host_bytes + p.peak_device_bytes
    P.check_fits(p, **{**AMPLE, "device_mem": None, "host_mem": need})
    with pytest.raises(P.PlanError, match="device on host"):
        P.check_fits(p, **{**AMPLE, "device_mem": None, "host_mem": need - 1})


def test_existing_cache_needs_no_disk(tmp_path):
    c = default.get_config()
    before = P.plan(c, str(tmp_path), measure=False)
    arrays = {
        "train_hidden": [576, 7, 32, 384],
        "heldout_hidden": [64, 7, 32, 384],
    }
    entry = tmp_path / "teacher_cache" / "somekey"
    entry.mkdir(parents=True)
    meta = {
        "arrays": {k: {"shape": s, "dtype": "float16", "sha256": ""} for k, s in arrays.items()}
    }
    (entry / "meta.json").write_text(json.dumps(meta))
    after = P.plan(c, str(tmp_path), measure=False)
    assert after.cache_present and not before.cache_present
    assert before.disk_bytes - after.disk_bytes == 110_100_480 + 3 * P.HEADER_BYTES


def test_missing_teacher_shape_is_named():
    cfg = bert_large.get_config()
    assert cfg.teacher_family == "roberta-large"  # the config names the family shapes ...
    cfg.teacher_family = ""  # ... without them and without a checkpoint the plan says what to set
    with pytest.raises(P.PlanError, match="teacher_family"):
        P.plan(cfg, "/nonexistent", measure=False)
    with pytest.raises(P.PlanError, match="known"):
        P.plan(bert_large.get_config(), "/nonexistent", measure=False, teacher_family="gpt")


def test_extract_stops_before_teacher_pass(tmp_path, monkeypatch):
    def no_prepare(*args, **kwargs):
        raise AssertionError("distill.prepare called despite a plan that does not fit")

    monkeypatch.setattr(distill, "prepare", no_prepare)
    monkeypatch.setattr(P, "disk_free", lambda path: 1000)
    work = tmp_path / "run"
    with pytest.raises(P.PlanError, match=r"teacher cache needs .*; 1e-06 GB free"):
        extract.extract(default.get_config("smoke"), str(work))
    assert not (work / "teacher_cache").exists()
    assert not (work / "candidates").exists()


def test_extract_plan_mode_prints_and_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "_measure", lambda out, *a, **k: out.notes.append("not measured"))
    c = default.get_config("smoke")
    c.plan = True
    out = extract.extract(c, str(tmp_path))
    assert set(out) == {"plan"}
    assert "teacher cache on disk" in out["plan"] and "verdict: fits this machine" in out["plan"]
    assert not (tmp_path / "teacher_cache").exists()


@pytest.fixture(scope="module")
def measured():
    c = default.get_config("smoke")
    c.grid.depth = [1]  # two candidates: D1/A4/H128, D1/A8/H256 (two compilations)
    # 1 GFLOP: the smaller (0.69 GFLOP/step) runs as is, the larger (1.49) at batch 4
    return c, P.plan(c, "/nonexistent/smoke", max_measure_flops=1e9, repeats=2)


@pytest.mark.slow
def test_measured_plan_consistent(measured):
    c, p = measured
    assert [t.arch for t in p.step_times] == [A.Arch(1, 4, 128, 384), A.Arch(1, 8, 256, 384)]
    assert all(t.seconds > 0 and t.compile_seconds >= 0 for t in p.step_times)
    small, large = p.step_times
    assert not small.extrapolated and small.measured_as == (8, 16)
    assert large.extrapolated and large.measured_as == (4, 16)
    spec = A.MINILM_SPEC
    assert large.flops == 3 * (
        A.flops(large.arch, 16, 8, spec) + 8 * 2 * 3 * (256 * 256 + 256 * 30522)
    )
    assert large.seconds == pytest.approx(
        large.measured_seconds * large.flops / P.step_flops(large.arch, spec, 4, 16, 3)
    )
    assert large.seconds == pytest.approx(2 * large.measured_seconds, rel=1e-3)  # FLOPs ∝ B
    # projected = teacher pass + steps·Σ t(ξ) + held-out + compile, from the plan's own parts
    c0, c1 = p.seconds_model
    t = [c0 + c1 * P.step_flops(a, spec, 8, 16, 3) for a in (small.arch, large.arch)]
    parts = p.search_seconds
    assert p.n_evaluations == 2
    assert parts["proxy steps"] == pytest.approx(3 * sum(t))
    assert parts["held-out eval"] == pytest.approx(sum(t) / 3)  # 10 held-out rows: 1 batch
    assert parts["compile"] == pytest.approx(
        2 * 2 * (small.compile_seconds + large.compile_seconds) / 2
    )
    assert p.flop_rate == pytest.approx(
        (small.flops + large.flops) / (small.seconds + large.seconds)
    )
    assert parts["teacher pass"] == pytest.approx(p.teacher_flops / p.flop_rate)
    t_arch, t_spec = hf.config_to_arch_spec(
        json.loads((Path(hf.minilm_path()) / "config.json").read_text())
    )
    assert p.teacher_flops == A.flops(t_arch, 16, 96, t_spec)  # hidden KD: no MLM head pass
    assert p.projected_search_seconds == pytest.approx(sum(parts.values()))
    text = p.markdown()
    assert "extrapolated by FLOPs" in text and "projected search" in text


def test_projection_by_hand_from_given_step_times(monkeypatch):
    """The projection from hand-made step times (`time_step` replaced), recomputed here.

    Smoke grid at D = 1: small = D1/A4/H128 runs as is (B 8 × L 16, P 3 slots), large =
    D1/A8/H256 above the 1 GFLOP cap runs at B 4. Given s/step 0.010 (small) and 0.0075 at B 4
    (large, so 0.015 at B 8: FLOPs ∝ B), compile 1 s and 3 s, the line t = c0 + c1·F passes
    through both points; 3 proxy steps each, 10 held-out rows = 1 batch at t/3, 2 × 2 compiles.
    """
    given = {A.Arch(1, 4, 128, 384): (0.010, 1.0), A.Arch(1, 8, 256, 384): (0.0075, 3.0)}
    monkeypatch.setattr(P, "time_step", lambda arch, *a: given[arch])
    c = default.get_config("smoke")
    c.grid.depth = [1]
    p = P.plan(c, "/nonexistent/smoke", max_measure_flops=1e9, repeats=2)
    small, large = p.step_times
    assert large.measured_as == (4, 16) and small.measured_as == (8, 16)
    spec = A.MINILM_SPEC
    f_s, f_l = (P.step_flops(a, spec, 8, 16, 3) for a in given)
    assert P.step_flops(large.arch, spec, 4, 16, 3) * 2 == f_l  # FLOPs ∝ batch, exactly
    assert (small.seconds, large.seconds) == (0.010, pytest.approx(0.015, rel=1e-12))
    c1 = (0.015 - 0.010) / (f_l - f_s)
    c0 = 0.010 - c1 * f_s
    assert p.seconds_model == pytest.approx((c0, c1), rel=1e-9)
    rate = (f_s + f_l) / (0.010 + 0.015)
    t_arch, t_spec = hf.config_to_arch_spec(
        json.loads((Path(hf.minilm_path()) / "config.json").read_text())
    )
    teacher_flops = A.flops(t_arch, 16, 96, t_spec)  # 96 rows, hidden KD: no MLM head pass
    want = {
        "teacher pass": teacher_flops / rate,
        "proxy steps": 3 * (0.010 + 0.015),
        "held-out eval": (0.010 + 0.015) / 3,
        "compile": 2 * 2 * (1.0 + 3.0) / 2,
    }
    assert p.search_seconds == pytest.approx(want, rel=1e-9)
    assert p.projected_search_seconds == pytest.approx(sum(want.values()), rel=1e-9)
    assert p.flop_rate == pytest.approx(rate, rel=1e-12) and p.n_evaluations == 2
