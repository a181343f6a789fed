"""Error-signal audit: Spearman ρ between proxy errors e(ξ) and the downstream score (thin main
of bort_jax.experiments.error_audit).

    BORT_DATA_DIR=GLUE_DIR python scripts/audit_error.py --workdir=runs/error_audit
"""

from bort_jax import cli
from bort_jax.experiments import error_audit

if __name__ == "__main__":
    cli.config_main(
        error_audit.run, __file__, "error_audit.py", "runs/error_audit", error_audit.markdown
    )
