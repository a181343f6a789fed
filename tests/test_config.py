"""The config adapter (bort_jax/config.py), the config files and one-line script errors."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bort_jax import pretrain, proxy, train
from bort_jax.arch import Arch
from bort_jax.config import ConfigError, from_config, to_plain
from bort_jax.extract_config import ExtractConfig
from bort_jax.models.bert import ModelOptions
from configs import bert_large, common, default, pretrain_bort

ROOT = Path(__file__).resolve().parents[1]


def test_nested_dataclasses_and_arch_strings():
    cfg = from_config(
        proxy.ProxyConfig, {"num_steps": 3, "optim": {"learning_rate": 0.5}, "kd": {"hidden": 0.0}}
    )
    assert cfg.num_steps == 3 and cfg.optim.learning_rate == 0.5 and cfg.kd.hidden == 0.0
    assert cfg.optim.weight_decay == train.OptimConfig().weight_decay  # default kept
    assert from_config(pretrain.PretrainConfig, {"arch": "4,8,1024,768"}).arch == Arch(
        4, 8, 1024, 768
    )


def test_unknown_keys_and_bad_values_are_named():
    with pytest.raises(ConfigError, match=r"proxy\.kd\.hiden"):
        from_config(proxy.ProxyConfig, {"kd": {"hiden": 1.0}}, "proxy")
    with pytest.raises(ConfigError, match=r"config\.arch: .*not divisible"):
        from_config(pretrain.PretrainConfig, {"arch": "2,5,384,768"})
    with pytest.raises(ConfigError, match="optim.learning_rate must be > 0"):
        from_config(train.OptimConfig, {"learning_rate": -1.0}, "optim")


def test_pretrain_config_file_spells_out_every_field():
    cfg = pretrain_bort.get_config()
    assert set(cfg) == {f.name for f in dataclasses.fields(pretrain.PretrainConfig)}
    assert set(cfg.optim) == {f.name for f in dataclasses.fields(train.OptimConfig)}
    assert to_plain(pretrain.validate(cfg).optim) == to_plain(cfg.optim)
    assert pretrain.validate(pretrain_bort.get_config("smoke")).num_steps == 12


def test_parse_arg_and_arch():
    assert common.parse_arg("smoke", smoke=False).smoke is True
    assert common.parse_arg(None, smoke=False, n=3).n == 3
    assert common.parse_arg("n=5", n=3).n == 5
    with pytest.raises(ValueError, match="unknown config argument 'smok'"):
        common.parse_arg("smok", smoke=False)
    assert common.parse_arch("D4/A8/H1024/I768") == "4,8,1024,768"


@pytest.mark.parametrize(
    "script,override,message",
    [
        ("finetune.py", "--config.batch_size=0", "config.batch_size must be positive"),
        ("pretrain.py", "--config.arch=2,5,384,768", "config.arch: Arch.hidden=384 is not"),
    ],
)
def test_script_bad_value_prints_one_line(tmp_path, script, override, message):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), override, f"--workdir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in proc.stderr


def _model_configs():
    """(typed config builder, config with a `model` section, where that section sits)."""
    from bort_jax import finetune
    from bort_jax.experiments.agora_glue.config import GlueConfig
    from configs import agora_glue
    from configs import finetune as finetune_config

    return [
        (pretrain.validate, pretrain_bort.get_config(), lambda c: c.model),
        (finetune.FinetuneConfig.from_config, finetune_config.get_config(), lambda c: c.model),
        (ExtractConfig.from_config, default.get_config(), lambda c: c.proxy.model),
        (GlueConfig.from_config, agora_glue.get_config(), lambda c: c.model),
    ]


def test_every_config_has_one_model_section_and_names_unknown_keys():
    for build, cfg, section in _model_configs():
        assert to_plain(section(cfg)) == to_plain(ModelOptions())  # spelled out, all off
        section(cfg).scan_layers, section(cfg).remat = True, True
        assert section(build(cfg)) == ModelOptions(scan_layers=True, remat=True)
        section(cfg).x = 1
        with pytest.raises(ConfigError, match=r"config\.(proxy\.)?model\.x"):
            build(cfg)
    assert "scan_layers" not in default.get_config().proxy  # one name: proxy.model.scan_layers
    large = ExtractConfig.from_config(bert_large.get_config())
    assert large.proxy.model == ModelOptions(scan_layers=True, remat=True, vocab_multiple=128)


def test_candidate_cache_key_ignores_the_model_layout():
    """scan / remat / vocabulary padding do not change e(ξ): same key; other proxy fields do."""
    from bort_jax import extract

    def key(**proxy_fields):
        c = default.get_config()
        c.proxy.update(proxy_fields)
        return extract.config_hash(ExtractConfig.from_config(c), extract.ERROR_KEYS)

    layout = dict(scan_layers=True, remat=True, vocab_multiple=128)
    assert key(model=layout) == key()
    assert key(num_steps=41) != key()
