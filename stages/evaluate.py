"""evaluate@D-M-S: K-means accuracy (Hungarian-matched, each image scored against its own label),
NMI and ARI of the test embeddings, the K-means accuracy's spread over K-means seeds, and
leave-one-out retrieval (precision@1, MAP@R, k-NN accuracy), written to `metrics/D/M/seedS.json`."""

from __future__ import annotations

import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import write_json
from stages.lib.errors import stage_main

log = logging.getLogger("stages.evaluate")


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("evaluate", __doc__.splitlines()[0])
    p.add_argument("--embeddings", type=Path, required=True, help="embeddings .npz from the embed stage")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON (metrics/<dataset>/<method>/seed<S>.json)")
    args = p.parse_args(argv)
    # imported only now, so that `--help` answers at once
    import numpy as np

    from stages.lib.arrays import load_npz
    from stages.lib.metrics import embedding_scores

    params = cli.params_of(args)
    data = load_npz(args.embeddings, ("embeddings", "labels"))
    labels = data["labels"]
    e = params.evaluate
    scores = embedding_scores(
        data["embeddings"], labels, n_init=e.kmeans_n_init, seed=e.kmeans_seed,
        kmeans_repeats=e.kmeans_repeats, knn_k=e.knn_k, distance=e.distance,
    )
    metrics = {
        **{k: round(v, 6) for k, v in scores.items()},
        "n_test": int(len(labels)),
        "n_classes": int(len(np.unique(labels))),
    }
    write_json(args.out, metrics)
    log.info(
        "K-means accuracy %.4f (std %.4f over %d seeds), NMI %.4f, ARI %.4f, P@1 %.4f, MAP@R %.4f, %d-NN %.4f -> %s",
        scores["kmeans_acc"], scores["kmeans_acc_std"], e.kmeans_repeats, scores["nmi"], scores["ari"],
        scores["precision_at_1"], scores["map_at_r"], e.knn_k, scores["knn_acc"], args.out,
    )


if __name__ == "__main__":
    main()
