"""The typed extraction config (bort_jax/extract_config.py) and the config files that fill it."""

import os

import pytest

from bort_jax.config import ConfigError, defaults, to_plain
from bort_jax.extract_config import ExtractConfig, ObjectiveConfig
from bort_jax.search.space import build_space
from configs import bert_base, bert_large, default, eps_budget


@pytest.mark.parametrize("module", [default, bert_large, bert_base])
def test_config_files_name_every_top_level_field(module):
    """Every field of ExtractConfig is set by the file (no silent default), and it builds."""
    c = module.get_config()
    assert set(c) == set(defaults(ExtractConfig))
    assert set(c.proxy) == set(defaults(ExtractConfig)["proxy"])
    cfg = ExtractConfig.from_config(c)
    assert to_plain(cfg)["proxy"]["num_steps"] == c.proxy.num_steps


def test_unknown_keys_named_by_dotted_path():
    c = default.get_config()
    c.proxy.steps = 3  # the old name
    with pytest.raises(ConfigError, match=r"config\.proxy\.steps"):
        ExtractConfig.from_config(c)
    c = default.get_config()
    c.seq_len = 16
    with pytest.raises(ConfigError, match=r"config\.seq_len"):
        ExtractConfig.from_config(c)
    c = default.get_config()
    c.grid.widht = [1]
    with pytest.raises(ConfigError, match=r"config\.grid\.widht"):
        ExtractConfig.from_config(c)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("eps", 1.5, "config.eps"),
        ("s", 0, "config.s"),
        ("method", "greedy", "config.method"),
        ("inference", "guess", "config.inference"),
        ("latency_points", 1, "config.latency_points"),
        ("compilation_cache", True, "config.compilation_cache"),
    ],
)
def test_bad_values_named(field, value, match):
    c = default.get_config().to_dict()  # a plain mapping: ConfigDict would refuse bool → str
    c[field] = value
    with pytest.raises(ConfigError, match=match):
        ExtractConfig.from_config(c)


def test_key_value_arguments():
    """configs/default.py and bert_large.py take 'smoke' or key=value args like the others."""
    assert (
        default.get_config("smoke=true").max_sequences == default.get_config("smoke").max_sequences
    )
    assert bert_large.get_config("smoke").proxy.num_steps == 2
    with pytest.raises(ValueError, match="unknown config argument"):
        default.get_config("smoek")
    assert eps_budget.get_config("smoke").extraction.max_seq_len == 16


def test_compilation_cache_dir():
    cfg = ExtractConfig()
    assert cfg.compilation_cache_dir("/w") == os.path.join("/w", "jax_cache")
    assert ExtractConfig(compilation_cache="/abs/cache").compilation_cache_dir("/w") == "/abs/cache"
    assert ExtractConfig(compilation_cache="").compilation_cache_dir("/w") is None


def test_objective_e_ref():
    assert ObjectiveConfig(0.5, 0.5, 21.0).coefficient().e_ref == 1.0  # 0: normalised after
    assert ObjectiveConfig(0.5, 0.5, 21.0, e_ref=6.0).coefficient().e_ref == 6.0
    with pytest.raises(ConfigError, match="e_ref"):
        ObjectiveConfig(e_ref=-1.0)
    with pytest.raises(ValueError, match="gamma"):
        ObjectiveConfig(gamma=0.0)


def test_grid_of_the_default_config():
    sp = build_space(ExtractConfig.from_config(default.get_config()).grid)
    assert len(sp.candidates()) == 24
    assert all(a.hidden == 32 * a.heads for a in sp.candidates())
