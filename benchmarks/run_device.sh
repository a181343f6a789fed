#!/usr/bin/env bash
# All benchmarks on an accelerator machine (GPU/TPU):
#   bash benchmarks/run_device.sh OUT_DIR [VOCAB_DIR]
# 1. benchmarks/accelerator_checks.sh OUT_DIR: the accelerator checks (bf16 scaling/MFU of the
#    KD proxy step, bf16 BERT-large inference under a timeout with an XLA dump on a hang);
# 2. the full inference table (all models, float32 and bfloat16), under a timeout;
# 3. with VOCAB_DIR (the MiniLM tokenizer files vocab.txt, tokenizer.json; nothing can be
#    downloaded on the device machine, so carry them): the KD train-step throughput, teacher
#    outputs cached vs recomputed, against a randomly initialised MiniLM-shaped teacher
#    (speed does not depend on the weights).
# accelerator_checks.sh alone writes up to 10 files; steps 2-3 add 4 more.
set -uo pipefail
out=${1:?out dir}; vocab=${2:-}
mkdir -p "$out"
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
bash benchmarks/accelerator_checks.sh "$out"
timeout -s ABRT -k 20 "${INFER_ALL_TIMEOUT:-420}" $py -m benchmarks.inference --peak_n=8192 \
  --repeats=10 --out="$out/inference.json" >"$out/inference.md" 2>>"$out/log.txt"
echo "=== inference (all models): exit $?" | tee -a "$out/log.txt"
if [ -n "$vocab" ]; then
  teacher="$(mktemp -d)/random_teacher"
  $py -m benchmarks.make_random_teacher --out="$teacher" --vocab_dir="$vocab"
  timeout -s ABRT -k 20 "${TRAIN_TIMEOUT:-300}" $py -m benchmarks.train_throughput \
    --teacher_dir="$teacher" --peak_n=8192 --batch=32 --seq_len=128 --repeats=10 \
    --out="$out/train.json" >"$out/train.md" 2>>"$out/log.txt"
  echo "=== train_throughput: exit $?" | tee -a "$out/log.txt"
fi
