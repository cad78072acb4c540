#!/usr/bin/env bash
# Training and embedding throughput on one CUDA GPU, the study's way against ours (sized for about 5 minutes
# on an H100, torch.compile warm-up included; not yet run on a GPU). Needs PyTorch, timm, numpy; no network.
#   benchmarks/gpu.sh               # the full benchmark (fails with a clear message without CUDA)
#   benchmarks/gpu.sh --no-compile  # without the torch.compile rows (about 1 minute)
#   benchmarks/gpu.sh --dry-run     # the same code on the CPU, tiny model, a few seconds
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=${PYTHON:-python3}
fi
exec "$PY" -m benchmarks.gpu_bench "$@"
