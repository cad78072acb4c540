"""tune@D-M: the same hyper-parameter search for method M on dataset D, written to `data/tuned/D/M.json`.

With `tune.trials: 0` (the default) nothing is searched: the file holds the values params.yaml
gives. Otherwise `tune.trials` trials of Optuna's TPE sampler (seeded with `tune.seed`) over the
method's declared search space (`Method.search_space`: learning rate and weight decay, plus the
method's margin, temperature or images per class), each trial training for `tune.epochs` on the
training split and scored by `tune.metric` on the validation images (its best epoch's score,
`stages.lib.validation`), a trial falling below the median of the earlier ones after an epoch
stopped early (`tune.prune`, Optuna's MedianPruner). The file holds the best trial's values, which
the train stage trains with, and every trial's score. Test images are never read: training draws
from the training split only (`triplet.pool: study` is searched with `split`), and scoring embeds
the validation images only.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from stages.lib import cli
from stages.lib.errors import PipelineError, stage_main

log = logging.getLogger("stages.tune")


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = cli.parser("tune", __doc__.splitlines()[0])
    p.add_argument("dataset", help="dataset name")
    p.add_argument("method", help="method name (one of params.yaml `methods`)")
    p.add_argument("--splits", type=Path, required=True, help="split tables (data/splits/<dataset>)")
    p.add_argument("--decoded", type=Path, required=True, help="decoded images (data/decoded/<dataset>.npy)")
    p.add_argument("--weights", type=Path, required=True, help="pretrained weights folder (models/pretrained)")
    p.add_argument("--out", type=Path, required=True, help="tuned values (data/tuned/<dataset>/<method>.json)")
    args = p.parse_args(argv)
    from stages.lib.atomic import write_json
    from stages.lib.runs import with_run_settings
    from stages.lib.tuning import given_values

    params = with_run_settings(cli.params_of(args), args.dataset, args.method)  # `runs`: as train will train
    given = given_values(params, args.method)
    record: dict[str, Any] = {"method": args.method, "trials": params.tune.trials, "values": given}
    if params.tune.trials and given:  # a method that trains, and a search asked for
        record = {**record, **search(args, params, given)}
    write_json(args.out, record)
    log.info("%s on %s: %s -> %s", args.method, args.dataset,
             ", ".join(f"{k} {v:.4g}" for k, v in record["values"].items()) or "nothing to tune", args.out)


def search(args, params, given: dict) -> dict:
    """Run the search; what the tuned file records beside the method and its number of trials."""
    import optuna
    import torch

    from stages.lib.device import configure_determinism, configure_tf32, pick_device
    from stages.lib.losses import training
    from stages.lib.methods import METHODS
    from stages.lib.models import build_backbone, embedding_size
    from stages.lib.splitdata import read_classes, read_protocol
    from stages.lib.trainer import fit
    from stages.lib.training_data import decoded_splits, training_tables, validation_scorer
    from stages.lib.tuning import apply_values, pruner, space_of, trial_train_params
    from stages.lib.validate import ParamError
    from stages.weights import weights_file

    tune = params.tune
    device = pick_device(params.train.device)
    configure_determinism(params.train.deterministic, device)
    configure_tf32(params.train.precision, device)
    space = space_of(params, args.method)
    protocol = read_protocol(args.splits)  # split.classes: unseen: the head has the training classes only
    n_classes = len(protocol["train_classes"]) if protocol else len(read_classes(args.splits))
    method_cls = METHODS.get(args.method)
    section = params.method.get(args.method)
    if getattr(section, "pool", None) == "study":  # never draw the test images, not even to tune
        section = dataclasses.replace(section, pool="split")
    tables, pool, _ = training_tables(args.splits, method_cls(section, n_classes, 0))
    assert pool is None
    data = decoded_splits(args.decoded, tables, None, params.model.image_size)
    scorer = validation_scorer(params, args.splits, args.decoded, device, metric=tune.metric)

    def objective(trial: optuna.Trial) -> float:
        values = {key: r.suggest(trial, key) for key, r in space.items()}
        train, method_params = apply_values(params, args.method, values)
        if getattr(method_params, "pool", None) == "study":
            method_params = dataclasses.replace(method_params, pool="split")
        try:
            train.check("train")
            method_params.check(args.method)
        except ParamError as exc:  # outside a method's rules: a failed trial, not a failed search
            raise optuna.TrialPruned(str(exc)) from None
        torch.manual_seed(tune.seed)
        backbone = build_backbone(params.model.name, weights_file(args.weights))
        method = training(args.method)(method_params, n_classes, embedding_size(backbone))

        def report(row: dict) -> None:
            trial.report(row["val_score"], row["epoch"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {row['epoch']}: {row['val_score']:.4f}")

        result = fit(method, backbone, data["train"], data["val"], trial_train_params(train, tune), seed=tune.seed,
                     device=device, scorer=scorer, on_epoch=report if tune.prune else None)
        log.info("trial %d: %s -> %s %.4f (epoch %d)", trial.number, _show(values), tune.metric,
                 result.best_score, result.best_epoch)
        return float(result.best_score)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=tune.seed),
                                pruner=pruner(tune.prune))
    study.optimize(objective, n_trials=tune.trials)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise PipelineError(f"no trial of {args.method} finished (all {tune.trials} were pruned or failed); "
                            "raise tune.trials or set tune.prune: false")
    best = max(done, key=lambda t: (t.value, -t.number))  # the first of equal scores
    return {
        "values": {key: best.params[key] for key in space},
        "given": given,
        "metric": tune.metric,
        "epochs": tune.epochs,
        "seed": tune.seed,
        "best": best.value,
        "worst": min(t.value for t in done),
        "best_trial": best.number,
        "search": [{"trial": t.number, "state": t.state.name.lower(), "score": t.value,
                    "last_epoch": max(t.intermediate_values, default=None), "values": t.params}
                   for t in study.trials],
    }


def _show(values: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items())


if __name__ == "__main__":
    main()
