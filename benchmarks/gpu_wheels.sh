#!/usr/bin/env bash
# Download, on a machine with internet, the wheels benchmarks/gpu.sh installs on a GPU machine that
# has Python 3.12, torch, torchvision, pandas, seaborn, typer, lightning and timm but no network:
# this suite's other runtime packages and the optional peer, anomalib, with what it needs beyond those.
#
#     bash benchmarks/gpu_wheels.sh [folder (default wheels/)] [python version (default 3.12)]
#
# The folder is ignored by git; hand it to the GPU machine beside the checkout (the device tool's
# `carry`). Versions are pinned so that one folder holds exactly one version of each package.
set -euo pipefail
folder=${1:-wheels}
python_version=${2:-3.12}
packages=(
  monai==1.6.1 pydicom==3.0.2 nibabel==5.4.2
  anomalib==2.7.0 freia==0.2 kornia==0.9.0 kornia-rs==0.2.0 jsonargparse==4.46.0 omegaconf==2.4.0
  docstring-parser==0.18.0 rich-argparse==1.8.0 imagecodecs==2026.3.6 platformdirs typeshed-client==2.15.0
)
mkdir -p "$folder"
for package in "${packages[@]}"; do
  # a binary wheel for the GPU machine's Python, or (source-only, pure-Python packages such as FrEIA) one built here
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$folder" "$package" 2>/dev/null \
    || python3 -m pip wheel --quiet --no-deps -w "$folder" "$package"
done
ls -la "$folder"
du -sh "$folder"
