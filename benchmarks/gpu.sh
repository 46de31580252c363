#!/usr/bin/env bash
# The whole GPU measurement, in two parts of about 8.5 and 5 minutes on one H100 (part a took 7.5 min
# on 2026-11-27 with precision cut short), on a machine that
# has Python, torch, torchvision, pandas, seaborn and typer but no network and none of this suite's
# other packages: they are put on PYTHONPATH from a folder of wheels made beforehand by
# benchmarks/gpu_wheels.sh (on a machine with internet).
#
#     PART=a bash benchmarks/gpu.sh [wheels folder (default wheels/)] [results folder (default $OUT or benchmarks/results)]
#     PART=b bash benchmarks/gpu.sh ...          (PART=all, the default, runs both)
#
# Part a (what users run, first):
#   1. bench: `medrecontrast bench` end to end, paper profile, on two built-in tasks, every method,
#      one seed, 50 iterations, random WRN50-2 weights passed as --weights (no network) -> report;
#   2. precision.py: bf16 against fp32 anomaly maps, image scores and AUROC on the same weights;
#   3. throughput.py: ReContrast, RD4AD, PatchCore on wide_resnet50_2 at 256 px, batch 16, in fp32
#      (the official code's regime), bf16 + channels_last and bf16 + torch.compile; FLOPs and the
#      share of the measured bf16 matmul peak.
# Part b:
#   4. patchcore_scaling.py: 1k, 5k and 26k (OCT2017-sized) training images at 224 px within a
#      16 GiB host budget;
#   5. peers.py: the same PatchCore and RD4AD workloads through anomalib on the same GPU.
# Each step has its own time limit, so that one slow step cannot cost the others. Every table is
# printed and written as CSV into the results folder, with a log of everything; the bench step's
# report and results (no checkpoints) are packed into gpu_bench.tgz there.
set -uo pipefail
wheels=${1:-wheels}
results=${2:-${OUT:-benchmarks/results}}
part=${PART:-all}
mkdir -p "$results"
results=$(cd "$results" && pwd)
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
if [ "${SMOKE:-0}" != 1 ] && ! python3 -c "import monai" 2>/dev/null; then
  # no resolver: the GPU image's torch (whatever its version) and the rest stay as they are
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site "$wheels"/*.whl 2>&1 | tail -3 | tee -a "$log"
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch, medrecontrast, monai; print('torch', torch.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$log"

if [ "${SMOKE:-0}" = 1 ]; then  # the same steps on tiny inputs: checks the script on any machine (tests/test_benchmarks.py)
  backbone=resnet18
  bench_options=$'backbone = "resnet18"\nimage_size = 64\ncrop_size = 64\niters = 2\nbatch_size = 4'
  bench_tasks='"synth-oct"'
  precision=(--backbone resnet18 --size 64 --iters 2 --batch 4 --train-images 8 --test-images 8)
  throughput=(--backbones resnet18 --size 64 --batch 2 --steps 1 --warmup 1 --fit-images 4 --test-images 2 --peak-size 256)
  scaling=(--images 4 8 --size 64 --backbone resnet18 --embed-dim 64 --distinct 4 --test-images 4 --batch 4)
  peers=(--backbone resnet18 --size 64 --train-images 8 --test-images 4 --rd-size 64 --rd-iters 2 --warmup 1 --batch 4)
else
  backbone=wide_resnet50_2
  bench_options='iters = 50'
  bench_tasks='"synth-fundus", "synth-oct"'
  precision=(--backbone wide_resnet50_2 --size 256 --iters 100 --batch 16 --train-images 256 --test-images 128)
  throughput=(--backbones wide_resnet50_2 --size 256 --batch 16 --steps 10 --warmup 3 --fit-images 256 --test-images 128 --compile)
  scaling=(--images 1000 5000 26000 --size 224 --backbone wide_resnet50_2 --coreset 0.01 --budget-gb 16 --distinct 500 --batch 64 --workers 4)
  peers=(--backbone wide_resnet50_2 --size 224 --train-images 500 --test-images 100 --coreset 0.1 --rd-size 256 --rd-iters 40 --batch 16)
fi

bench() {  # the main job on random backbone weights handed over as a file, as a user without network would
  local work
  work=$(mktemp -d)
  python3 -c "import sys, torch, torchvision; torch.save(getattr(torchvision.models, sys.argv[1])().state_dict(), sys.argv[2])" \
    "$backbone" "$work/weights.pt" || return 1
  printf 'name = "gpu-paper"\ntasks = [%s]\nseeds = [0]\nprofile = "paper"\n[options]\n%s\n' "$bench_tasks" "$bench_options" >"$work/sweep.toml"
  python3 -m medrecontrast bench --config "$work/sweep.toml" --weights "$work/weights.pt" --out "$work/runs" --report "$work/report"
  local status=$?
  tar -czf "$results/gpu_bench.tgz" -C "$work" --exclude='*.pt' runs report sweep.toml
  rm -rf "$work"
  return $status
}

if [ "$part" != b ]; then
  export backbone bench_options bench_tasks results
  export -f bench  # timeout runs commands, not shell functions
  step 150 bench bash -c bench
  step 150 precision python3 benchmarks/precision.py "${precision[@]}" --results "$results"
  step 240 throughput python3 benchmarks/throughput.py "${throughput[@]}" --results "$results"
fi
if [ "$part" != a ]; then
  step 170 patchcore-scaling python3 benchmarks/patchcore_scaling.py "${scaling[@]}" --results "$results"
  step 100 peers python3 benchmarks/peers.py "${peers[@]}" --results "$results"
fi
echo "done $(date -u +%T)" | tee -a "$log"
