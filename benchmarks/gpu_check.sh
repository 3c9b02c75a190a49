#!/usr/bin/env bash
# One prepared run on a GPU machine (H100/H200, CUDA 13, CuPy, no Ray), under 8 minutes, results
# under $OUT. Prepare first, here: benchmarks/gpu_check_prepare.sh. Then, with the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".gpu_data"], timeout_s=540)
# It builds the CPU extension for that machine's Python, runs the gpu-marked tests (golden vectors
# on CUDA, blobs crossing CPU <-> GPU over the carried shared-data sets) and the throughput
# benchmark, and records the GPU's name and the ptxas report of the kernels as built there.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PILC_SHARED_DATA="$PWD/.gpu_data"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import cupy; print('cupy', cupy.__version__)"
  python3 setup.py -q build_ext --inplace 2>&1 | tail -3
} 2>&1 | tee "$OUT/machine.txt"
timeout 300 python3 -m pytest -q -p no:cacheprovider -m "gpu" tests/codec/gpu/test_gpu_path.py \
  2>&1 | tee "$OUT/gpu_tests.txt"
nvcc -arch=sm_90 -cubin -std=c++17 --fmad=false -Xptxas -v -Icodec/kernels \
  -o /tmp/pilc.cubin codec/kernels/pilc_cuda.cu > "$OUT/ptxas_sm90.txt" 2>&1
timeout 240 python3 benchmarks/gpu_throughput.py --out "$OUT" --sizes 16 64 256 \
  2>&1 | tail -n 200 > "$OUT/gpu_throughput.log"
ls -l "$OUT"
