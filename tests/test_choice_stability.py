"""bort_jax.experiments.choice_stability: the pick over seeds and over T and 2T proxy steps.

The analysis is checked on hand-made e-tables whose W values are simple fractions; the smoke
study (4 candidates, seeds 0 and 1, T = 3 and 6) runs end to end, is compared with an
extraction of the same config, and is resumed from its stage files.
"""

import json

import jax
import numpy as np
import pytest

from bort_jax import arch as A
from bort_jax import distill, extract, hf, mlm_head, proxy
from bort_jax import experiments as ex
from bort_jax.config import ConfigError
from bort_jax.data import batching, text
from bort_jax.experiments import choice_stability as cs
from bort_jax.extract_config import ExtractConfig
from bort_jax.search import candidate_key
from bort_jax.search.budget import resolve_config
from bort_jax.search.objective import WCoefficient
from configs import choice_stability as cs_config
from configs import default

# ------------------------------------------------------------------ synthetic e-tables
# Three candidates with p = i = [1, 2, 4] and α = β = 0.5, γ = 1: W = (4/p)^½ (4/i)^½ / e
# = [4, 2, 1] / e, so each table below is e = [4, 2, 1] / W for the W written beside it.
NAMES = ["a", "b", "c"]
P = I = [1.0, 2.0, 4.0]
OBJ = WCoefficient(0.5, 0.5, 1.0, 1.0)
SETTINGS = [(0, 10), (0, 20), (1, 10), (1, 20), (2, 10), (2, 20)]
W = [  # max W = 2 in every setting
    [1.0, 2.0, 1.6],  # s0/T10: argmax b
    [1.0, 1.5, 2.0],  # s0/T20: argmax c
    [2.0, 1.0, 1.0],  # s1/T10: argmax a
    [1.0, 2.0, 1.0],  # s1/T20: argmax b
    [0.5, 2.0, 1.0],  # s2/T10: argmax b
    [1.0, 1.6, 2.0],  # s2/T20: argmax c
]
E = [[s / w for s, w in zip([4.0, 2.0, 1.0], row)] for row in W]
PICKS = ["b", "b", "a", "b", "b", "c"]  # s0/T20's pick is off its own argmax (1.5/2 < 0.9)
# R[a][b] = W_b(pick_a) / 2, read off the W columns of the pick
R_B = [1.0, 0.75, 0.5, 1.0, 1.0, 0.8]
R_A = [0.5, 0.5, 1.0, 0.5, 0.25, 0.5]
R_C = [0.8, 1.0, 0.5, 0.5, 0.5, 1.0]


def test_cross_table_and_modal_counts_on_hand_made_tables():
    got = cs.compare(SETTINGS, NAMES, P, I, OBJ, E, PICKS, eps=0.1)
    assert got["argmax"] == ["b", "c", "a", "b", "b", "c"]
    np.testing.assert_allclose(got["cross"], [R_B, R_B, R_A, R_B, R_B, R_C], rtol=1e-12)
    assert got["modal"] == {
        "fptas": "b",
        "fptas_count": 4,
        "argmax": "b",
        "argmax_count": 3,
        "settings": 6,
    }
    pr = got["promise"]
    assert pr["bound"] == pytest.approx(0.9)
    assert pr["met"] == 5 and pr["diagonal_min"] == pytest.approx(0.75)  # s0/T20 misses 0.9
    assert pr["cross_min"] == pytest.approx(0.25)  # s1/T10's pick (a) under s2/T10's e
    assert pr["cross_pair"] == ["s1/T10", "s2/T10"]
    assert pr["cross_seed_min"] == pytest.approx(0.25)  # same pair: equal T, other seed
    assert pr["cross_steps_min"] == pytest.approx(0.5)  # first of R[2,3], R[3,2], R[5,4]
    assert pr["cross_steps_pair"] == ["s1/T10", "s1/T20"]
    sentence = pr["sentence"]
    assert "W(pick) ≥ 0.900·OPT" in sentence and "holds in 5 of 6 settings" in sentence
    assert "worst 0.750" in sentence and "6 of 6 certified" in sentence
    assert "0.250·OPT (s1/T10's pick judged by s2/T10's e)" in sentence
    assert "a loss of 0.750 = 7.5 ε" in sentence
    assert "across seeds at equal T 0.250; across T 0.500" in sentence


def test_modal_tie_goes_to_the_first_pick():
    assert cs.modal(["x", "y", "y", "x"]) == ("x", 2)
    assert cs.modal(["y", "x", "x"]) == ("x", 2)


def test_one_setting_promises_only_its_own_run():
    got = cs.compare(SETTINGS[:1], NAMES, P, I, OBJ, E[:1], ["c"], eps=0.25, certified=[False])
    np.testing.assert_allclose(got["cross"], [[0.8]])
    pr = got["promise"]
    assert pr["met"] == 1 and pr["certified"] == 0  # 0.8 ≥ 0.75
    assert pr["cross_min"] is None and pr["cross_pair"] is None
    assert "No second complete setting" in pr["sentence"]


# ------------------------------------------------------------------------------ config


def test_default_config_is_the_default_extraction_at_three_seeds():
    cfg = cs.ChoiceStabilityConfig.from_config(cs_config.get_config())
    assert cs.settings(cfg) == [(0, 40), (0, 80), (1, 40), (1, 80), (2, 40), (2, 80)]
    s2 = cs.seeded(cfg.extraction, 2)
    assert (s2.data_seed, s2.proxy.seed, s2.proxy.head.seed) == (2, 2, 0)
    # seed 0 is configs/default.py's extraction: the same candidate-cache key (inference,
    # which differs, does not enter e)
    plain = resolve_config(ExtractConfig.from_config(default.get_config()))
    assert plain.inference == "measured" and cs.seeded(cfg.extraction, 0).inference == "flops"
    keys = extract.ERROR_KEYS
    assert extract.config_hash(cs.seeded(cfg.extraction, 0), keys) == extract.config_hash(
        plain, keys
    )
    assert extract.config_hash(s2, keys) != extract.config_hash(plain, keys)


def test_bad_config_is_rejected_before_work(tmp_path):
    for key, value, field in [("seeds", "0,0", "config.seeds"), ("seeds", "", "config.seeds")]:
        c = cs_config.get_config("smoke")
        c[key] = value
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            cs.run(c, str(tmp_path / "w"))
    c = cs_config.get_config("smoke")
    c.extraction.inference = "measured"
    with pytest.raises(ConfigError, match=r"config\.extraction\.inference"):
        cs.run(c, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()
    with pytest.raises(FileNotFoundError):
        cs.summarise(cs_config.get_config("smoke"), str(tmp_path / "w"))


def test_what_a_seed_moves():
    """data_seed moves the held-out split; with every weight sliced from a source that carries
    the fitted head, proxy.seed changes the batch order and not the init (module docstring)."""
    rows = np.arange(40)[:, None]
    held = [text.split_train_heldout(rows, 0.1, seed)[1][:, 0].tolist() for seed in (0, 1)]
    assert len(held[0]) == 4 and held[0] != held[1]
    src = hf.load(hf.minilm_path())
    head = mlm_head.init_head(src.arch.hidden, src.spec.vocab_size, 5)  # stands for the fitted
    src = mlm_head.with_head(src, jax.tree_util.tree_map(np.asarray, head))
    a = A.Arch(2, 8, 256, 384)
    inits = [distill.init_student(a, src.spec, src.arch.hidden, s, src, "slice") for s in (0, 1)]
    for x, y in zip(*(jax.tree_util.tree_leaves(p) for p in inits)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    order = [batching.epoch_batches({"x": rows}, 8, s, drop_remainder=True)(0)["x"] for s in (0, 1)]
    assert not np.array_equal(order[0], order[1])


# ------------------------------------------------------------------------- smoke study


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("choice_stability")
    config = cs_config.get_config("smoke")
    return config, workdir, cs.run(config, str(workdir))


def _table(workdir, seed, steps, names):
    recs = {}
    for path in (workdir / f"seed{seed}" / "e" / f"T{steps:05d}").glob("*.json"):
        rec = json.loads(path.read_text())
        assert rec["steps"] == steps
        recs[rec["candidate"]] = rec["error"]
    assert sorted(recs) == sorted(names)
    return [recs[n] for n in names]


@pytest.mark.slow
def test_smoke_report_recomputed_from_stage_files(smoke, tmp_path):
    config, workdir, report = smoke
    assert report["complete"] and report["settings_done"] == ["s0/T3", "s0/T6", "s1/T3", "s1/T6"]
    names, p, i = report["candidates"], np.array(report["p"]), np.array(report["i"])
    assert len(names) == 4
    ob = dict(config.extraction.objective)
    tables = [_table(workdir, r["seed"], r["steps"], names) for r in report["rows"]]
    assert [r["e"] for r in report["rows"]] == tables
    assert tables[0] != tables[2]  # the seed moves e (split, masks, batch order)

    def w(err):  # Eq. W written out
        err = np.array(err)
        return (p.max() / p) ** ob["alpha"] * (i.max() / i) ** ob["beta"] / err ** ob["gamma"]

    picks = [r["fptas"]["chosen"] for r in report["rows"]]
    for row, e in zip(report["rows"], tables):
        assert row["argmax"] == names[int(np.argmax(w(e)))]
        ratio = w(e)[names.index(row["fptas"]["chosen"])] / w(e).max()
        assert row["fptas"]["ratio"] == pytest.approx(ratio)
        if row["fptas"]["certified"]:
            assert ratio >= 1 - 0.1 - 1e-12
    want = [[w(eb)[names.index(pa)] / w(eb).max() for eb in tables] for pa in picks]
    np.testing.assert_allclose(report["cross"], want, rtol=1e-12)
    top = max(set(picks), key=lambda x: (picks.count(x), -picks.index(x)))
    assert (report["modal"]["fptas"], report["modal"]["fptas_count"]) == (top, picks.count(top))
    off = [want[a][b] for a in range(4) for b in range(4) if a != b]
    assert report["promise"]["cross_min"] == pytest.approx(min(off))
    md = (workdir / "choice_stability.md").read_text()
    assert report["promise"]["sentence"] in md and "| s1/T6 |" in md
    # seed 0 at T is the extraction of the same config: same e where it evaluated, same pick
    summary = extract.extract(config.extraction, str(tmp_path / "extract"))
    assert summary["chosen"] == picks[0]
    assert summary["n_evaluations"] == report["rows"][0]["fptas"]["evaluations"]
    key = proxy.ERRORS[config.extraction.proxy.error]
    by_key = {candidate_key(A.Arch.parse(n)): n for n in names}
    assert summary["candidate_metrics"]
    for cand, metrics in summary["candidate_metrics"].items():
        assert metrics[key] == tables[0][names.index(by_key[cand])]


@pytest.mark.slow
def test_smoke_rerun_resumes_from_stage_files(smoke, monkeypatch):
    config, workdir, report = smoke

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(proxy, "proxy_error", no_training)

    def canonical(r):
        return json.dumps(ex.without_seconds({k: v for k, v in r.items() if k != "markdown"}))

    assert canonical(cs.run(config, str(workdir))) == canonical(report)
    assert canonical(cs.summarise(config, str(workdir))) == canonical(report)
