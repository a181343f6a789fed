#!/usr/bin/env bash
# Benchmarks on an accelerator machine (GPU/TPU): inference + train throughput.
#   bash benchmarks/run_device.sh OUT_DIR VOCAB_DIR
# VOCAB_DIR holds the MiniLM tokenizer files (vocab.txt, tokenizer.json); the teacher is a
# randomly initialised MiniLM-shaped checkpoint (speed does not depend on the weights).
set -euo pipefail
out=${1:?out dir}; vocab=${2:?vocab dir}
mkdir -p "$out"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
python3 benchmarks/make_random_teacher.py --out="$out/random_teacher" --vocab_dir="$vocab"
python3 benchmarks/inference.py --peak_n=8192 --repeats=10 --out="$out/inference.json" | tee "$out/inference.md"
python3 benchmarks/train_throughput.py --teacher_dir="$out/random_teacher" --peak_n=8192 \
    --batch=32 --seq_len=128 --repeats=10 --out="$out/train.json" | tee "$out/train.md"
