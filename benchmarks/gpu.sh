#!/usr/bin/env bash
# On CUDA GPUs. `--quick`: the one call on a lent GPU (estimated 5 to 6.5 minutes on an H100, under the
# 7-minute target; not yet measured): training img/s of every method at the pipeline's defaults and with
# deterministic: false beside the study's way, embed at the stage's settings, a 2-epoch fit rerun and resumed
# (weights compared byte for byte), K-means and retrieval at 20,000 points GPU against CPU, evaluate at
# 1,000,000 x 768; each row written to $OUT (or --out DIR) as soon as measured (benchmarks/README.md).
# Without --quick, the longer full benchmark: the study's way against ours, torch.compile, DDP over every
# visible GPU, evaluate at 100,000 and 1,000,000. Not yet run on a GPU (none has been available to this
# project). Needs PyTorch, timm, numpy (the evaluate rows also scikit-learn and SciPy); no network.
#   benchmarks/gpu.sh --quick       # the one call on a lent GPU
#   benchmarks/gpu.sh               # the full benchmark (fails with a clear message without CUDA)
#   benchmarks/gpu.sh --no-compile  # without the torch.compile rows
#   benchmarks/gpu.sh --no-evaluate # without the evaluate rows
#   benchmarks/gpu.sh --dry-run     # the same code on the CPU, tiny model and sizes, two gloo processes for DDP
#   benchmarks/gpu.sh --dry-run --quick  # the quick plan's code on the CPU, tiny sizes
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=${PYTHON:-python3}
fi
exec "$PY" -m benchmarks.gpu_bench "$@"
