#!/usr/bin/env bash
# The whole GPU measurement in one call (planned for under 8 minutes on one H100), on a machine that
# has Python, torch, torchvision, pandas, seaborn and typer but no network and none of this suite's
# other packages: they are installed from a folder of wheels made beforehand by
# benchmarks/gpu_wheels.sh (on a machine with internet).
#
#     bash benchmarks/gpu.sh [wheels folder (default wheels/)] [results folder (default $OUT or benchmarks/results)]
#
# Steps, each with its own time limit so that one slow step cannot cost the others:
#   1. install the suite (+ anomalib) from the wheels, offline;
#   2. throughput.py: ReContrast, RD4AD, PatchCore on wide_resnet50_2 at 256 px, batch 16, in fp32
#      (the official code's regime), bf16 + channels_last, and bf16 + torch.compile; FLOPs and the
#      fraction of the measured bf16 matmul peak;
#   3. patchcore_scaling.py: 1k, 5k and 26k (OCT2017-sized) training images at 224 px within a
#      16 GiB host budget;
#   4. peers.py: the same PatchCore and RD4AD workloads through anomalib on the same GPU.
# Every table is printed and written as CSV into the results folder, with a log of everything.
set -uo pipefail
wheels=${1:-wheels}
results=${2:-${OUT:-benchmarks/results}}
mkdir -p "$results"
log="$results/gpu.log"
export PYTHONUNBUFFERED=1
step() {  # step <seconds> <name> <command...>
  local limit=$1 name=$2
  shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%T)" | tee -a "$log"
  local began=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -E "Warning|warn\(|^\s*$|Selecting Coreset" | tee -a "$log"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - began)) s" | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 --version; } 2>&1 | tee "$log"
if [ "${SMOKE:-0}" != 1 ]; then
  step 120 install python3 -m pip install -q --no-index --find-links "$wheels" --no-build-isolation -e ".[bench-peers]"
  if ! python3 -c "import medrecontrast, monai, anomalib" 2>/dev/null; then
    # the resolver refused (e.g. a version it cannot see): put the wheels on the path without it
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
  fi
fi
python3 -c "import torch, medrecontrast, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$log"

if [ "${SMOKE:-0}" = 1 ]; then  # no install, the same steps on tiny inputs: checks the script on any machine (tests/test_benchmarks.py)
  throughput=(--backbones resnet18 --size 64 --batch 2 --steps 1 --warmup 1 --fit-images 4 --test-images 2 --peak-size 256)
  scaling=(--images 4 8 --size 64 --backbone resnet18 --embed-dim 64 --distinct 4 --test-images 4 --batch 4)
  peers=(--backbone resnet18 --size 64 --train-images 8 --test-images 4 --rd-size 64 --rd-iters 2 --warmup 1 --batch 4)
else
  throughput=(--backbones wide_resnet50_2 --size 256 --batch 16 --steps 10 --warmup 3 --fit-images 256 --test-images 128 --compile)
  scaling=(--images 1000 5000 26000 --size 224 --backbone wide_resnet50_2 --coreset 0.01 --budget-gb 16 --distinct 500 --batch 64 --workers 4)
  peers=(--backbone wide_resnet50_2 --size 224 --train-images 500 --test-images 100 --coreset 0.1 --rd-size 256 --rd-iters 40 --batch 16)
fi
step 240 throughput python3 benchmarks/throughput.py "${throughput[@]}" --results "$results"
step 180 patchcore-scaling python3 benchmarks/patchcore_scaling.py "${scaling[@]}" --results "$results"
step 120 peers python3 benchmarks/peers.py "${peers[@]}" --results "$results"
echo "done $(date -u +%T)" | tee -a "$log"
