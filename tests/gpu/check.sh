#!/usr/bin/env bash
# The GPU check a lent accelerator session runs in one call (about 10 minutes on one H200: compiling d512-L8
# and d768-L12 took 56 s and 59 s there, unrolled layers; d1024-L16 did not fit the time):
#   1. CPU against GPU: the same tiny run's eval loss in float32 on CPU, and on the GPU in bfloat16, float32
#      and bfloat16 with cuDNN's attention (each within 2%);
#   2. scaling bench in bfloat16 at ~26M and ~85M parameters (batch 32 x seq 1024): tokens/s and MFU against the stated peak;
#   3. one run sharded over every visible GPU (mesh=fsdp:N) against the same run on one GPU;
#   4. a sweep run by `scaling sweep agents` with one agent per GPU;
#   5. issue 10 on the GPU: K runs packed into one step and several steps per call, against one run and one
#      step per call, at the small shapes a scaling study is made of (bfloat16, batch 16 x seq 256);
#   6. startup: a fresh process's first step with JAX's compilation cache cold and then warm.
# Usage: PY=/path/to/python-with-jax[cuda] bash tests/gpu/check.sh   (results in $OUT, default ./gpu-check)
# It needs a Python whose jax sees the GPU; nothing is downloaded (device machines have no network).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
OUT=${OUT:-gpu-check}
RUNS=${RUNS:-$OUT/runs}   # run homes hold many files: keep them out of a folder that is copied back whole
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled XLA_PYTHON_CLIENT_PREALLOCATE=false
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
if ! "$PY" -c 'import jax, sys; sys.exit(0 if jax.devices()[0].platform == "gpu" else 1)' 2>/dev/null; then
  echo "no GPU visible to $PY's jax: nothing to check" | tee "$OUT/summary.txt"; exit 1
fi
NGPU=$("$PY" -c 'import jax; print(len(jax.devices()))')
"$PY" -c 'import jax; print(jax.__version__, jax.devices())' | tee -a "$OUT/summary.txt"
SC=("$PY" -m scaling.cli --home "$RUNS")
TINY=(d_model=128 seq_len=256 batch_size=32 tokens=2e6 eval_tokens=32768 n_evals=2 wandb=off)

log "1. parity: CPU float32 against GPU bfloat16"
JAX_PLATFORMS=cpu timeout 300 "${SC[@]}" train "${TINY[@]}" run_id=parity-cpu dtype=float32 --quiet 2>&1 | tail -n 9 | tee -a "$OUT/summary.txt"
for v in "gpu dtype=bfloat16" "gpu32 dtype=float32" "cudnn dtype=bfloat16 attention=cudnn"; do set -- $v
  timeout 120 "${SC[@]}" train "${TINY[@]}" run_id=parity-$1 $2 ${3:-} devices=0 --quiet 2>&1 | tail -n 9 | tee -a "$OUT/summary.txt"
done
# 244 steps of a small model amplify rounding: on an H200 (2026-11-29) GPU float32 (TF32 matmuls) ended 0.9%
# from CPU float32 and bfloat16 1.2%; a wrong mask or scale moves the loss by far more than 2%.
"$PY" - "$RUNS" <<'PYEOF' | tee -a "$OUT/summary.txt"
import json, sys
loss = {d: json.load(open(f"{sys.argv[1]}/parity-{d}/summary.json"))["eval_loss"] for d in ("cpu", "gpu", "gpu32", "cudnn")}
for d in ("gpu", "gpu32", "cudnn"):
    rel = abs(loss[d] - loss["cpu"]) / loss["cpu"]
    print(f"parity: cpu {loss['cpu']:.5f} {d} {loss[d]:.5f} relative {rel:.4%} -> {'OK' if rel < 0.02 else 'FAIL'}")
PYEOF

log "2. bench bfloat16 (MFU against the stated peak)"
timeout 240 "${SC[@]}" bench --d-model 512 768 --batch-size 32 --seq-len 1024 --steps 20 --dtype bfloat16 2>&1 | tee -a "$OUT/summary.txt"

log "3. one run over all $NGPU GPUs (fsdp) against one GPU"
RUN=(d_model=512 seq_len=512 batch_size=$((8 * NGPU)) tokens=4e6 eval_tokens=65536 n_evals=2 wandb=off)
timeout 150 "${SC[@]}" train "${RUN[@]}" run_id=one devices=0 --quiet 2>&1 | tail -n 9 | tee -a "$OUT/summary.txt"
timeout 150 "${SC[@]}" train "${RUN[@]}" run_id=all mesh=fsdp:$NGPU --quiet 2>&1 | tail -n 9 | tee -a "$OUT/summary.txt"

log "4. one agent per GPU over a small sweep"
ID=$(timeout 60 "${SC[@]}" sweep create sweeps/smoke.yaml 2>/dev/null | tail -n 1)
timeout 120 "${SC[@]}" sweep agents "$ID" --devices-per-run 1 --wandb off 2>&1 | tail -n $((NGPU + 2)) | tee -a "$OUT/summary.txt"
"${SC[@]}" sweep status "$ID" 2>&1 | tee -a "$OUT/summary.txt"

log "5. packing and steps per call on the GPU (bfloat16, batch 16 x seq 256)"
timeout 150 "${SC[@]}" bench --d-model 64 128 256 --batch-size 16 --seq-len 256 --steps 64 --dtype bfloat16 \
  --steps-per-call 1 --pack 8 2>&1 | tee -a "$OUT/summary.txt"
timeout 150 "${SC[@]}" bench --d-model 64 128 256 --batch-size 16 --seq-len 256 --steps 64 --dtype bfloat16 \
  --pack 8 2>&1 | tee -a "$OUT/summary.txt"

log "6. startup: first step of a fresh process, compilation cache cold then warm"
timeout 120 "$PY" benchmarks/startup.py --d-model 64 --layers 1 --batch 16 --seq 256 2>&1 | tee -a "$OUT/summary.txt"
