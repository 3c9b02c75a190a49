#!/usr/bin/env bash
# Run here (not on the GPU machine) before benchmarks/gpu_check.sh: puts what that machine lacks
# into ignored folders the device call carries: .whl/ (imagecodecs for its Python 3.12, for the
# JPEG-XL peer) and .gpu_data/ (a subset of ../shared/data, which does not travel).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu_data/' .git/info/exclude 2>/dev/null || echo '/.gpu_data/' >> .git/info/exclude
mkdir -p .whl .gpu_data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl imagecodecs
DATA=../shared/data
for set in mcmaster18 clic_2images imagecompression_info/rgb8bit imagecompression_info/gray8bit \
           sintel_frames screenshots_gimp; do
  mkdir -p ".gpu_data/$set"
  # a few images per set, within the device call's 64 MiB working-tree limit
  find "$DATA/$set" -maxdepth 1 -name '*.png' | sort | head -n 4 | while read -r f; do
    if [ "$(stat -c %s "$f")" -lt 6000000 ]; then cp "$f" ".gpu_data/$set/"; fi
  done
done
du -sh .whl .gpu_data
