"""Error-signal audit: does the proxy error e(ξ) rank candidates like the downstream task?

    BORT_DATA_DIR=GLUE_DIR python scripts/audit_error.py --workdir=runs/error_audit
    python scripts/audit_error.py --config=configs/error_audit.py:smoke --workdir=runs/ea_smoke \
        --config.data_dir=tests/fixtures/data

The proxy side (data, proxy training) is the embedded default extraction's (configs/default.py);
every `variants` entry is one proxy run per candidate. The downstream side is a bounded KD
pretraining (the same for every candidate) and SST-2 fine-tuning; data from `data_dir`, else
$BORT_DATA_DIR, else TFDS. Results and the exact command: docs/error_signal.md.
"""

import ml_collections

from configs import common, default, finetune, pretrain_bort

# Both extremes of the default grid, depth varied at H=384 and at H=128, H varied at D=6/D=2.
CANDIDATES = ";".join(
    [
        "1,4,128,384",  # smallest
        "1,8,256,384",  # the default extraction's choice (γ calibrated by this audit)
        "1,12,384,1536",
        "2,4,128,1536",
        "2,8,256,384",
        "2,12,384,1536",
        "4,12,384,1536",
        "6,4,128,1536",
        "6,8,256,1536",
        "6,12,384,1536",  # largest (= the source)
    ]
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    # variants=a+b keeps only those proxy variants (e.g. :variants=fitted+fitted_lr)
    arg = common.parse_arg(arg, smoke=False, variants="")
    variant = "smoke" if arg.smoke else None
    d = default.get_config(variant)
    c = ml_collections.ConfigDict()
    c.source_dir = d.source_dir  # '' = installed all-MiniLM-L6-v2 (also the teacher)
    c.corpus = d.corpus
    c.max_seq_len = d.max_seq_len
    c.max_sequences = d.max_sequences
    c.heldout_fraction = d.heldout_fraction
    c.data_seed = d.data_seed
    c.proxy = d.proxy  # the extraction's proxy run, changed per variant below
    c.proxy.error, c.proxy.head_init, c.proxy.proj_init = "output_total", "fresh", "random"
    c.proxy.head = dict(
        num_steps=100, batch_size=128, learning_rate=3e-3, weight_decay=0.01, seed=0
    )
    # every variant is one proxy run per candidate; all held-out terms are recorded
    c.variants = ml_collections.ConfigDict(
        dict(
            fresh=dict(head_init="fresh", proj_init="random"),  # e(ξ) before this audit
            fitted=dict(head_init="fitted", proj_init="slice"),
            # the same at a fine-tuning learning rate: lr 1e-3 is a from-scratch rate, and
            # 40 steps of it move a sliced, already-trained encoder away from the teacher
            fitted_lr=dict(
                head_init="fitted",
                proj_init="slice",
                optim=dict(d.proxy.optim.to_dict(), learning_rate=1e-4),
            ),
        )
    )
    if arg.variants:
        keep = arg.variants.split("+")
        unknown = sorted(set(keep) - set(c.variants))
        if unknown:
            raise ValueError(
                f"variants={arg.variants}: unknown {unknown}; valid: {sorted(c.variants)}"
            )
        c.variants = ml_collections.ConfigDict({k: c.variants[k].to_dict() for k in keep})
    c.candidates = CANDIDATES
    c.tasks = "sst2"
    c.data_dir = ""
    c.pretrain = pretrain_bort.get_config(variant)
    c.pretrain.max_seq_len, c.pretrain.max_sequences = 32, 640
    c.pretrain.num_steps, c.pretrain.batch_size = 60, 16
    c.pretrain.checkpoint_every = c.pretrain.eval_every = 60
    c.pretrain.progress = False
    c.finetune = finetune.get_config(variant)
    c.finetune.num_steps, c.finetune.batch_size, c.finetune.learning_rate = 240, 16, 2e-4
    c.finetune.max_seq_len, c.finetune.max_train_examples = 64, 0
    c.finetune.eval_every = 240  # one evaluation: the score at the last step
    c.finetune.progress = False
    if arg.smoke:
        c.candidates = "1,4,128,384;1,4,128,1536;1,8,256,384"  # depth 1: fewer compiles
        c.variants = ml_collections.ConfigDict(
            dict(fitted=dict(head_init="fitted", proj_init="slice"))
        )
        c.proxy.head = dict(num_steps=4, batch_size=32)
        c.pretrain.num_steps = 0  # the fine-tuning probe: no pretraining compilations
        c.finetune.num_steps, c.finetune.eval_every = 4, 4
    return c
