"""Equal tuning: what the `tune` stage searches, the params a trial trains with, and the tuned file
the train stage reads (`data/tuned/<dataset>/<method>.json`).

Each method declares its search space (`Method.search_space`: the learning rate and weight decay
for every method that trains, plus its margin, temperature or images per class), keyed by the param
each value replaces (`train.lr`, `triplet.margin`, ...). The tuned file holds the values to train
with: the given ones (params.yaml) with `tune.trials: 0`, else the best trial's, with the search's
record (every trial's values and score, the best and worst score).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from stages.lib.errors import PipelineError
from stages.lib.methods import METHODS


def space_of(params: Any, method: str) -> dict:
    """The search space of `method` under `params` (`Method.search_space`)."""
    return METHODS.get(method).search_space(params.method.get(method), params.train)


def given_values(params: Any, method: str) -> dict[str, float | int]:
    """The values params.yaml gives for each key of `method`'s search space."""
    values = {}
    for key in space_of(params, method):
        section, name = key.split(".", 1)
        values[key] = getattr(params.train if section == "train" else params.method_params(section), name)
    return values


def apply_values(params: Any, method: str, values: dict[str, float | int]) -> tuple[Any, Any]:
    """(train params, the method's section) with `values` in place of the given ones. A learning rate
    other than the given one brings `train.eta_min` along (the same ratio to the learning rate)."""
    train, section = params.train, params.method.get(method)
    changes: dict[str, dict] = {"train": {}, method: {}}
    for key, value in values.items():
        where, name = key.split(".", 1)
        if where not in changes:
            raise PipelineError(f"tuned value {key} belongs to neither train nor {method}; re-run the tune stage")
        changes[where][name] = value
    lr = changes["train"].get("lr")
    if lr is not None and lr != train.lr:
        changes["train"]["eta_min"] = train.eta_min * lr / train.lr
    train = dataclasses.replace(train, **changes["train"])
    if changes[method]:
        section = dataclasses.replace(section, **changes[method])
    return train, section


def trial_train_params(train: Any, tune: Any) -> Any:
    """`train` for one trial: `tune.epochs` epochs with the warm-up and the cosine period shrunk in
    proportion, one process, the epoch (and so the trial's score) chosen by `tune.metric`."""
    scale = tune.epochs / train.epochs
    return dataclasses.replace(
        train, epochs=tune.epochs, warmup_epochs=int(round(train.warmup_epochs * scale)),
        cosine_t_max=max(1, int(round(train.cosine_t_max * scale))), select=tune.metric, processes=1,
        resume_every_s=float("inf"),
    )


# Optuna's MedianPruner counts steps from 0 and may stop a trial at step == n_warmup_steps; a trial
# reports its epochs from 1, so 2 lets every trial finish two epochs before it can be stopped.
FIRST_PRUNED_EPOCH = 2
STARTUP_TRIALS = 2  # trials that always run to the end: the median needs them


def pruner(prune: bool) -> Any:
    """`tune.prune`'s pruner: the median rule from the 3rd trial and the 2nd epoch, or none."""
    import optuna

    if not prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=FIRST_PRUNED_EPOCH)


def read_tuned(path: Path, params: Any, method: str) -> dict[str, float | int]:
    """The values to train `method` with, from its tuned file, checked against its search space."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the tune stage first (dvc repro)") from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); re-run the tune stage") from None
    values = record.get("values") if isinstance(record, dict) else None
    expected = set(space_of(params, method))
    if not isinstance(values, dict) or set(values) != expected or record.get("method") != method:
        raise PipelineError(f"{path} does not hold the tuned values of {method} ({', '.join(sorted(expected))}); "
                            "re-run the tune stage (dvc repro)")
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise PipelineError(f"{path}: {key} is {value!r}, not a number; re-run the tune stage")
    return values
