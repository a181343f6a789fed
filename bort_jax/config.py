"""One adapter from configs (ml_collections `ConfigDict`, dicts) to the library's dataclasses.

Every module takes its hyperparameters as a frozen dataclass; configs stay data. `from_config`
is the only bridge: nested dataclass fields are built recursively, a field typed with a class
that has a `parse` classmethod (`Arch`) is parsed from its string form ("4,8,1024,768"), and an
unknown key raises `ConfigError` naming the full dotted path of the key (`proxy.kd.hiden`), so a
typo on the command line never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key is invalid; the message names the field."""


def to_plain(x: Any) -> Any:
    """ConfigDict / nested dicts, lists, tuples -> plain Python containers."""
    if hasattr(x, "to_dict"):
        x = x.to_dict()
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        x = {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
    if isinstance(x, Mapping):
        return {k: to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_plain(v) for v in x]
    return x


def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no recursion for those
        return {f.name: f.type for f in dataclasses.fields(cls)}


def from_config(cls: type[T], config: Any, where: str = "config") -> T:
    """Build dataclass `cls` from `config` (a ConfigDict, a mapping or already a `cls`).

    Fields missing from `config` keep the dataclass defaults. Fields whose type is itself a
    dataclass are built recursively from nested mappings.

    Raises:
      ConfigError: `config` has a key `cls` does not define (named with its dotted path), or
        the dataclass rejected a value (its message is prefixed with `where`).
    """
    if isinstance(config, cls):
        return config
    if config is None:
        config = {}
    values = dict(config.items()) if hasattr(config, "items") else None
    if values is None:
        raise ConfigError(
            f"{where}: expected a mapping of {cls.__name__} fields, got {type(config).__name__}"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}"
            f" (valid: {', '.join(sorted(names))})"
        )
    types = _field_types(cls)
    kwargs = {}
    for name, value in values.items():
        ftype = types.get(name)
        if isinstance(ftype, type) and hasattr(ftype, "parse") and not isinstance(value, ftype):
            try:  # e.g. Arch.parse("4,8,1024,768")
                value = ftype.parse(value)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}.{name}: {e}") from e
        elif dataclasses.is_dataclass(ftype) and not isinstance(value, ftype):
            value = from_config(ftype, value, f"{where}.{name}")
        elif hasattr(value, "to_dict"):
            value = value.to_dict()
        elif isinstance(value, list) and _is_tuple_type(ftype):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e


def _is_tuple_type(ftype: Any) -> bool:
    return ftype is tuple or typing.get_origin(ftype) is tuple


def defaults(cls: type) -> dict[str, Any]:
    """The dataclass defaults of `cls` as plain data (for tests comparing configs to them)."""
    return to_plain(cls())
