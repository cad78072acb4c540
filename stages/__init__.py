"""The pipeline's stages: one module per `dvc.yaml` stage, run as `python -m stages.<name>`.

Building blocks (datasets, models, losses, metrics, I/O) live in `stages.lib`.
"""

import os

# Large CPU tensors (>= 2 MB: batches, activations) on transparent huge pages, a PyTorch option
# read once when torch starts, so set here, before any stage imports it. A fresh 100 MB float
# batch otherwise costs ~25,000 page faults: with it the CPU data path runs ~2x faster
# (benchmarks/README.md). Linux only, ignored elsewhere; THP_MEM_ALLOC_ENABLE=0 turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
