"""Helpers shared by the config files (big_vision's `parse_arg` habit)."""

from __future__ import annotations

import ml_collections

from bort_jax.arch import Arch


def parse_arch(text: str) -> str:
    """Validate a 'D,A,H,I' string now (a named error at config time) and return it canonical.

    Configs keep the architecture as a string so that `--config.arch=4,8,1024,768` overrides
    it on the command line; the library parses it with `Arch.parse` (via `bort_jax.config`).
    """
    a = Arch.parse(text)
    return f"{a.depth},{a.heads},{a.hidden},{a.intermediate}"


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """`get_config(arg)` variants: 'smoke' or 'key=value,key=value' (values typed as defaults).

    >>> parse_arg("smoke", smoke=False).smoke
    True
    """
    values = dict(defaults)
    for item in (arg or "").split(","):
        if not item:
            continue
        key, _, value = item.partition("=")
        if key not in values:
            raise ValueError(f"unknown config argument {key!r}; valid: {sorted(values)}")
        if not _:
            values[key] = True
        elif isinstance(values[key], bool):
            values[key] = value.lower() in ("1", "true", "yes")
        else:
            values[key] = type(values[key])(value) if values[key] is not None else value
    return ml_collections.ConfigDict(values)
