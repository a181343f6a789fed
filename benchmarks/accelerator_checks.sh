#!/usr/bin/env bash
# Accelerator checks, sized to finish within 8 minutes on one GPU (H100/H200 class):
#   bash benchmarks/accelerator_checks.sh [OUT_DIR]        (default: $OUT, else runs/accel)
#
# 1. benchmarks.scaling, bfloat16, Bort and BERT-base shapes, data-parallel over the real devices
#    (1, 2, 4, 8 — as many as there are), each fed three ways (resident / host-fed / prefetch):
#    throughput and MFU against the chip's dense bf16 peak (the table's, or for a chip it does
#    not know the measured best of an 8192² bf16 matmul, named as such). Every row is appended
#    to scaling_rows.jsonl as soon as it is measured, so a timeout keeps the finished rows.
# 2. benchmarks.feed at the bert_large proxy shape: Bort student, batch 64 × 128, full teacher
#    logits [64, 20, 50265] float16 (129 MB per step) from a memory-mapped cache, fed resident /
#    host-fed / prefetch, side by side.
# 3. benchmarks.inference, bfloat16 BERT-large at B8 and B1 x L128 — it was reported to hang on
#    an H100. It runs under `timeout` with Python's faulthandler: on a timeout SIGABRT makes
#    every Python thread's stack go to log.txt (compile or execute?), and a second, smaller
#    try (B1 only) runs with XLA_FLAGS=--xla_dump_to so the HLO of the module that hangs
#    comes back as xla_dump.tgz.
#
# Time estimate (one GPU; FLOPs from common.student_step_flops = 3 × forward matmul FLOPs):
#   scaling, per device batch 128 × 128 tokens (16,384 tokens/device):
#     bort      D4/H1024/I768: encoder ≈ 48 MFLOP/token fwd → 0.79 TFLOP, MLM head at 19
#               positions 0.16 TFLOP, KD projections 0.06 TFLOP: ≈ 3.0 TFLOP/step
#               → ≈ 10 ms/step at 300 TFLOP/s (30% of a 989 TFLOP/s bf16 peak);
#     bert-base D12/H768/I3072: ≈ 170 MFLOP/token fwd → ≈ 9 TFLOP/step → ≈ 30 ms/step;
#     3 feeds × (1 warm-up + 5 repeats × 10 steps) per shape: ≈ 2 s + 5 s of steps, plus the
#     host-fed copy of an 88 MB batch per step (≈ 5-10 ms each); compile ≈ 30-60 s per shape
#     → ≈ 2-3 min in all (timeout 200 s).
#   feed, bert_large shape: encoder 8,192 tokens × 48 MFLOP + head 1,280 positions × 105 MFLOP
#     ≈ 0.53 TFLOP fwd → 1.6 TFLOP/step ≈ 5 ms of compute; a host gather of 129 MB from the
#     memory-map ≈ 20-40 ms; (3 warm-up + 3 modes × 5 repeats) × 4 steps = 72 steps ≤ 5 s,
#     writing the 0.5 GB cache file and compiling ≈ 30-60 s (timeout 90 s).
#   inference: ≤ 120 s (its timeout), + ≤ 50 s for the dump try only after a timeout.
#   Worst case 200 + 90 + 120 + 50 = 460 s plus start-up: under 8 minutes.
#
# Everything lands flat in OUT_DIR (at most 10 files): log.txt, scaling_rows.jsonl,
# scaling_bf16.{json,md}, feed_bert_large.{json,md}, inference_bf16.{json,md}, xla_dump.tgz
# (only after a timeout). Each step's exit status is in log.txt; the script itself exits 0 so
# that later steps always run.
# Knobs (environment): SCALING_BATCH (per-device batch, 128), SCALING_TIMEOUT (200 s),
# FEED_TIMEOUT (90 s), INFER_TIMEOUT (120 s), DUMP_TIMEOUT (50 s), PYTHON (python3).
set -uo pipefail
out=${1:-${OUT:-runs/accel}}
mkdir -p "$out"
py=${PYTHON:-python3}
log="$out/log.txt"
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
cd "$(dirname "$0")/.."

step() { # step NAME TIMEOUT_S CMD...: run with a timeout, SIGABRT first (faulthandler stacks)
  local name=$1 limit=$2; shift 2
  echo "=== $name: $* (timeout ${limit}s) $(date -u +%T)" | tee -a "$log" >&2
  timeout -s ABRT -k 20 "$limit" "$@" 2>>"$log"
  local rc=$?
  echo "=== $name: exit $rc $(date -u +%T)" | tee -a "$log" >&2
  return $rc
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  $py -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__); print(jax.devices()); print(jax.devices()[0].device_kind)"
  echo "XLA_FLAGS=${XLA_FLAGS:-}"
} >>"$log" 2>&1

step scaling "${SCALING_TIMEOUT:-200}" $py -m benchmarks.scaling --dtype=bfloat16 \
  --shapes=bort,bert-base --per_device_batch="${SCALING_BATCH:-128}" --seq_len=128 \
  --steps=10 --repeats=5 --feeds=resident,host-fed,prefetch \
  --rows_out="$out/scaling_rows.jsonl" --out="$out/scaling_bf16.json"

step feed "${FEED_TIMEOUT:-90}" $py -m benchmarks.feed --batch=64 --seq_len=128 \
  --positions=20 --vocab=50265 --rows_per_batch=4 --steps=4 --repeats=5 \
  --out="$out/feed_bert_large.json"

step inference "${INFER_TIMEOUT:-120}" $py -m benchmarks.inference --models=bert-large \
  --dtypes=bfloat16 --shapes=8x128,1x128 --repeats=10 --peak_n=8192 \
  --out="$out/inference_bf16.json" >"$out/inference_bf16.md"
rc=$?
if [ $rc -eq 124 ] || [ $rc -eq 134 ] || [ $rc -eq 137 ]; then
  # Timed out: once more, B1 only, dumping every module XLA compiles (HLO text, before and
  # after optimisation) so the hanging one can be read; packed flat for the trip back.
  dump="$(mktemp -d)/xla_dump_inference"
  rm -rf "$dump"
  XLA_FLAGS="${XLA_FLAGS:-} --xla_dump_to=$dump --xla_dump_hlo_as_text" \
    step inference_dump "${DUMP_TIMEOUT:-50}" $py -m benchmarks.inference \
    --models=bert-large --dtypes=bfloat16 --shapes=1x128 --repeats=5 --peak_n=2048
  ls -la "$dump" >>"$log" 2>&1
  tar czf "$out/xla_dump.tgz" -C /tmp "$(basename "$dump")" 2>>"$log"
  ls -la "$out/xla_dump.tgz" >>"$log" 2>&1
fi
ls -la "$out" | tee -a "$log"
exit 0
