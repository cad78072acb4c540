"""umap@D-M-S: a 2-D UMAP picture of the test embeddings, coloured by class, each class named where
it lies, titled with the dataset, method, shots and K-means accuracy (`plots/umap/D_M_seedS.png`)."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

from stages.lib import cli
from stages.lib.errors import PipelineError, stage_main
from stages.lib.params import UmapParams

log = logging.getLogger("stages.umap")


def project(embeddings: np.ndarray, p: UmapParams) -> np.ndarray:
    """UMAP to 2-D, seeded, on the exact nearest-neighbour graph computed by scikit-learn.

    Handing umap-learn a precomputed graph skips both of its own neighbour searches: the
    pairwise path it takes below 4,096 points and pynndescent above, whose just-in-time
    compilation alone costs tens of seconds in every new process. scikit-learn's search is
    exact and takes seconds for 10,000 x 768 on two cores (`make bench` measures it).
    """
    import umap  # umap-learn; imported here because it is slow to import
    from sklearn.neighbors import NearestNeighbors

    _cache_compilations()

    x = np.asarray(embeddings, dtype=np.float32)
    k = min(p.n_neighbors, len(x) - 1)
    distances, indices = NearestNeighbors(n_neighbors=k, metric=p.metric).fit(x).kneighbors(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*overridden.*")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        reducer = umap.UMAP(
            n_neighbors=k,
            min_dist=p.min_dist,
            metric=p.metric,
            random_state=p.seed,
            precomputed_knn=(indices, distances.astype(np.float32), None),
        )
        return reducer.fit_transform(x)


# The numba releases whose private `Dispatcher._cache` (a `NullCache` until `enable_caching()`)
# `_cache_compilations` was checked against: 0.57 is the first for Python 3.11, 0.68 the newest
# checked (0.68.1). Another numba runs without the cache (slower, same pictures) until someone
# checks numba/core/dispatcher.py again and moves the bound.
NUMBA_CHECKED = ((0, 57), (0, 68))


def numba_checked(version: str) -> bool:
    """Whether numba `version` ("0.68.1", "0.69.0rc1") is within NUMBA_CHECKED."""
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = NUMBA_CHECKED
    return low <= major_minor <= high


def _cache_compilations() -> bool:
    """Keep umap-learn's just-in-time compiled functions on disk, as numba does for the functions
    marked `cache=True` (pynndescent's are; umap-learn's are not). Returns whether it did.

    Without it every umap stage compiles them again: 8 of the 11 s one stage takes on two cores
    for 359 points. With it the first stage after installing compiles and writes numba's cache
    (`__pycache__` beside umap-learn's modules, or numba's user-wide cache where that is read-only),
    and the next load it in under a second. Numba keys the cache on the source file and the CPU,
    so a new umap-learn compiles again. The compiled code is the same either way: the pictures are
    byte-identical with and without it.

    It reads numba's private state (`_cache`), so it does so only on a numba it was checked
    against (`NUMBA_CHECKED`) and where that state looks as expected; anywhere else it leaves
    numba alone and the stage compiles as it would without this.
    """
    import numba

    if not numba_checked(numba.__version__):
        log.info("numba %s is not one the compile cache was checked with; compiling without it", numba.__version__)
        return False
    try:
        from numba.core.caching import NullCache
        from numba.core.registry import CPUDispatcher
    except ImportError:
        return False
    import umap.layouts
    import umap.spectral
    import umap.umap_
    import umap.utils

    dispatchers = [f for module in (umap.umap_, umap.layouts, umap.spectral, umap.utils)
                   for f in vars(module).values() if isinstance(f, CPUDispatcher)]
    if not all(hasattr(f, "_cache") and hasattr(f, "enable_caching") for f in dispatchers):
        return False
    for function in dispatchers:
        if isinstance(function._cache, NullCache):
            function.enable_caching()
    return True


def warm_up() -> None:
    """Compile umap-learn's and pynndescent's just-in-time code into numba's cache once, at install
    (`make setup` runs this): about 20 s on two cores that the first umap stage would otherwise pay."""
    rng = np.random.default_rng(0)
    project(rng.normal(size=(300, 64)).astype(np.float32), UmapParams(n_neighbors=15, min_dist=0.1,
                                                                       metric="euclidean", seed=0))


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("umap", __doc__.splitlines()[0])
    p.add_argument("dataset", help="dataset name (for the title)")
    p.add_argument("method", help="method name (for the title)")
    p.add_argument("--seed", type=int, default=None, help="training seed (for the title)")
    p.add_argument("--embeddings", type=Path, required=True, help="embeddings .npz from the embed stage")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON from the evaluate stage")
    p.add_argument("--out", type=Path, required=True, help="output PNG (plots/umap/<dataset>_<method>_seed<S>.png)")
    args = p.parse_args(argv)
    params = cli.params_of(args)
    from stages.lib.arrays import load_npz
    from stages.lib.plotting import method_label, save_figure, scatter_by_class

    data = load_npz(args.embeddings, ("embeddings", "labels", "classes"))
    try:
        scores = json.loads(args.metrics.read_text())
        accuracy, protocol = float(scores["kmeans_acc"]), scores.get("protocol")
    except FileNotFoundError:
        raise PipelineError(f"{args.metrics} not found; run the evaluate stage first (dvc repro)") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PipelineError(f"{args.metrics} is corrupt ({exc}); re-run the evaluate stage") from None
    if len(data["embeddings"]) < 4:
        raise PipelineError(f"{args.embeddings} has {len(data['embeddings'])} test images; UMAP needs at least 4")
    points = project(data["embeddings"], params.umap)
    shots = "all images" if params.shots == 0 else f"{params.shots} per class"
    if protocol:  # split.classes: unseen
        shots += f" · unseen classes ({len(protocol['test_classes'])} of {len(data['classes'])})"
    seed = "" if args.seed is None else f" · seed {args.seed}"
    method = method_label(args.method, params.model.pretrained)
    title = f"{args.dataset} · {method} · {shots}{seed} · K-means accuracy {accuracy:.1%}"
    fig = scatter_by_class(points, data["labels"], [str(c) for c in data["classes"]], title)
    save_figure(fig, args.out)
    log.info("UMAP of %d embeddings -> %s", len(points), args.out)


if __name__ == "__main__":
    main()
