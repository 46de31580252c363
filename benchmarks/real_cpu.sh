#!/usr/bin/env bash
# The real-data benchmark of configs/real-cpu.toml on the shared real files (../shared/data), into
# runs/real-cpu and reports/real-cpu. The data root is a folder of links, because the shared sample of
# the brain-MRI set is named brain_mri_sample: chest_xray -> shared chest_xray, brain_mri -> brain_mri_sample.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${MEDRECONTRAST_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
[ -d "$shared/chest_xray" ] && ln -s "$shared/chest_xray" "$root/chest_xray"
[ -d "$shared/brain_mri_sample" ] && ln -s "$shared/brain_mri_sample" "$root/brain_mri"
tasks=()
[ -e "$root/chest_xray" ] && tasks+=(chest-xray)
[ -e "$root/brain_mri" ] && tasks+=(brain-mri)
if [ ${#tasks[@]} -eq 0 ]; then
  echo "no real data under $shared (see ../shared/data/README.md)" >&2
  exit 2
fi
time medrecontrast bench --config configs/real-cpu.toml --tasks "${tasks[@]}" --data-root "$root" \
  --out runs/real-cpu --report reports/real-cpu "$@"
