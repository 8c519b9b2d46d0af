#!/usr/bin/env bash
# The committed CPU results, in one go (about 30 minutes on 2 idle cores).
# Usage: benchmarks/run_cpu.sh [SUFFIX]   (run from the repository root; SUFFIX tags the files)
set -euo pipefail
PY=${PYTHON:-python}
R=benchmarks/results
S=${1:-}
$PY -m benchmarks.train_throughput --preset=mnist_small --batch 32 64 --repeats 5 \
  --steps_per_rep 3 --profile=/tmp/jaxdiff_bench_profile --out=$R/train_throughput_cpu$S.json
$PY -m benchmarks.cpu_profile --preset=mnist_small --batch 32 --what=train \
  --out=$R/cpu_profile_train$S.json
$PY -m benchmarks.cpu_profile --preset=mnist_small --batch 16 --what=forward --no-torch \
  --out=$R/cpu_profile_forward$S.json
$PY -m benchmarks.sampling_throughput --preset=mnist_small --batch 16 --repeats 3 \
  --out=$R/sampling_throughput_cpu$S.json
$PY -m benchmarks.practices --preset=mnist_small --batch 32 --sample_batch 16 --repeats 5 \
  --out=$R/practices_cpu$S.json
rm -rf /tmp/jaxdiff_qnfe_smoke
$PY -m benchmarks.quality_vs_nfe --workdir=/tmp/jaxdiff_qnfe_smoke --preset=unet_8x8 \
  --train_steps=40 --batch=32 --log_every=20 --num_samples=256 --sample_batch=256 \
  --limit=5000 --classifier_steps=200 --settings ddim_10 ddim_20 heun_9 dpmpp_10 \
  --out=$R/quality_vs_nfe_cpu_smoke$S.json
$PY -m benchmarks.compile_cache --conditions=idle --out=$R/compile_cache_cpu$S.json
if $PY -c "import jax2onnx, onnxruntime" 2>/dev/null; then  # the export extra (docs/export.md)
  $PY -m benchmarks.onnx_throughput --model=mnist --twin=mnist_small --batch=16,64 --repeats=3 \
    --out=$R/onnx_throughput_cpu$S.json
else
  echo "onnx_throughput skipped: needs jax2onnx and onnxruntime (docs/export.md)"
fi
