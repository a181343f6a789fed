"""Audit the search methods against exhaustive search (thin main of
bort_jax.experiments.method_audit): fptas, the published interval algorithm and random search,
W/OPT under the project's and the published W, proxy evaluations, wall time.

    python scripts/audit_methods.py --workdir=runs/method_audit
    python scripts/audit_methods.py --config=configs/method_audit.py:smoke --workdir=runs/ma_smoke
    python scripts/audit_methods.py --config.instances=real \\
        --config.extraction_workdir=runs/extract --workdir=runs/method_audit_real
"""

from bort_jax import cli
from bort_jax.experiments import method_audit

if __name__ == "__main__":
    cli.config_main(
        method_audit.run, __file__, "method_audit.py", "runs/method_audit", method_audit.markdown
    )
