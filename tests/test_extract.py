"""scripts/extract.py's library: validation, resumability, outputs, the bert_large config."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from bort_jax import extract, hf
from bort_jax.arch import Arch, Spec
from bort_jax.models.bert import Bert, init_params
from configs import bert_base, bert_large, default

WORKER = Path(__file__).with_name("_extract_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _run(workdir, kill_after=0):
    env = dict(os.environ, KILL_AFTER=str(kill_after), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(WORKER), str(workdir)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_sigkill_resume_recomputes_nothing_finished(tmp_path):
    killed = _run(tmp_path, kill_after=2)
    assert killed.returncode == -9, killed.stderr[-2000:]
    first_calls = (tmp_path / "calls.log").read_text().split()
    done = list((tmp_path / "candidates").glob("*/*.json"))
    assert len(done) == 2
    # corrupt one finished entry: it must be redone, the other reused
    done[0].write_text("{not json")
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    all_calls = (tmp_path / "calls.log").read_text().splitlines()
    assert len(first_calls) == 2
    second = all_calls[2:]  # the resumed run's calls
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_cache_hits"] == 1
    assert summary["n_e_calls"] == summary["n_evaluations"] - 1
    assert len(second) == summary["n_e_calls"]
    for name in ("report.md", "report.json", "report_e_vs_p.png", "report_e_vs_i.png",
                 "pretrain_config.py"):
        assert (tmp_path / name).is_file(), name
    chosen = hf.load(tmp_path / "chosen_hf")
    assert str(chosen.arch) == summary["chosen"]
    # a changed config must not reuse stale entries: different hash directory
    cfg = default.get_config("smoke")
    cfg.proxy.steps = 4
    assert extract.config_hash(cfg, extract.ERROR_KEYS) != summary["config_hash"]


@pytest.mark.parametrize("field,value,err,match", [
    ("eps", 1.5, ValueError, "eps"),
    ("eps", 0.0, ValueError, "eps"),
    ("source_dir", "/nonexistent/ckpt", FileNotFoundError, "source_dir"),
    ("inference", "guess", ValueError, "inference"),
])
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
        assert len(extract.build_space(cfg).candidates()) == n
        with pytest.raises(ValueError, match="source_dir is required"):
            extract.validate(cfg, str(tmp_path))
        cfg.source_dir = minilm_dir
        extract.validate(cfg, str(tmp_path))


def test_scripts_import_configs_from_any_cwd(tmp_path):
    """`python scripts/extract.py --config=configs/bert_large.py` imports `configs.*`."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "extract.py"),
                          f"--config={ROOT / 'configs' / 'bert_large.py'}",
                          f"--workdir={tmp_path}"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert "source_dir is required" in out.stderr, out.stderr[-2000:]


def _stand_in(path, arch, minilm_dir):
    spec = Spec(vocab_size=30522, max_positions=64, pooler=True)
    params = init_params(Bert(arch, spec, mlm_head=True), jax.random.PRNGKey(0))
    return hf.save(path, jax.device_get(params), arch, spec, tokenizer_dir=minilm_dir)


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
    assert summary["n_evaluations"] >= 1
    assert summary["chosen"] in ("D2/A4/H512/I256", "D2/A8/H512/I256")
    metrics = summary["candidate_metrics"]
    assert all("heldout_logit" in m for m in metrics.values())  # logit KD as in Bort
