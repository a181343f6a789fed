"""Audit the FPTAS against exhaustive search (thin main of `bort_jax.extract.audit`).

python scripts/audit_fptas.py --workdir=runs/extract            # reuses extract's cache
python scripts/audit_fptas.py --real=false                        # synthetic only, seconds
"""

from absl import flags

from bort_jax import cli, extract

_REAL = flags.DEFINE_bool("real", True, "also audit the real embedded instance")
_EPS = flags.DEFINE_list("eps", ["0.05", "0.1", "0.25", "0.5"], "ε values")
_SYNTHETIC = flags.DEFINE_bool("synthetic", True, "audit the synthetic instances")
_OUT = flags.DEFINE_string("out", "audit.md", "file name of the table inside --workdir")


def audit(config, workdir: str) -> str:
    eps = [float(x) for x in _EPS.value]
    return extract.audit(
        config, workdir, eps, real=_REAL.value, synthetic=_SYNTHETIC.value, out=_OUT.value
    )


if __name__ == "__main__":
    cli.config_main(audit, __file__, "default.py", "runs/extract", str)
