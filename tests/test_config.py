"""The config adapter (bort_jax/config.py), the config files and one-line script errors."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from bort_jax import pretrain, proxy, train
from bort_jax.arch import Arch
from bort_jax.config import ConfigError, from_config, to_plain
from configs import common, pretrain_bort

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
