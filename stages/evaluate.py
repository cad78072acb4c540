"""evaluate@D-M-S: how good the test embeddings are, with their uncertainty and their leaks.

K-means accuracy (Hungarian-matched, each image scored against its own label) with its 95%
bootstrap interval over test images, NMI, ARI, the spread over K-means initialisations,
leave-one-out retrieval (precision@1, MAP@R, k-NN accuracy), the same on L2-normalised embeddings
(`l2`), the run's `leak` counts, `triplet_pool`, `select` and, under `train.budget` steps or
images, the `budget` it used (steps and images; from training) and, under `split.classes: unseen`,
its `protocol` (training and test classes; absent: seen classes), written to
`metrics/D/M/seedS.json`; the per-image clustering to `data/predictions/D/M/seedS.csv`. On the
device of `train.device` (a GPU: the neighbour search and K-means there; the CPU when the GPU is
short of memory, saying so).

With `evaluate.labels: study` every label-based metric (K-means accuracy and its interval and
chance level, NMI, ARI, retrieval) is scored the study's way instead: each image of the test list,
in its order, takes the label of the first image of its batch of four
(`stages.lib.study_scoring.study_labels`; K-means still finds as many clusters as there are true
classes). The metrics file then says so (`"labels": "study"`) with `mislabelled`, how many test
labels differ from the true ones, and the predictions gain a `study_label` column (`label` stays
the true one; `correct` is against `study_label`). With the default (`true`) neither is written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from stages.lib import cli
from stages.lib.atomic import rounded
from stages.lib.errors import PipelineError, stage_main

log = logging.getLogger("stages.evaluate")

PREDICTION_COLUMNS = ["row", "path", "label", "cluster", "predicted", "correct", "cluster_l2", "predicted_l2",
                      "correct_l2"]


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("evaluate", __doc__.splitlines()[0])
    p.add_argument("--embeddings", type=Path, required=True, help="embeddings .npz from the embed stage")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON (metrics/<dataset>/<method>/seed<S>.json)")
    p.add_argument("--predictions", type=Path, required=True,
                   help="per-image clustering CSV (data/predictions/<dataset>/<method>/seed<S>.csv)")
    args = p.parse_args(argv)
    # imported only now, so that `--help` answers at once
    import numpy as np
    import pandas as pd
    import torch

    from stages.lib.arrays import load_npz
    from stages.lib.atomic import atomic_path, write_json
    from stages.lib.chance_fields import chance_fields
    from stages.lib.device import compute_device
    from stages.lib.metrics import evaluate_bytes, evaluate_embeddings
    from stages.lib.study_scoring import scoring_labels

    params = cli.params_of(args)
    data = load_npz(args.embeddings, ("embeddings", "labels", "paths", "rows", "run"))
    try:
        run = json.loads(str(data["run"]))
        leak, pool = run["leak"], run.get("triplet_pool")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PipelineError(f"{args.embeddings} has no readable run record ({exc}); re-run the embed stage") from None
    true_labels = data["labels"]
    protocol = run.get("protocol")  # split.classes: unseen: the test labels are the test half's classes
    if protocol is not None:
        classes = [str(c) for c in load_npz(args.embeddings, ("classes",))["classes"]]
        tested = sorted({classes[int(label)] for label in np.unique(true_labels)})
        if tested != sorted(protocol["test_classes"]):
            raise PipelineError(f"{args.embeddings} holds test images of other classes than its run's test classes; "
                                "re-run dvc repro")
    e = params.evaluate
    labels, mislabelled = scoring_labels(true_labels, e.labels)  # the true ones, or the study's (evaluate.labels)
    n_classes = int(len(np.unique(true_labels)))
    # Where training runs (`train.device`): the search and K-means on that GPU, or on the CPU when
    # it is the CPU or when the GPU has too little memory free (saying so).
    device = compute_device(params.train.device, evaluate_bytes(*data["embeddings"].shape))
    settings = dict(n_init=e.kmeans_n_init, seed=e.kmeans_seed, kmeans_repeats=e.kmeans_repeats, knn_k=e.knn_k,
                    distance=e.distance, bootstrap_resamples=e.bootstrap_resamples, bootstrap_seed=e.bootstrap_seed,
                    n_clusters=n_classes)
    try:
        scores, per_image = evaluate_embeddings(data["embeddings"], labels, device=device, **settings)
    except torch.cuda.OutOfMemoryError:  # memory taken by another process since the check
        log.warning("%s ran out of memory: computing on the CPU instead", device)
        torch.cuda.empty_cache()
        scores, per_image = evaluate_embeddings(data["embeddings"], labels, device=torch.device("cpu"), **settings)
    metrics = {
        **rounded(scores),
        "n_test": int(len(labels)),
        "n_classes": n_classes,
        "leak": {k: int(v) for k, v in leak.items()},
    }
    columns = PREDICTION_COLUMNS
    if e.labels == "study":  # the default writes neither, so its outputs stay as they were
        metrics.update(labels="study", mislabelled=mislabelled)
        columns = [*PREDICTION_COLUMNS[:3], "study_label", *PREDICTION_COLUMNS[3:]]
    chance = chance_fields(labels, per_image, seed=e.bootstrap_seed)  # K-means accuracy's chance level, per view
    metrics["kmeans_acc_chance"], metrics["l2"]["kmeans_acc_chance"] = chance["raw"], chance["l2"]
    if pool is not None:
        metrics["triplet_pool"] = pool
    if protocol is not None:  # absent: seen classes (the study's protocol)
        metrics["protocol"] = {k: protocol[k] for k in ("classes", "halves", "seed", "train_classes", "test_classes")}
    if run.get("select") is not None:  # the rule that kept the epoch (a method that trains)
        metrics["select"] = run["select"]
    if "budget" in run:  # train.budget steps or images: what this run used
        metrics["budget"] = run["budget"]
    table = pd.DataFrame({"row": data["rows"], "path": data["paths"], "label": true_labels, "study_label": labels,
                          **per_image})
    for column in ("correct", "correct_l2"):
        table[column] = table[column].astype(int)
    with atomic_path(args.predictions) as tmp:
        table[columns].to_csv(tmp, index=False, lineterminator="\n")
    write_json(args.out, metrics)
    lo, hi = scores["kmeans_acc_ci95"]
    log.info(
        "K-means accuracy %.4f (95%% CI %.4f-%.4f; L2-normalised %.4f), NMI %.4f, ARI %.4f, P@1 %.4f, MAP@R %.4f, "
        "%d-NN %.4f -> %s", scores["kmeans_acc"], lo, hi, scores["l2"]["kmeans_acc"], scores["nmi"], scores["ari"],
        scores["precision_at_1"], scores["map_at_r"], e.knn_k, scores["knn_acc"], args.out,
    )
    if e.labels == "study":
        log.info("scored the study's way (evaluate.labels: study): %d of %d test labels differ from the true ones",
                 mislabelled, len(labels))


if __name__ == "__main__":
    main()
