"""pictures@D-M-S: two pictures of one run's test embeddings.

`plots/retrieval/D_M_seedS.png`: `pictures.queries` test images (drawn with `pictures.seed`, the
same ones for every method) and each one's `pictures.neighbours` nearest other test images
(`evaluate.distance`), framed green when of the query's class and red when not.
`plots/confusion/D_M_seedS.png`: each test image's class against the class its K-means cluster is
matched to (the evaluate stage's predictions; the study's K-means accuracy is the diagonal), class
names on both axes: every class, or under `split.classes: unseen` the test classes only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from stages.lib import cli
from stages.lib.errors import PipelineError, stage_main
from stages.lib.tables import read_csv

log = logging.getLogger("stages.pictures")


def nearest_neighbours(embeddings: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    """For each query index, the indices of its `k` nearest other rows (nearest first, ties by index)."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(embeddings, dtype=np.float32)
    k = min(k, len(x) - 1)
    _, found = NearestNeighbors(n_neighbors=k + 1, metric=metric, algorithm="brute").fit(x).kneighbors(x[queries])
    return np.stack([[j for j in row if j != q][:k] for q, row in zip(queries, found, strict=True)])


def read_predictions(path: Path, labels: np.ndarray) -> np.ndarray:
    """`predicted` of the evaluate stage's per-run predictions CSV, checked against the embeddings' labels."""
    table = read_csv(path, "evaluate")
    if not {"label", "predicted"} <= set(table.columns) or not np.array_equal(table["label"].to_numpy(), labels):
        raise PipelineError(f"{path} does not match the run's embeddings (label column); re-run the evaluate stage")
    return table["predicted"].to_numpy(dtype=np.int64)


def confusion_classes(
    labels: np.ndarray, predicted: np.ndarray, classes: list[str], test_classes: list[str] | None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The confusion matrix's classes and the labels and predictions as indices into them: every
    class as given (`test_classes` None: seen), or only `test_classes` (split.classes: unseen), in
    their order, -1 (unmatched) kept."""
    if test_classes is None:
        return labels, predicted, classes
    index = np.full(len(classes), -1, dtype=np.int64)
    index[[classes.index(name) for name in test_classes]] = np.arange(len(test_classes))
    shown = index[labels]
    if (shown < 0).any():
        raise PipelineError(f"a test image of class {classes[int(labels[shown < 0][0])]!r} is not of the run's test "
                            "classes; re-run dvc repro")
    return shown, np.where(predicted < 0, -1, index[np.maximum(predicted, 0)]), list(test_classes)


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("pictures", __doc__.splitlines()[0])
    p.add_argument("dataset", help="dataset name (for the titles)")
    p.add_argument("method", help="method name (for the titles)")
    p.add_argument("--seed", type=int, default=None, help="training seed (for the titles)")
    p.add_argument("--embeddings", type=Path, required=True, help="embeddings .npz from the embed stage")
    p.add_argument("--splits", type=Path, required=True, help="split tables (data/splits/<dataset>)")
    p.add_argument("--decoded", type=Path, required=True, help="decoded images (data/decoded/<dataset>.npy)")
    p.add_argument("--predictions", type=Path, required=True,
                   help="the evaluate stage's per-image predictions CSV (data/predictions/D/M/seedS.csv)")
    p.add_argument("--retrieval", type=Path, required=True, help="output PNG (plots/retrieval/D_M_seedS.png)")
    p.add_argument("--confusion", type=Path, required=True, help="output PNG (plots/confusion/D_M_seedS.png)")
    args = p.parse_args(argv)
    params = cli.params_of(args)

    from stages.lib.arrays import load_npz
    from stages.lib.decoded import open_decoded
    from stages.lib.plotting import confusion_matrix_figure, method_label, retrieval_grid, save_figure
    from stages.lib.splitdata import read_table, split_pixels

    data = load_npz(args.embeddings, ("embeddings", "labels", "paths", "classes", "run"))
    embeddings, labels, classes = data["embeddings"], data["labels"], [str(c) for c in data["classes"]]
    protocol = json.loads(str(data["run"])).get("protocol")  # split.classes: unseen: its training and test classes
    table = read_table(args.splits, "test")
    if table["path"].astype(str).tolist() != [str(x) for x in data["paths"]]:
        raise PipelineError(f"{args.embeddings} and {args.splits}/test.csv list other images; run dvc repro")
    if len(labels) < 2:
        raise PipelineError(f"{args.embeddings} has {len(labels)} test image(s); the pictures need at least 2")
    pixels = split_pixels(args.decoded, table, open_decoded(args.decoded).shape[1])

    shots = "all images" if params.shots == 0 else f"{params.shots} per class"
    if protocol:
        shots += f" · unseen classes ({len(protocol['test_classes'])} of {len(classes)})"
    seed = "" if args.seed is None else f" · seed {args.seed}"
    name = f"{args.dataset} · {method_label(args.method, params.model.pretrained)} · {shots}{seed}"

    pics = params.pictures
    rng = np.random.default_rng(pics.seed)
    queries = np.sort(rng.choice(len(labels), size=min(pics.queries, len(labels)), replace=False))
    queries = queries[np.argsort(labels[queries], kind="stable")]  # grouped by class, for reading
    found = nearest_neighbours(embeddings, queries, pics.neighbours, params.evaluate.distance)
    same = int((labels[found] == labels[queries][:, None]).sum())
    title = (f"{name}\nnearest test images ({params.evaluate.distance}): {same} of {found.size} "
             "of the query's class")
    save_figure(retrieval_grid(pixels[queries], labels[queries], pixels[found], labels[found], classes, title),
                args.retrieval)

    predicted = read_predictions(args.predictions, labels)
    shown = confusion_classes(labels, predicted, classes, protocol and protocol["test_classes"])
    save_figure(confusion_matrix_figure(*shown, name), args.confusion)
    log.info("retrieval picture -> %s, confusion matrix -> %s", args.retrieval, args.confusion)


if __name__ == "__main__":
    main()
