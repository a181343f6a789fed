#!/usr/bin/env bash
# Accelerator checks, sized for one short run (~10 min of device time at most):
#   bash benchmarks/accelerator_checks.sh [OUT_DIR]        (default: $OUT, else runs/accel)
#
# 1. benchmarks.scaling, bfloat16, Bort and BERT-base shapes, data-parallel over the real devices
#    (1, 2, 4, 8 — as many as there are): throughput and MFU against the chip's dense bf16
#    peak (target: MFU >= 40% at this per-device batch).
# 2. benchmarks.inference, bfloat16 BERT-large at B8 and B1 x L128 — it was reported to hang on an
#    H100. It runs under `timeout` with Python's faulthandler: on a timeout SIGABRT makes
#    every Python thread's stack go to log.txt (compile or execute?), and a second, smaller
#    try (B1 only) runs with XLA_FLAGS=--xla_dump_to so the HLO of the module that hangs
#    comes back as xla_dump.tgz.
# Everything lands flat in OUT_DIR (at most 7 files): log.txt, scaling_bf16.{json,md},
# inference_bf16.{json,md}, xla_dump.tgz (only after a timeout). Each step's exit status
# is in log.txt; the script itself exits 0 so that later steps always run.
# Knobs (environment): SCALING_BATCH (per-device batch, 128), SCALING_TIMEOUT (240 s),
# INFER_TIMEOUT (150 s), DUMP_TIMEOUT (120 s), PYTHON (python3).
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

step scaling "${SCALING_TIMEOUT:-240}" $py -m benchmarks.scaling --dtype=bfloat16 \
  --shapes=bort,bert-base --per_device_batch="${SCALING_BATCH:-128}" --seq_len=128 \
  --steps=10 --repeats=5 --out="$out/scaling_bf16.json"

step inference "${INFER_TIMEOUT:-150}" $py -m benchmarks.inference --models=bert-large \
  --dtypes=bfloat16 --shapes=8x128,1x128 --repeats=10 --peak_n=8192 \
  --out="$out/inference_bf16.json" >"$out/inference_bf16.md"
rc=$?
if [ $rc -eq 124 ] || [ $rc -eq 134 ] || [ $rc -eq 137 ]; then
  # Timed out: once more, B1 only, dumping every module XLA compiles (HLO text, before and
  # after optimisation) so the hanging one can be read; packed flat for the trip back.
  dump="$(mktemp -d)/xla_dump_inference"
  rm -rf "$dump"
  XLA_FLAGS="${XLA_FLAGS:-} --xla_dump_to=$dump --xla_dump_hlo_as_text" \
    step inference_dump "${DUMP_TIMEOUT:-120}" $py -m benchmarks.inference \
    --models=bert-large --dtypes=bfloat16 --shapes=1x128 --repeats=5 --peak_n=2048
  ls -la "$dump" >>"$log" 2>&1
  tar czf "$out/xla_dump.tgz" -C /tmp "$(basename "$dump")" 2>>"$log"
  ls -la "$out/xla_dump.tgz" >>"$log" 2>&1
fi
ls -la "$out" | tee -a "$log"
exit 0
