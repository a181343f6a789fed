"""Fine-tuning one task (Bort, arXiv 2010.10499 Sec. 5): every field of `FinetuneConfig`.

    python scripts/finetune.py --config=configs/finetune.py --config.task=rte \
        --config.init=DIR --config.arch=2,6,192,768 --workdir=runs/ft_rte
    python scripts/finetune.py --config=configs/finetune.py:smoke --config.data_dir=DIR

Bort's grid had lr {1e-4, 1e-5, 9e-6}, weight decay {0, 10, 100, 350}, warm-up ratio
{0.35 .. 0.50}, batch {8, 16}; these defaults (lr 1e-4, wd 0, batch 16, warm-up 0.1,
max_seq_len 64, 200 steps) fine-tune MiniLM on a CPU in a few minutes.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False)
    c = ml_collections.ConfigDict()
    c.task = "sst2"
    c.init = ""  # HF checkpoint dir; '' = the installed all-MiniLM-L6-v2
    c.tokenizer = ""  # tokenizer dir; '' = init
    c.arch = ""  # 'D,A,H,I': slice init to this shape; '' = init's shape
    c.data_dir = ""  # GLUE/SuperGLUE file layout; '' = $BORT_DATA_DIR, else TFDS
    c.tfds_data_dir = ""
    c.max_seq_len = 64
    c.length_bucket = 16  # trim batches to a multiple of this; 0 = never trim
    c.batch_size = 16
    c.eval_batch_size = 64
    c.learning_rate = 1e-4
    c.epochs = 1.0  # used when num_steps is 0
    c.num_steps = 200  # > 0 overrides epochs
    c.warmup_ratio = 0.1
    c.weight_decay = 0.0
    c.clip_norm = 1.0
    c.dropout_rate = 0.1
    # computation dtype: bfloat16 | float32 | auto (bfloat16 on TPU/GPU, float32 on CPU);
    # parameters, optimizer state and losses stay float32 (bort_jax/precision.py)
    c.dtype = "auto"
    c.seed = 0  # head init, dropout, data order
    c.data_seed = 0  # which max_train_examples rows are kept
    c.max_train_examples = 0  # 0 = all
    c.max_eval_examples = 0  # 0 = all
    c.eval_every = 0  # 0 = 4 evaluations per run
    c.log_every = 50
    c.checkpoint_every = 0  # 0 = with every evaluation
    c.save_best = True
    c.progress = True
    # SPMD mesh (bort_jax/sharding.py), used when there is more than one device; -1 = the rest
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    # layout (bort_jax.models.bert.ModelOptions): layers through nn.scan, remat (recompute each
    # layer in the backward pass; needs scan), vocabulary rows rounded up to a multiple (128
    # when mesh.model > 1, so the 'model' axis splits the word-embedding table); exports stay
    # canonical (unrolled, unpadded)
    c.model = ml_collections.ConfigDict(dict(scan_layers=False, remat=False, vocab_multiple=1))
    if arg.smoke:
        c.num_steps, c.eval_every, c.log_every = 8, 4, 4
        c.max_train_examples, c.max_eval_examples = 64, 32
        c.max_seq_len, c.batch_size, c.eval_batch_size = 32, 8, 16
        c.progress = False
    return c
