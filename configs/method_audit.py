"""Search-method audit: fptas, the published interval algorithm and random search against
exhaustive search (docs/search_methods.md).

    python scripts/audit_methods.py --workdir=runs/method_audit            # synthetic
    python scripts/audit_methods.py --config=configs/method_audit.py:smoke --workdir=runs/ma_smoke
    python scripts/audit_methods.py --workdir=runs/method_audit_real \\
        --config.instances=real --config.extraction_workdir=runs/extract

The real instance is the extraction configured by `extract` (configs/default.py; its smoke
variant, 4 candidates, under :smoke; pass the overrides the extraction ran with, e.g.
--config.extract.proxy.num_steps=...) whose candidate cache in `extraction_workdir` is reused;
candidates missing from it are proxy-trained there (the audit needs every candidate's e).
"""

import ml_collections

from configs import common, default


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False)
    c = ml_collections.ConfigDict()
    c.instances = "chain,toy_mlp,bert_like,bert_like_noise"  # and/or 'real'
    c.fptas_eps = "0.05,0.1,0.25"
    c.interval_eps = "2,4,8,16,32"  # integer interval sizes; those > |Ξ| are skipped
    c.seeds = "0,1,2,3,4"  # random search: one run per seed and budget (>= 5)
    c.extraction_workdir = ""  # the extraction's workdir (its candidate cache) for 'real'
    c.extract = default.get_config("smoke" if arg.smoke else None)  # the smoke grid: 4
    if arg.smoke:
        c.instances = "chain,toy_mlp"
        c.fptas_eps = "0.25"
        c.interval_eps = "2,8"
    return c
