#!/usr/bin/env bash
# The GPU check a lent accelerator session runs in one call (one H200, under 10 minutes by default).
# Default parts (issue 22), in this order, each given what is left of BUDGET_S (default 540 s) and
# skipping what would start after it:
#   attention  3 seeds x {xla, cudnn} of d128-L2 in bf16 (244 steps x 32 x 256 each): each kernel's eval
#              loss against the seeds' spread (cuDNN ended 1.5% above XLA at one seed on 2026-11-29);
#   scale      compile seconds, step time and MFU of bf16 steps at ~125M, ~350M, ~760M and ~1.3B (vocab
#              32k, seq 2048, 256 x 2048 = 524k tokens per step through microbatches; 1 + 2 steps each).
#              Goals: MFU >= 25% at 125M and >= 40% from 350M, compile <= 60 s at 1.3B;
#   remat      XLA's compiled temporary memory and the step time of ~350M (batch 16 x 2048) under remat
#              none / dots / full (through the remat= config key when it exists).
#   (tests/gpu/scale_check.py does the work; LADDER_ATTN=cudnn|xla picks scale's and remat's kernel,
#   default attention=auto as runs resolve it.)
# PARTS=all adds the checks of 2026-11-29 (about 10 minutes more; README Scale-out has their figures):
#   1. parity: the same tiny run in float32 on CPU and on the GPU in bf16, float32 and bf16 with cuDNN;
#   2. scaling bench in bfloat16 at ~26M and ~85M parameters (batch 32 x seq 1024);
#   3. one run sharded over every visible GPU (mesh=fsdp:N) against the same run on one GPU;
#   4. a sweep run by `scaling sweep agents` with one agent per GPU;
#   5. packing and several steps per call at the small shapes a scaling study is made of;
#   6. startup: a fresh process's first step with JAX's compilation cache cold and then warm.
# Usage: PY=/path/to/python-with-jax[cuda] bash tests/gpu/check.sh [--dry]
#   The summary is $OUT/DATE-gpu-check.txt (OUT defaults to ./gpu-check) and, on a GPU, a copy in
#   benchmarks/results/. --dry (or GPU_CHECK_DRY=1): the default parts on tiny shapes on any platform, CPU
#   included (cuDNN's arm becomes attention=auto), to test this script where no GPU is lent.
# It needs a Python whose jax sees the GPU; nothing is downloaded (device machines have no network).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
OUT=${OUT:-gpu-check}
RUNS=${RUNS:-$OUT/runs}   # run homes hold many files: keep them out of a folder that is copied back whole
DRY=""
if [ "${1:-}" = "--dry" ] || [ -n "${GPU_CHECK_DRY:-}" ]; then DRY=--dry; fi
PARTS=${PARTS:-attention scale remat}
[ "$PARTS" = all ] && PARTS="attention scale remat parity bench mesh agents pack startup"
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-540} ))
SUMMARY="$OUT/$(date -u +%F)-gpu-check${DRY:+-dry}.txt"
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled XLA_PYTHON_CLIENT_PREALLOCATE=false
log() { echo "== $*" | tee -a "$SUMMARY"; }
want() { case " $PARTS " in *" $1 "*) return 0;; *) return 1;; esac; }
left() { echo $(( DEADLINE - $(date +%s) )); }
if [ -z "$DRY" ] && ! "$PY" -c 'import jax, sys; sys.exit(0 if jax.devices()[0].platform == "gpu" else 1)' 2>/dev/null; then
  echo "no GPU visible to $PY's jax: nothing to check (--dry runs the check's code on tiny shapes)" | tee "$SUMMARY"; exit 1
fi
NGPU=$("$PY" -c 'import jax; print(len(jax.devices()))')
"$PY" -c 'import jax; print(jax.__version__, jax.devices())' | tee -a "$SUMMARY"
scale_part() {  # tests/gpu/scale_check.py PART, inside what is left of the budget
  local secs; secs=$(left)
  if [ "$secs" -lt 20 ]; then log "$1: skipped, the check's time is spent"; return; fi
  timeout "$secs" "$PY" tests/gpu/scale_check.py "$1" --deadline "$DEADLINE" --home "$RUNS" $DRY 2>&1 \
    | grep -v -e '^[A-Za-z0-9.-]*: d[0-9]*-L[0-9]*-H[0-9]* N=' -e '^WARNING' -e '^I0000' | tee -a "$SUMMARY"
  [ "${PIPESTATUS[0]}" = 124 ] && log "$1: stopped at the time limit"
}
want attention && { log "attention: kernel bias against seed noise"; scale_part attention; }
want scale && { log "scale: compile seconds and MFU from ~125M to ~1.3B"; scale_part scale; }
want remat && { log "remat: compiled memory per policy"; scale_part remat; }

SC=("$PY" -m scaling.cli --home "$RUNS")
TINY=(d_model=128 seq_len=256 batch_size=32 tokens=2e6 eval_tokens=32768 n_evals=2 wandb=off)

if want parity; then
log "1. parity: CPU float32 against GPU bfloat16"
JAX_PLATFORMS=cpu timeout 300 "${SC[@]}" train "${TINY[@]}" run_id=parity-cpu dtype=float32 --quiet 2>&1 | tail -n 9 | tee -a "$SUMMARY"
for v in "gpu dtype=bfloat16" "gpu32 dtype=float32" "cudnn dtype=bfloat16 attention=cudnn"; do set -- $v
  timeout 120 "${SC[@]}" train "${TINY[@]}" run_id=parity-$1 $2 ${3:-} devices=0 --quiet 2>&1 | tail -n 9 | tee -a "$SUMMARY"
done
# 244 steps of a small model amplify rounding: on an H200 (2026-11-29) GPU float32 (TF32 matmuls) ended 0.9%
# from CPU float32 and bfloat16 1.2%; a wrong mask or scale moves the loss by far more than 2%.
"$PY" - "$RUNS" <<'PYEOF' | tee -a "$SUMMARY"
import json, sys
loss = {d: json.load(open(f"{sys.argv[1]}/parity-{d}/summary.json"))["eval_loss"] for d in ("cpu", "gpu", "gpu32", "cudnn")}
for d in ("gpu", "gpu32", "cudnn"):
    rel = abs(loss[d] - loss["cpu"]) / loss["cpu"]
    print(f"parity: cpu {loss['cpu']:.5f} {d} {loss[d]:.5f} relative {rel:.4%} -> {'OK' if rel < 0.02 else 'FAIL'}")
PYEOF
fi

if want bench; then
log "2. bench bfloat16 (MFU against the stated peak)"
timeout 240 "${SC[@]}" bench --d-model 512 768 --batch-size 32 --seq-len 1024 --steps 20 --dtype bfloat16 2>&1 | tee -a "$SUMMARY"
fi

if want mesh; then
log "3. one run over all $NGPU GPUs (fsdp) against one GPU"
RUN=(d_model=512 seq_len=512 batch_size=$((8 * NGPU)) tokens=4e6 eval_tokens=65536 n_evals=2 wandb=off)
timeout 150 "${SC[@]}" train "${RUN[@]}" run_id=one devices=0 --quiet 2>&1 | tail -n 9 | tee -a "$SUMMARY"
timeout 150 "${SC[@]}" train "${RUN[@]}" run_id=all mesh=fsdp:$NGPU --quiet 2>&1 | tail -n 9 | tee -a "$SUMMARY"
fi

if want agents; then
log "4. one agent per GPU over a small sweep"
ID=$(timeout 60 "${SC[@]}" sweep create sweeps/smoke.yaml 2>/dev/null | tail -n 1)
timeout 120 "${SC[@]}" sweep agents "$ID" --devices-per-run 1 --wandb off 2>&1 | tail -n $((NGPU + 2)) | tee -a "$SUMMARY"
"${SC[@]}" sweep status "$ID" 2>&1 | tee -a "$SUMMARY"
fi

if want pack; then
log "5. packing and steps per call on the GPU (bfloat16, batch 16 x seq 256)"
timeout 150 "${SC[@]}" bench --d-model 64 128 256 --batch-size 16 --seq-len 256 --steps 64 --dtype bfloat16 \
  --steps-per-call 1 --pack 8 2>&1 | tee -a "$SUMMARY"
timeout 150 "${SC[@]}" bench --d-model 64 128 256 --batch-size 16 --seq-len 256 --steps 64 --dtype bfloat16 \
  --pack 8 2>&1 | tee -a "$SUMMARY"
fi

if want startup; then
log "6. startup: first step of a fresh process, compilation cache cold then warm"
timeout 120 "$PY" benchmarks/startup.py --d-model 64 --layers 1 --batch 16 --seq 256 2>&1 | tee -a "$SUMMARY"
fi

if [ -z "$DRY" ]; then cp "$SUMMARY" benchmarks/results/ 2>/dev/null; fi
echo "summary: $SUMMARY"
