#!/usr/bin/env bash
# On CUDA GPUs: training and embedding throughput, the study's way against ours (sized for about 5 minutes on
# an H100, torch.compile warm-up included); DDP over every visible GPU ("one GPU: skipped" where there is one);
# the evaluate stage at 100,000 and 1,000,000 x 768 points (the target: 1,000,000 under 10 minutes on one
# H100-class machine). Not yet run on a GPU (none has been available to this project). Needs PyTorch, timm,
# numpy (the evaluate rows also scikit-learn and SciPy); no network.
#   benchmarks/gpu.sh               # the full benchmark (fails with a clear message without CUDA)
#   benchmarks/gpu.sh --no-compile  # without the torch.compile rows
#   benchmarks/gpu.sh --no-evaluate # without the evaluate rows
#   benchmarks/gpu.sh --dry-run     # the same code on the CPU, tiny model and sizes, two gloo processes for DDP
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=${PYTHON:-python3}
fi
exec "$PY" -m benchmarks.gpu_bench "$@"
