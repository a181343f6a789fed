"""What every script in `scripts/` shares: one-line errors for bad input, quiet library logs.

`run(main)` replaces `absl.app.run(main)`: a `ConfigError`, `ValueError`, `KeyError` or `OSError`
escaping `main` (a bad config value, a missing file, malformed data) is printed as one line
`error: <message>` on stderr and the process exits with status 2, before or after expensive
work alike. Pass `--verbosity=0` or higher (absl's flag) to see the full traceback and every
INFO log.

This module is the scripts' main, not part of the library: the library logs through absl
(`bort_jax.experiments.log` for progress); only the lines a script shows its user are
printed here (the one-line error, and `config_main`'s final summary on stdout).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

USER_ERRORS = (ValueError, KeyError, OSError)
EXIT_USER_ERROR = 2


def _not_orbax_info(record: logging.LogRecord) -> bool:
    """False for a record below WARNING logged from Orbax's sources."""
    return record.levelno >= logging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


def quiet_logs() -> None:
    """Unless `--verbosity` was given: drop Orbax's INFO logs (one per checkpoint save; Orbax
    logs through absl's logger, as this library does) and JAX's backend notices, keeping
    the library's progress lines."""
    if flags.FLAGS["verbosity"].present:
        return
    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("absl").addFilter(_not_orbax_info)
    for name in ("orbax", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(logging.WARNING)


def distributed() -> bool:
    """Joins a multi-process run (`sharding.initialize_distributed`: JAX_COORDINATOR_ADDRESS /
    JAX_NUM_PROCESSES / JAX_PROCESS_ID, or BORT_DISTRIBUTED=1 where JAX finds them itself)
    before anything touches a device; a no-op on a single process. Every script calls it
    through `run` / `config_main`."""
    from bort_jax import sharding

    return sharding.initialize_distributed()


def _guarded(main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
    def wrapped(argv: list[str]) -> object:
        quiet_logs()
        distributed()
        try:
            return main(argv)
        except USER_ERRORS as e:
            if flags.FLAGS["verbosity"].present:
                raise
            message = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
            print(f"error: {message}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapped


def run(main: Callable[[list[str]], object]) -> None:
    """`absl.app.run(main)` with one-line user errors (see module docstring)."""
    app.run(_guarded(main))


def config_main(
    fn: Callable[[Any, str | None], Any],
    script: str,
    config_name: str,
    default_workdir: str | None,
    describe: Callable[[Any], str],
) -> None:
    """The whole body of a script in `scripts/`: `--config` (default `configs/<config_name>`
    of the repository holding `script`) and `--workdir` flags, `fn(config, workdir)`, print
    `describe(result)`, user errors as one line (see `run`).

    The repository root goes on `sys.path` so that config files can import `configs.*`.
    """
    root = Path(script).resolve().parents[1]
    sys.path.insert(0, str(root))
    config = config_flags.DEFINE_config_file(
        "config",
        str(root / "configs" / config_name),
        "config file (get_config); FILE:arg picks a variant, --config.x=y overrides",
        lock_config=True,
    )
    workdir = flags.DEFINE_string("workdir", default_workdir, "output / resume directory")

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        print(describe(fn(config.value, workdir.value)))

    run(main)
