"""The pipeline's stages: one module per `dvc.yaml` stage, run as `python -m stages.<name>`.

Building blocks (datasets, models, losses, metrics, I/O) live in `stages.lib`.
"""
