"""KD pretraining of an extracted architecture (Bort, arXiv 2010.10499 Sec. 3).

  python scripts/pretrain.py --config=configs/pretrain_bort.py --workdir=runs/pretrain
  python scripts/pretrain.py --config=configs/pretrain_bort.py:smoke --workdir=runs/pt_smoke
  python scripts/pretrain.py --config=configs/pretrain_bort.py \
      --config.arch=4,8,1024,768 --config.teacher_dir=/ckpt/roberta-large --config.kd.logit=0.5 \
      --config.kd.mlm=0.1 --config.corpus=tfds:wikipedia/20230601.en

Default: the embedded corpus (stdlib pydoc topics) and the installed all-MiniLM-L6-v2 as the
teacher (hidden-state KD; it has no MLM head), a 2-layer student sliced from it; a few
minutes on a 2-core CPU.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = common.parse_arg(arg, smoke=False)
    c = ml_collections.ConfigDict()
    c.arch = common.parse_arch("2,12,384,768")  # D,A,H,I of the student
    c.teacher_dir = ""  # HF directory; '' = installed all-MiniLM-L6-v2
    c.student_tokenizer_dir = ""  # if set, must agree with the teacher's vocabulary
    c.init_method = "slice"  # slice (from `init`, else the teacher) | random
    c.init = ""  # HF checkpoint directory to slice from; '' = the teacher
    c.corpus = "embedded"  # embedded | path | tfds:NAME[:SPLIT]
    c.max_seq_len = 64
    c.max_sequences = 2048
    c.heldout_fraction = 0.05
    c.cache_dir = ""  # '' = <workdir>/teacher_cache
    c.seed = 0
    c.batch_size = 16
    c.num_steps = 400
    c.dropout_rate = 0.1
    # computation dtype: bfloat16 | float32 | auto (bfloat16 on TPU/GPU, float32 on CPU);
    # parameters, optimizer state and losses stay float32 (bort_jax/precision.py)
    c.dtype = "auto"
    c.optim = ml_collections.ConfigDict(
        dict(
            learning_rate=5e-4,
            warmup_steps=0,
            warmup_ratio=0.05,
            schedule="linear",
            end_lr=0.0,
            weight_decay=0.01,
            b1=0.9,
            b2=0.999,
            eps=1e-6,
            clip_norm=1.0,
            optimizer="adamw",
            momentum=0.0,
        )
    )
    c.kd = ml_collections.ConfigDict(
        dict(mlm=1.0, hidden=1.0, logit=0.0, temperature=2.0, layer_map="uniform", top_k=0)
    )
    c.checkpoint_every = 100
    c.eval_every = 100
    c.log_every = 20
    c.progress = True
    # SPMD mesh (bort_jax/sharding.py), used when there is more than one device; -1 = the rest
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1))
    # layout (bort_jax.models.bert.ModelOptions): layers through nn.scan, remat (recompute each
    # layer in the backward pass; needs scan), vocabulary rows rounded up to a multiple (128
    # when mesh.model > 1, so the 'model' axis splits the word-embedding table); exports stay
    # canonical (unrolled, unpadded)
    c.model = ml_collections.ConfigDict(dict(scan_layers=False, remat=False, vocab_multiple=1))
    if arg.smoke:
        c.max_sequences, c.max_seq_len, c.batch_size = 96, 32, 8
        c.num_steps, c.checkpoint_every, c.eval_every, c.log_every = 12, 6, 6, 3
        c.progress = False
    return c
