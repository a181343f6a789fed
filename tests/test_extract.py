"""scripts/extract.py's library: validation, resumability, determinism, outputs, configs.

The smoke extraction (configs/default.py:smoke, i(ξ) measured through the latency model) runs
once as the reference (module fixture); the report, the generated pretraining config and the
latency model are checked on it, and a second fresh run and a run killed twice (SIGKILL) must
reproduce it exactly. All runs of the module share one latency model and one JAX compilation
cache (`shared/`), as extractions that must compare do.
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest

from bort_jax import arch as A
from bort_jax import extract, hf, latency, pretrain
from bort_jax.arch import Arch, Spec
from bort_jax.extract_config import ExtractConfig
from bort_jax.models.bert import Bert, init_params
from bort_jax.search.space import SearchSpace, build_space
from configs import bert_base, bert_large, default

WORKER = Path(__file__).with_name("_extract_worker.py")
ROOT = Path(__file__).resolve().parents[1]
WALL_CLOCK = ("wall_time_s",)  # report.json fields that are wall-clock times


def _start(workdir: Path, shared: Path, kill_after: int = 0) -> subprocess.Popen:
    env = dict(os.environ, KILL_AFTER=str(kill_after), PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(workdir), str(shared)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(workdir: Path, shared: Path, kill_after: int = 0) -> subprocess.CompletedProcess:
    proc = _start(workdir, shared, kill_after)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _calls(workdir: Path) -> list[tuple[str, str]]:
    """(pid, candidate) of every proxy evaluation started in `workdir`, in order."""
    path = workdir / "calls.log"
    if not path.is_file():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]


def _entries(workdir: Path) -> list[Path]:
    return sorted((workdir / "candidates").glob("*/*.json"))


def _report(workdir: Path) -> dict:
    data = json.loads((workdir / "report.json").read_text())
    return {k: v for k, v in data.items() if k not in WALL_CLOCK}


def _sequence(workdir: Path) -> list[tuple]:
    """The evaluation sequence: (candidate, p, i, e, W) in the order the search evaluated."""
    return [
        (ev["candidate"]["repr"], ev["p"], ev["i"], ev["e"], ev["objective"])
        for ev in json.loads((workdir / "report.json").read_text())["evaluations"]
    ]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def reference(shared) -> Path:
    """One uninterrupted smoke extraction; it calibrates the shared latency model."""
    workdir = shared.parent / "reference"
    done = _run(workdir, shared)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def _table(markdown: str, section: str) -> list[dict[str, str]]:
    """The Markdown table under `## section`, as dicts keyed by its header."""
    lines = markdown.split(f"## {section}\n", 1)[1].splitlines()
    start = next(k for k, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        rows.append(ln)
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in r.strip("|").split("|")))) for r in rows[2:]]


def _space(config) -> SearchSpace:
    """The grid of an extraction config (a ConfigDict of configs/default.py)."""
    return build_space(ExtractConfig.from_config(config).grid)


def _num(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.mark.slow
def test_report_numbers_match_json_and_candidates(reference, shared):
    """report.md = report.json = the evaluated candidates' own p, i, e and W."""
    md = (reference / "report.md").read_text()
    rep = json.loads((reference / "report.json").read_text())
    summary = json.loads((reference / "summary.json").read_text())
    cfg = default.get_config("smoke")
    spec = hf.load(hf.minilm_path()).spec
    model = latency.LatencyModel.from_json(json.loads((shared / "latency_model.json").read_text()))
    cands = _space(cfg).candidates()
    p = {str(a): float(A.param_count(a, spec)["total"]) for a in cands}
    i = {str(a): model.predict(a, spec) for a in cands}
    e = {}
    for f in _entries(reference):
        entry = json.loads(f.read_text())
        e[str(Arch(**{k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", entry["key"])}))] = entry[
            "error"
        ]
    p_ref, i_ref = max(p.values()), max(i.values())
    w = dict(cfg.objective)
    assert rep["p_ref"] == p_ref and rep["i_ref"] == i_ref
    # objective.e_ref = 0: W is reported with e_ref = the chosen candidate's e (readable W)
    assert w["e_ref"] == 0 and rep["objective_spec"]["e_ref"] == e[summary["chosen"]]
    e_ref = e[summary["chosen"]]
    assert 1e-3 <= summary["objective"] <= 1e3

    table = _table(md, "Evaluated candidates")
    evals = {str(Arch(**ev["candidate"]["fields"])): ev for ev in rep["evaluations"]}
    assert len(table) == len(evals) == rep["n_evaluations"] == summary["n_evaluations"] >= 2
    assert set(e) == set(evals)  # one stored entry per evaluated candidate, nothing more
    ranked = []
    for row in table:
        name = row["candidate"].strip("*")
        ev = evals[name]
        want_w = (
            (p_ref / p[name]) ** w["alpha"]
            * (i_ref / i[name]) ** w["beta"]
            * (e_ref / e[name]) ** w["gamma"]
        )
        for col, json_value, own in (
            ("p", ev["p"], p[name]),
            ("i", ev["i"], i[name]),
            ("e", ev["e"], e[name]),
            ("W", ev["objective"], want_w),
        ):
            assert json_value == pytest.approx(own, rel=1e-12), (name, col)
            assert _num(row[col]) == pytest.approx(own, rel=1e-5), (name, col, row[col])
        assert (row["candidate"].startswith("**")) == (name == summary["chosen"])
        ranked.append(ev["objective"])
    assert ranked == sorted(ranked, reverse=True)  # table ranked by W
    best = max(evals.values(), key=lambda ev: ev["objective"])
    assert str(Arch(**best["candidate"]["fields"])) == summary["chosen"]
    chosen_line = md.split("## Chosen\n\n", 1)[1].splitlines()[0]
    assert chosen_line.startswith(f"`{summary['chosen']}`")
    assert _num(re.search(r"W = ([\d.e+-]+)", chosen_line).group(1)) == pytest.approx(
        best["objective"], rel=1e-5
    )
    run = re.search(r"proxy evaluations: (\d+) of (\d+) candidates \((\d+) from", md)
    assert tuple(map(int, run.groups())) == (
        rep["n_evaluations"],
        rep["n_candidates"],
        rep["n_cache_hits"],
    )
    assert rep["n_candidates"] == len(cands)
    # e is the held-out objective the proxy trainer reported for that candidate
    for name, ev in evals.items():
        key = next(
            k
            for k in summary["candidate_metrics"]
            if str(Arch(**{a: int(v) for a, v in re.findall(r"(\w+)=(\d+)", k)})) == name
        )
        assert summary["candidate_metrics"][key]["heldout_output_total"] == ev["e"]
    # e's components: one row per evaluated candidate, e and its MLM term as stored
    section = "e's components (held-out, per evaluated candidate)"
    comp = {r["candidate"]: r for r in _table(md, section)}
    assert set(comp) == set(evals)
    for name, ev in evals.items():
        metrics = next(
            m
            for k, m in summary["candidate_metrics"].items()
            if str(Arch(**{a: int(v) for a, v in re.findall(r"(\w+)=(\d+)", k)})) == name
        )
        assert _num(comp[name]["e"]) == pytest.approx(ev["e"], rel=1e-4)
        assert _num(comp[name]["MLM CE"]) == pytest.approx(metrics["heldout_mlm"], rel=1e-3)
    es = [ev["e"] for ev in evals.values()]
    spread = re.search(r"Spread of e: .*max/min ([\d.]+), std", md)
    assert float(spread.group(1)) == pytest.approx(max(es) / min(es), rel=1e-3)


@pytest.mark.slow
def test_measured_latency_model(reference, shared, tmp_path):
    """inference='measured': i(ξ) is the stored model's prediction, fitted to measured shapes;
    a stored model for other settings is refused, not silently reused."""
    path = shared / "latency_model.json"
    model = latency.LatencyModel.from_json(json.loads(path.read_text()))
    cfg = default.get_config("smoke")
    assert cfg.inference == "measured"
    assert model.settings["seq_len"] == cfg.latency_seq_len == 16
    assert model.settings["device"] == latency.device_name()
    assert len(model.calibration) == min(cfg.latency_points, len(_space(cfg).candidates()))
    assert all(c >= 0 for c in model.coefficients.values())
    assert all(t > 0 and f > 0 for _, t, f in model.calibration)
    spec = hf.load(hf.minilm_path()).spec
    rep = json.loads((reference / "report.json").read_text())
    for ev in rep["evaluations"]:
        assert ev["i"] == model.predict(Arch(**ev["candidate"]["fields"]), spec)
    summary = json.loads((reference / "summary.json").read_text())
    assert "latency model" in summary["inference"] and str(path) in summary["inference"]
    assert summary["latency_model"]["coefficients"] == model.coefficients
    # a stored model fitted for another sequence length is an error
    cfg.latency_model, cfg.latency_seq_len = str(path), 32
    with pytest.raises(ValueError, match="other settings"):
        extract.latency_model(
            ExtractConfig.from_config(cfg), spec, str(tmp_path), _space(cfg).candidates()
        )


@pytest.mark.slow
def test_generated_pretrain_config_runs(reference, tmp_path):
    """workdir/pretrain_config.py imports, validates and pretrains the chosen shape."""
    summary = json.loads((reference / "summary.json").read_text())
    spec = importlib.util.spec_from_file_location(
        "chosen_pretrain_config", reference / "pretrain_config.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config("smoke")
    assert str(Arch.parse(cfg.arch)) == summary["chosen"]
    assert cfg.init_method == "slice" and Path(cfg.init) == (reference / "chosen_hf").resolve()
    assert Path(cfg.teacher_dir) == Path(hf.minilm_path())
    assert pretrain.validate(cfg).arch == Arch.parse(cfg.arch)
    cfg.num_steps, cfg.batch_size, cfg.max_sequences, cfg.max_seq_len = 2, 4, 40, 16
    cfg.checkpoint_every, cfg.eval_every, cfg.log_every = 1, 2, 1
    out = pretrain.pretrain(cfg, str(tmp_path / "pretrain"))
    assert out["arch"] == summary["chosen"] and out["steps"] == 2
    assert out["final_heldout"] is not None
    assert str(hf.load(out["export"]).arch) == summary["chosen"]


@pytest.mark.slow
def test_extraction_is_deterministic(reference, shared, tmp_path):
    """A second run of the same config in a fresh workdir (same stored latency model) makes the
    same evaluations in the same order, chooses the same, and writes the same report."""
    again = _run(tmp_path / "again", shared)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [c for _, c in _calls(tmp_path / "again")] == [c for _, c in _calls(reference)]
    assert _sequence(tmp_path / "again") == _sequence(reference)
    assert _report(tmp_path / "again") == _report(reference)
    a = json.loads((tmp_path / "again" / "summary.json").read_text())
    b = json.loads((reference / "summary.json").read_text())
    assert a["chosen"] == b["chosen"] and a["objective"] == b["objective"]
    strip = lambda m: {
        k: {n: v for n, v in x.items() if n != "train_seconds"}  # noqa: E731
        for k, x in m.items()
    }
    assert strip(a["candidate_metrics"]) == strip(b["candidate_metrics"])


@pytest.mark.slow
def test_sigkill_twice_then_resume_equals_uninterrupted_run(reference, shared, tmp_path):
    """Killed right after the first stored candidate, then in the middle of the last
    candidate's proxy training; one finished entry corrupted. The resumed run recomputes only
    what is missing and ends exactly where the uninterrupted run did."""
    ref_calls = [c for _, c in _calls(reference)]
    n = len(ref_calls)
    assert n >= 2
    work = tmp_path / "killed"
    # kill 1: a real SIGKILL right after the first candidate entry was stored
    first = _run(work, shared, kill_after=1)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert len(_entries(work)) == 1 and [c for _, c in _calls(work)] == ref_calls[:1]
    # kill 2: from outside, while the resumed run trains the last candidate the search needs
    proc = _start(work, shared)
    deadline = time.time() + 600
    while len(_calls(work)) < n:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "never reached the last evaluation"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert [c for _, c in _calls(work)] == ref_calls  # same order, nothing evaluated twice
    assert len(_entries(work)) == n - 1  # the interrupted candidate is not stored
    # corrupt one finished entry: it must be recomputed, the others reused
    _entries(work)[0].write_text("{not json")
    last = _run(work, shared)
    assert last.returncode == 0, last.stderr[-3000:]
    summary = json.loads((work / "summary.json").read_text())
    assert summary["n_cache_hits"] == n - 2 and summary["n_e_calls"] == 2
    assert len(_calls(work)) == n + 2
    assert _sequence(work) == _sequence(reference)
    keep = lambda r: {
        k: v
        for k, v in r.items()  # noqa: E731
        if k not in ("n_e_calls", "n_cache_hits")
    }
    assert keep(_report(work)) == keep(_report(reference))
    for name in (
        "report.md",
        "report.json",
        "report_e_vs_p.png",
        "report_e_vs_i.png",
        "pretrain_config.py",
    ):
        assert (work / name).is_file(), name
    assert str(hf.load(work / "chosen_hf").arch) == summary["chosen"]
    # a changed config must not reuse stale entries: different hash directory
    cfg = default.get_config("smoke")
    cfg.proxy.num_steps = 4
    typed = ExtractConfig.from_config(cfg)
    assert extract.config_hash(typed, extract.ERROR_KEYS) != summary["config_hash"]


@pytest.mark.parametrize(
    "field,value,err,match",
    [
        ("eps", 1.5, ValueError, "eps"),
        ("eps", 0.0, ValueError, "eps"),
        ("source_dir", "/nonexistent/ckpt", FileNotFoundError, "source_dir"),
        ("inference", "guess", ValueError, "inference"),
    ],
)
def test_named_errors_before_work(tmp_path, field, value, err, match):
    cfg = default.get_config("smoke")
    setattr(cfg, field, value)
    with pytest.raises(err, match=match):
        extract.validate(cfg, str(tmp_path))


def test_bad_grid_named(tmp_path):
    cfg = default.get_config("smoke")
    cfg.grid.heads = [5]
    cfg.grid.head_dim = 0
    with pytest.raises(ValueError, match="valid"):
        extract.validate(cfg, str(tmp_path))
    cfg = default.get_config("smoke")
    cfg.grid.depth = []
    with pytest.raises(ValueError, match="grid.depth"):
        extract.validate(cfg, str(tmp_path))


def test_unwritable_output_dir(tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    if os.access(target, os.W_OK):  # running as root: simulate with a file in the way
        target.chmod(0o700)
        target = tmp_path / "file"
        target.write_text("x")
    with pytest.raises((PermissionError, FileExistsError, NotADirectoryError)):
        extract.validate(default.get_config("smoke"), str(target / "out"))


def test_bert_configs_validate_with_paper_grid(tmp_path, minilm_dir):
    for mod, n in ((bert_large, 300), (bert_base, 210)):  # 210 = 6 D × 5 I × (3 + 4) (A, H)
        cfg = mod.get_config()
        assert len(_space(cfg).candidates()) == n
        with pytest.raises(ValueError, match="source_dir is required"):
            extract.validate(cfg, str(tmp_path))
        cfg.source_dir = minilm_dir
        extract.validate(cfg, str(tmp_path))


def test_scripts_import_configs_from_any_cwd(tmp_path):
    """`python scripts/extract.py --config=configs/bert_large.py` imports `configs.*`."""
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "extract.py"),
            f"--config={ROOT / 'configs' / 'bert_large.py'}",
            f"--workdir={tmp_path}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "source_dir is required" in out.stderr, out.stderr[-2000:]


def _stand_in(path, arch, minilm_dir):
    spec = Spec(vocab_size=30522, max_positions=64, pooler=True)
    params = init_params(Bert(arch, spec, mlm_head=True), jax.random.PRNGKey(0))
    return hf.save(path, jax.device_get(params), arch, spec, tokenizer_dir=minilm_dir)


@pytest.mark.slow
def test_bert_large_config_runs_first_candidates_on_stand_in(tmp_path, minilm_dir):
    """The bert_large config end to end on tiny stand-in source/teacher directories."""
    source = _stand_in(tmp_path / "bert_large_standin", Arch(2, 4, 64, 128), minilm_dir)
    teacher = _stand_in(tmp_path / "roberta_standin", Arch(2, 4, 64, 128), minilm_dir)
    cfg = bert_large.get_config("smoke")
    cfg.source_dir, cfg.teacher_dir, cfg.corpus = str(source), str(teacher), "embedded"
    cfg.grid.depth, cfg.grid.heads, cfg.grid.hidden = [2], [4, 8], [512]
    cfg.grid.intermediate = [256]
    cfg.inference = "flops"
    summary = extract.extract(cfg, str(tmp_path / "out"))
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    evaluated = [e for e in rep["evaluations"] if e["e"] is not None]
    assert len(evaluated) == summary["n_evaluations"] >= 1
    best = max(evaluated, key=lambda e: e["objective"])  # the chosen one maximises W
    assert rep["chosen"] == best and summary["objective"] == best["objective"]
    metrics = summary["candidate_metrics"]
    assert len(metrics) == summary["n_evaluations"]
    assert all(m["heldout_logit"] > 0 for m in metrics.values())  # logit KD as in Bort


def test_latency_model_fit_predict_round_trip():
    """The latency model recovers known non-negative coefficients, never fits negative ones,
    predicts bit-identically after a JSON round trip, and picks calibration shapes that span
    the FLOP range deterministically."""
    spec = Spec(vocab_size=30522, max_positions=512, pooler=False)
    cands = _space(default.get_config()).candidates()
    settings = {"batch": 1, "seq_len": 128}
    truth = {
        "call": 2e-4,
        "layer": 1e-4,
        "matmul_flops": 2e-12,
        "softmax_elements": 0.0,
        "weight_bytes": 0.0,
    }

    def seconds(a):
        x = latency.features(a, spec, 1, 128)
        return sum(truth[f] * x[f] for f in truth)

    shapes = latency.calibration_shapes(cands, spec, 128, 8)
    assert len(shapes) == 8 and shapes == latency.calibration_shapes(cands[::-1], spec, 128, 8)
    flops = sorted(A.flops(a, 128, spec=spec) for a in cands)
    assert A.flops(shapes[0], 128, spec=spec) == flops[0]
    assert A.flops(shapes[-1], 128, spec=spec) == flops[-1]
    model = latency.fit([(a, seconds(a)) for a in shapes], spec, settings)
    for a in cands:
        assert model.predict(a, spec) == pytest.approx(seconds(a), rel=1e-6)
    assert max(model.relative_errors()) < 1e-6
    again = latency.LatencyModel.from_json(json.loads(json.dumps(model.to_json())))
    assert [again.predict(a, spec) for a in cands] == [model.predict(a, spec) for a in cands]
    # times that fall with depth would need a negative coefficient: clamped at 0, still > 0
    falling = [(a, 1e-3 / a.depth) for a in shapes]
    clamped = latency.fit(falling, spec, settings)
    assert all(c >= 0 for c in clamped.coefficients.values())
    assert all(clamped.predict(a, spec) > 0 for a in cands)
    with pytest.raises(ValueError, match=">= 2"):
        latency.fit(falling[:1], spec, settings)
