"""Audit the FPTAS against exhaustive search (synthetic instances + the real embedded instance).

python scripts/audit_fptas.py --workdir=runs/extract            # reuses extract's cache
python scripts/audit_fptas.py --real=false                        # synthetic only, seconds
"""

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs importable

import logging as py_logging
import os

from absl import app, flags, logging
from ml_collections import config_flags

from bort_jax import extract
from bort_jax.files import atomic_write_text
from bort_jax.search import audit
from bort_jax.search import fptas as F

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "real instance config")
_WORKDIR = flags.DEFINE_string("workdir", "runs/extract", "real instance workdir (cache)")
_REAL = flags.DEFINE_bool("real", True, "also audit the real embedded instance")
_EPS = flags.DEFINE_list("eps", ["0.05", "0.1", "0.25", "0.5"], "ε values")
_SYNTHETIC = flags.DEFINE_bool("synthetic", True, "audit the synthetic instances")
_OUT = flags.DEFINE_string("out", "audit.md", "file name of the table inside --workdir")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    py_logging.getLogger("absl").setLevel(py_logging.WARNING)
    eps = [float(x) for x in _EPS.value]
    rows = audit.synthetic_rows(eps) if _SYNTHETIC.value else []
    if _REAL.value:
        cfg = _CONFIG.value
        prob = extract.build_problem(cfg, _WORKDIR.value)
        monotone = ",".join(a.name for a in prob.space.axes if a.monotone)
        rows += audit.audit_problem(
            f"real: MiniLM grid ({len(prob.space.candidates())}), ⪯ over {monotone}, "
            f"C {'on' if cfg.convex else 'off'}",
            prob.space,
            prob.p,
            prob.i,
            prob.e,
            eps,
            F.WCoefficient(**dict(cfg.objective)),
            cache=prob.cache,
            **{k: v for k, v in extract.search_kwargs(cfg).items() if k != "eps"},
        )
    table = audit.markdown(rows)
    path = os.path.join(_WORKDIR.value, _OUT.value)
    atomic_write_text(path, "# FPTAS audit: FPTAS vs exhaustive search\n\n" + table + "\n")
    print(table)
    print(
        f"\nwritten to {path}; bound violated in {sum(not r.ok for r in rows)} of {len(rows)} "
        f"rows; assumptions violated (not certified) in {sum(not r.certified for r in rows)}"
    )


if __name__ == "__main__":
    app.run(main)
