"""The pipeline's stages: one module per `dvc.yaml` stage, run as `python -m stages.<name>`.

Building blocks (datasets, models, losses, metrics, I/O) live in `stages.lib`.
"""

import os

# Large CPU tensors (>= 2 MB: batches, activations) on transparent huge pages, a PyTorch option
# read once when torch starts, so set here, before any stage imports it. A fresh 100 MB float
# batch otherwise costs ~25,000 page faults: with it the CPU data path runs ~2x faster
# (benchmarks/README.md). Linux only, ignored elsewhere; THP_MEM_ALLOC_ENABLE=0 turns it off.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# OpenBLAS (numpy's BLAS: K-means, and the evaluate stage's neighbour search on the CPU) keeps
# its threads spinning for 2^28 cycles (~0.1 s) after each call, by default; on a small machine
# they take the cores from the torch operations that follow (the search's top-k ran 1.7x slower
# after each product). 2^16 cycles, read once when OpenBLAS loads; K-means is no slower
# (docs/scaling.md).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")
