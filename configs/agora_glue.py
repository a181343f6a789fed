"""Agora vs plain fine-tuning of a small student on GLUE (`bort_jax.experiments.agora_glue`).

  python scripts/agora_glue.py --config=configs/agora_glue.py --workdir=runs/agora_glue \
      [--config.tasks=sst2,rte] [--config.seeds=0,1,2] [--config.n_train=500]
  python scripts/agora_glue.py --config=configs/agora_glue.py:smoke --workdir=runs/agora_smoke
  # a stronger labeler (docs/finetune.md section 2.1)
  python scripts/agora_glue.py --config=configs/agora_glue.py --workdir=runs/agora_strong \
      --config.tasks=sst2 --config.labeler.train_examples=8000 \
      --config.labeler.num_steps=300 --config.labeler.eval_every=100

Data: `data_dir` (GLUE file layout), else $BORT_DATA_DIR, else TFDS. Sizes are chosen so both
tasks, three seeds each, run in about 20 minutes on two CPU cores. A rerun with the same
workdir resumes (finished tasks and seeds are loaded, fits continue from checkpoints).
`smoke`: SST-2 only, 64 training and 64 dev examples, one seed, one Agora round, a few steps
per fit (a few minutes on 2 CPU cores, mostly compilation; checks the wiring, the numbers
mean nothing).
`samplers`: the sampler report alone (nearest-token, masked-LM, span) on SST-2, RTE, MRPC;
no student is trained. `controls`: Agora at equal compute with controls (SST-2, RTE, MRPC;
5 seeds; Agora with the neighbour and the nearest-token sampler; distill and step-budget
controls; fixed round); `controls,smoke` runs it at the smoke size. The larger-data point is
`--config.n_train=2000` (fits keep their step counts; docs/agora.md section 6). `pipeline`: the
Bort pipeline's Agora option (`agora_glue.agora_for_model` sets init, student_init and
student_arch=''): SST-2 and MRPC, 500 examples, seeds 0-2, the neighbour arm alone, no
controls, the last of 2 rounds, 120 steps per student fit; estimated at 10-15 minutes per task
on two idle CPU cores with a 2-layer, 384-wide student and the MiniLM labeler (about 900 /
1,150 CPU-seconds for SST-2 / MRPC, from one-seed runs; docs/agora.md section 6). One table
over several finished runs: `python scripts/agora_rows.py <workdir>/agora_glue.json ...`.
"""

import ml_collections

from configs import common


def _fit(**fields) -> ml_collections.ConfigDict:
    """One fit's fields; checkpoint_every 0 = only at the end of the fit (a kill loses < 1 fit)."""
    base = dict(
        batch_size=16,
        warmup_ratio=0.1,
        weight_decay=0.0,
        clip_norm=1.0,
        dropout_rate=0.1,
        log_every=50,
        checkpoint_every=0,
    )
    return ml_collections.ConfigDict({**base, **fields})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False, samplers=False, controls=False, pipeline=False)
    c = ml_collections.ConfigDict()
    c.tasks = "sst2,rte"
    c.init = ""  # teacher / slicing source; "" = all-MiniLM-L6-v2
    c.data_dir = ""  # "" = $BORT_DATA_DIR, else TFDS
    c.n_train = 500  # scarce data: training examples kept (data_seed)
    c.data_seed = 0
    c.max_dev_examples = 0  # 0 = the whole dev split
    c.split_seed = 0  # dev -> (agora half, held-out half)
    c.agora_fraction = 0.5
    c.seeds = "0,1,2"  # student init, data order, dropout, Agora sampling
    c.max_seq_len = 64
    c.length_bucket = 16
    c.eval_batch_size = 64
    c.student_arch = common.parse_arch("2,6,192,768")  # sliced from init
    # the student's own HF checkpoint dir / hf: id instead of a slice of init ("" = sliced);
    # then student_arch is its shape or "", and its vocabulary must be init's
    c.student_init = ""
    c.n_examples = 2  # perturbed sentences shown in the report
    c.control_restarts = True  # also: best of R+1 plain fits (same compute as Agora)
    c.control_distill = False  # also: student + labeler pseudo-labels of random
    c.distill_pool_size = 4000  # unlabeled train-split text
    c.control_budget = False  # also: one plain fit with Agora's total step budget
    c.compilation_cache = "jax_cache"  # JAX persistent cache, relative to the workdir; "" off
    # computation dtype of every fit (student, labeler): bfloat16 | float32 | auto (bfloat16
    # on TPU/GPU, float32 on CPU); parameters, optimizer state and losses stay float32
    c.dtype = "auto"
    # layout of every fit (bort_jax.models.bert.ModelOptions): layers through nn.scan, remat
    # (needs scan), vocabulary rows rounded up to a multiple (128 with a 'model' mesh axis)
    c.model = ml_collections.ConfigDict(dict(scan_layers=False, remat=False, vocab_multiple=1))

    # student / labeler: every fine-tuning optimisation field of a fit (FinetuneConfig names)
    c.student = _fit(num_steps=150, learning_rate=1e-3)
    # labeler.train_examples: training examples of the labeler (same data_seed permutation,
    # so a larger set contains the student's): 0 = the student's n_train, -1 = the whole
    # training split, N = N examples. The student always sees n_train only.
    c.labeler = _fit(
        num_steps=100,
        learning_rate=1e-4,
        eval_every=50,  # best step on the agora half; 0 = only at the end
        train_examples=0,
    )
    c.agora = ml_collections.ConfigDict(
        dict(
            rounds=3,
            samples_per_error=4,
            distribution="uniform_ball",
            radius=3.0,  # x mean nearest-neighbour token distance (see docs)
            radius_mode="nn_mean",
            atom_ndim=1,
            replay_fraction=1.0,
            max_synthetic=0,  # 0 = no cap
            patience=0,
            chunk_size=16,
            nn_max_points=2048,
        )
    )
    # how Agora samples around an error (bort_jax.agora.text), comma-separated = one Agora
    # arm each on the same seeds (the first sizes the controls): 'nearest_token' (perturbed
    # embeddings, radius above), 'masked_lm' (mask_count tokens resampled from MiniLM with a
    # head fitted on the labeler's training rows, head_steps), 'span' (a span_length window
    # copied from a real training row) or 'neighbour' (k of the `neighbours` nearest
    # sentences of the distill_pool_size unlabelled pool, MiniLM sentence embeddings)
    c.sampler = ml_collections.ConfigDict(
        dict(
            kind="nearest_token",
            mask_count=2,
            temperature=1.0,
            top_k=50,  # 0 = no filter
            span_length=3,
            head_steps=300,
            head_rows=0,  # + this many unlabelled training-split sentences for the head
            whole_word=True,  # resample whole one-piece words only (no "##" pieces)
            neighbours=16,  # 'neighbour': candidates per error (k of them are drawn)
        )
    )
    # sampler comparison per task (text changed, labeler = gold, examples); only = no students
    c.sampler_report = ml_collections.ConfigDict(dict(samplers="", n_centres=32, only=False))
    # reported Agora round: 'agora_half' = best on the agora half (optimistic: Agora sampled
    # from it), 'fixed' = fixed_round (-1 = the last, i.e. agora.rounds with patience 0)
    c.selection = "agora_half"
    c.fixed_round = -1
    if arg.samplers:  # the sampler report alone, SST-2 / RTE / MRPC (docs/agora.md)
        c.tasks = "sst2,rte,mrpc"
        c.sampler_report.update(samplers="nearest_token,masked_lm,span", only=True)
    if arg.controls:  # equal compute with controls: 3 tasks, 5 seeds, two Agora arms, fixed round
        c.tasks, c.seeds, c.selection = "sst2,rte,mrpc", "0,1,2,3,4", "fixed"
        c.sampler.kind = "neighbour,nearest_token"
        c.control_distill = c.control_budget = True
        c.control_restarts = False  # selection is fixed: no best-of-fits to control for
    if arg.pipeline:  # the Bort pipeline's Agora option (agora_glue.agora_for_model)
        c.tasks, c.seeds, c.n_train, c.selection = "sst2,mrpc", "0,1,2", 500, "fixed"
        c.sampler.kind = "neighbour"
        c.control_restarts = c.control_distill = c.control_budget = False
        # agora_for_model sets init, student_init (its model) and student_arch = ""; alone,
        # the student is MiniLM sliced to the size the run time is budgeted for
        c.student_arch = common.parse_arch("2,12,384,1536")
        c.agora.rounds = 2
        c.student.num_steps = 120
    if arg.smoke:
        c.tasks, c.seeds, c.n_train, c.max_dev_examples = "sst2", "0", 64, 64
        c.student.num_steps, c.student.log_every, c.student.checkpoint_every = 12, 6, 6
        c.labeler.num_steps, c.labeler.eval_every, c.labeler.log_every = 20, 10, 10
        c.agora.rounds, c.agora.samples_per_error = 1, 2
        c.sampler.head_steps = 20
    return c
