"""What every script in `scripts/` shares: one-line errors for bad input, quiet library logs.

`run(main)` replaces `absl.app.run(main)`: a `ConfigError`, `ValueError`, `KeyError` or `OSError`
escaping `main` (a bad config value, a missing file, malformed data) is printed as one line
`error: <message>` on stderr and the process exits with status 2, before or after expensive
work alike. Pass `--verbosity=0` or higher (absl's flag) to see the full traceback and INFO logs.
"""
from __future__ import annotations

import logging
import sys
from typing import Callable

from absl import app, flags
from absl import logging as absl_logging

USER_ERRORS = (ValueError, KeyError, OSError)
EXIT_USER_ERROR = 2


def quiet_logs() -> None:
    """Silence INFO logs (Orbax logs every save) unless `--verbosity` was given."""
    if flags.FLAGS["verbosity"].present:
        return
    absl_logging.set_verbosity(absl_logging.WARNING)
    for name in ("absl", "orbax", "jax._src.xla_bridge"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _guarded(main: Callable[[list[str]], object]) -> Callable[[list[str]], object]:
    def wrapped(argv: list[str]) -> object:
        quiet_logs()
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
