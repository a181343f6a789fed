"""Config for `scripts/agora_glue.py`: plain vs Agora fine-tuning of a small student.

    python scripts/agora_glue.py --config=configs/agora_glue.py --workdir=runs/agora_glue \
        [--config.tasks=sst2,rte] [--config.seeds=0,1,2] [--config.n_train=500]

Sizes are chosen so both tasks, three seeds each, run in about 20 minutes on two CPU cores.
`student` and `labeler` take any `bort_jax.finetune.FinetuneConfig` optimisation field
(num_steps, batch_size, learning_rate, warmup_ratio, weight_decay, dropout_rate, ...);
`labeler.train_examples` sets the labeler's training data (0 = the student's, the
default; -1 = all; N = N examples, e.g. the stronger-labeler run in docs/finetune.md:
`--config.tasks=sst2 --config.labeler.train_examples=8000 --config.labeler.num_steps=300`);
`agora` takes the fields of `bort_jax.agora.AgoraConfig` (max_synthetic 0 = no cap).
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict()
    cfg.tasks = "sst2,rte"
    cfg.init = ""                  # teacher / slicing source; "" = all-MiniLM-L6-v2
    cfg.data_dir = ""              # "" = ../shared/data beside the repo, else TFDS
    cfg.n_train = 500              # scarce data: training examples kept (data_seed)
    cfg.data_seed = 0
    cfg.max_dev_examples = 0       # 0 = the whole dev split
    cfg.split_seed = 0             # dev -> (agora half, held-out half)
    cfg.agora_fraction = 0.5
    cfg.seeds = "0,1,2"
    cfg.max_seq_len = 64
    cfg.length_bucket = 16
    cfg.eval_batch_size = 64
    cfg.student_arch = "2,6,192,768"   # sliced from init (first layers, heads, units)
    cfg.n_examples = 2                 # perturbed sentences shown in the report
    cfg.control_restarts = True        # also: best of R+1 plain fits (same compute as Agora)
    cfg.control_distill = False        # also: student + labeler pseudo-labels of random
    cfg.distill_pool_size = 4000       # unlabeled train-split text (see the script)
    cfg.compilation_cache = True       # JAX persistent cache in <workdir>/jax_cache

    cfg.student = ml_collections.ConfigDict(dict(
        num_steps=150, batch_size=16, learning_rate=1e-3, warmup_ratio=0.1,
        weight_decay=0.0, dropout_rate=0.1, log_every=50))
    # labeler.train_examples: training examples of the labeler (same data_seed permutation,
    # so a larger set contains the student's): 0 = the student's n_train, -1 = the whole
    # training split, N = N examples. The student always sees n_train only.
    cfg.labeler = ml_collections.ConfigDict(dict(
        train_examples=0, num_steps=100, batch_size=16, learning_rate=1e-4, warmup_ratio=0.1,
        weight_decay=0.0, dropout_rate=0.1, eval_every=50, log_every=50))
    cfg.agora = ml_collections.ConfigDict(dict(
        rounds=3, samples_per_error=4, distribution="uniform_ball",
        radius=3.0,                # x mean nearest-neighbour token distance (see docs)
        radius_mode="nn_mean", atom_ndim=1, replay_fraction=1.0, max_synthetic=0,
        patience=0, chunk_size=16, nn_max_points=2048))
    return cfg
