"""The chance levels a metrics file carries beside K-means accuracy: for each view of
the embeddings (raw, L2-normalised), `stages.lib.chance.chance_level` of that view's fitted
clustering on that test set, seeded with `evaluate.bootstrap_seed`.

The evaluate stage writes them as `kmeans_acc_chance` (raw, at the top of metrics/D/M/seedS.json)
and `l2.kmeans_acc_chance`: `{"mean", "p95", "permutations", "seed"}`. The report shows them beside
each accuracy and makes no "better than" claim on an accuracy at or below its `p95`.
"""

from __future__ import annotations

import numpy as np

from stages.lib.atomic import rounded
from stages.lib.chance import PERMUTATIONS, chance_level

# per-image column of each view's K-means cluster (metrics.evaluate_embeddings' per_image)
CLUSTER_COLUMNS = {"raw": "cluster", "l2": "cluster_l2"}


def chance_fields(labels: np.ndarray, per_image: dict[str, np.ndarray], *, seed: int,
                  permutations: int = PERMUTATIONS) -> dict[str, dict]:
    """Per view ("raw", "l2") the chance level of its clustering (`per_image["cluster"]`,
    `per_image["cluster_l2"]`) against `labels`, rounded as the metrics file writes numbers."""
    return {view: rounded(chance_level(labels, per_image[column], permutations=permutations, seed=seed))
            for view, column in CLUSTER_COLUMNS.items()}
