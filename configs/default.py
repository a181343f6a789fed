"""Embedded default extraction: MiniLM-L6 as source and teacher, the embedded corpus.

  python scripts/extract.py                       # = --config=configs/default.py
  python scripts/extract.py --config.eps=0.25 --workdir=runs/extract_eps025

A small grid below all-MiniLM-L6-v2 (D6/A12/H384/I1536, head width 32): every candidate keeps
MiniLM's head width (A = H/32), so it can be sliced from MiniLM, and heads grow with H in the
partial order. Candidates are initialised by slicing and proxy-trained by hidden-state +
MLM KD for `proxy.steps` steps. Finishes in well under 20 minutes on a 2-core CPU.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.source_dir = ""  # '' = installed all-MiniLM-L6-v2
    c.teacher_dir = ""  # '' = the source
    c.grid = ml_collections.ConfigDict(
        dict(
            depth=[1, 2, 4, 6],
            heads=[4, 8, 12],
            hidden=[128, 256, 384],
            intermediate=[384, 1536],
            head_dim=32,
            monotone_heads=True,
            monotone_depth=True,
            monotone_hidden=True,
            monotone_intermediate=True,
        )
    )
    c.method = "fptas"  # fptas | exhaustive
    c.eps = 0.1
    c.s = 1
    # γ = 4 on the task-error scale, put on e's scale by the error audit: over 9 audited
    # candidates SST-2 error ∝ e^k with k = 5.27 (R² 0.83), so γ = 4k ≈ 21
    # (scripts/audit_error.py, docs/error_signal.md §6). With γ = 4 on e itself, e's 1.18×
    # spread could not outweigh the 15× size spread and the search took the smallest shape,
    # which is at chance on SST-2.
    c.objective = ml_collections.ConfigDict(dict(alpha=0.5, beta=0.5, gamma=21.0))
    # ≥ the largest violation δ* of M over all 24 candidates of this grid: 0.013 / 0.018 /
    # 0.014 at T = 10 / 20 / 40 proxy steps (scripts/eps_budget.py tables); every run checks
    # M on its evaluated pairs and reports "not certified" beyond it
    c.monotonicity_slack = 0.02
    c.convex = False  # assumption C fails on this instance (audit): off
    # i(ξ): "measured" = a latency model fitted once to `latency_points` measured shapes and
    # stored (bort_jax/extract.py explains why not raw measurements) | "flops" = analytic FLOPs
    c.inference = "measured"
    c.latency_batch = 1
    c.latency_seq_len = 128
    c.latency_repeats = 5  # timed runs per calibration shape (median)
    c.latency_points = 8  # calibration shapes, spread over the grid's FLOP range
    c.latency_model = ""  # '' = <workdir>/latency_model_*.json; a shared path makes
    #                                several extractions use the very same i(ξ)
    c.corpus = "embedded"
    c.seq_len = 32
    c.max_sequences = 640
    c.heldout_fraction = 0.1
    c.data_seed = 0
    c.proxy = ml_collections.ConfigDict(
        dict(
            steps=40,
            batch_size=16,
            init="slice",
            seed=0,
            dropout=0.0,
            optim=dict(learning_rate=1e-3, warmup_steps=4, weight_decay=0.01, optimizer="adamw"),
            kd=dict(mlm=1.0, hidden=1.0, logit=0.0, temperature=2.0, layer_map="uniform", top_k=0),
            # e(ξ) = held-out MLM CE + output-layer MSE of a student that starts from the MLM
            # head fitted once on the frozen source (MiniLM has none) and from [I | 0]
            # projections, so e measures the encoder, not a fresh head (docs/error_signal.md)
            error="output_total",
            head_init="fitted",
            proj_init="slice",
            head=dict(steps=100, batch_size=128, learning_rate=3e-3, weight_decay=0.01, seed=0),
        )
    )
    # T(ε, s) proxy steps per candidate (bort_jax/search/budget.py, docs/eps_budget.md):
    # "fixed" = proxy.steps for every ε; "eps" = steps_ref steps at (eps_ref, s_ref), scaled
    # by eps_ref / ε (s_ref / s)^1.5 as in the paper's runtime (Eq. R)
    c.proxy_budget = ml_collections.ConfigDict(
        dict(
            mode="fixed", kappa=0.0, steps_ref=40, eps_ref=0.1, s_ref=1.0, min_steps=1, max_steps=0
        )
    )
    c.progress = True
    # SPMD mesh (bort_jax/sharding.py), used when there is more than one device; -1 = the rest
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    # candidate-parallel search: the devices are split into `parallel` equal groups (each
    # shaped by `mesh`), one candidate trains on each group at a time (single process only)
    c.parallel = 1
    c.compilation_cache = True
    c.compilation_cache_dir = ""  # '' = $JAX_COMPILATION_CACHE_DIR if set, else <workdir>/jax_cache
    c.plan = False  # True: print the cost plan (bytes, memory, measured s/step) and exit
    if arg == "smoke":
        c.grid.depth, c.grid.intermediate = [1, 2], [384]
        c.grid.hidden, c.grid.heads = [128, 256], [4, 8]
        c.max_sequences, c.seq_len = 96, 16
        c.proxy.steps, c.proxy.batch_size = 3, 8
        c.proxy.head.steps, c.proxy.head.batch_size = 4, 32
        c.latency_seq_len, c.latency_repeats, c.latency_points = 16, 2, 3
        c.progress = False
    return c
