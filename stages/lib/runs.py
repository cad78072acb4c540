"""Per-run settings: `runs` in params.yaml, the study's values per dataset, method and shots.

The study trained each dataset x method x shots from its own config file, and those files do not
all agree (batch 32 for one classification run, 128 for another; validation batches of 4, 8 or
16). `train` and the method sections hold the general values; each entry of `runs` names the runs
it applies to (`dataset`, `method`, `shots`: an omitted one matches any) and `set`s training keys
over them: any `train` key of the recipe (TRAIN_KEYS) and, with `method` named, that method's own
keys. Entries apply in list order, so a later one wins. A run that no entry matches (the digits
demo, your own data) trains on the general values alone. Only the train stage reads `runs`.

`settings_for` gives the settings one run trains with; `parse_runs` and `check_runs` refuse an
unknown key, a name that is not a dataset or method, or a value its section's rule refuses, with
one line naming the entry (`runs[2].set.batch_size ...`). No torch here: the check stage uses it.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from stages.lib.schema import convert
from stages.lib.validate import MissingKey, ParamError, UnknownKey, key_name

MATCH_KEYS = ("dataset", "method", "shots")
ENTRY_KEYS = (*MATCH_KEYS, "set")
# train keys that describe the machine or the comparison, not a run's recipe: not settable per run
NOT_PER_RUN = ("device", "processes", "precision", "compile", "deterministic", "resume_every_s", "budget",
               "budget_amount")


@dataclass(frozen=True)
class RunSettings:
    """One entry of `runs`: which runs it applies to (None: any) and the keys it sets."""

    dataset: str | None
    method: str | None
    shots: int | None
    set: dict[str, Any]

    def matches(self, dataset: str, method: str, shots: int) -> bool:
        return all(want is None or want == have
                   for want, have in ((self.dataset, dataset), (self.method, method), (self.shots, shots)))

    def to_yaml(self) -> dict[str, Any]:
        """The entry as params.yaml writes it."""
        return {**{k: getattr(self, k) for k in MATCH_KEYS if getattr(self, k) is not None}, "set": dict(self.set)}


def train_keys(train_type: type) -> list[str]:
    """The `train` keys an entry may set: the recipe, not the machine."""
    return [f.name for f in dataclasses.fields(train_type) if f.name not in NOT_PER_RUN]


def parse_runs(raw: Any, train_type: type, datasets: list[str], methods: dict[str, type]) -> list[RunSettings]:
    """`runs` as parsed YAML (None or absent: []) to entries; ParamError naming the first bad key.

    `datasets`: the names an entry may match (registered and your own); `methods`: name -> params type."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ParamError("runs", "a list of {dataset, method, shots, set} entries", raw)
    train_hints = typing.get_type_hints(train_type)
    out = []
    for i, entry in enumerate(raw):
        where = f"runs[{i}]"
        if not isinstance(entry, dict):
            raise ParamError(where, "a mapping {dataset, method, shots, set}", entry)
        for key in entry:
            if key not in ENTRY_KEYS:
                raise UnknownKey(f"{where}.{key_name(key)}", list(ENTRY_KEYS))
        if "set" not in entry:
            raise MissingKey(f"{where}.set")
        dataset, method, shots = (entry.get(k) for k in MATCH_KEYS)
        # a name is a string: a list or a mapping given here is refused, not looked up (unhashable)
        if dataset is not None and (not isinstance(dataset, str) or dataset not in datasets):
            raise ParamError(f"{where}.dataset", f"one of: {', '.join(datasets)} (or omitted: any)", dataset)
        if method is not None and (not isinstance(method, str) or method not in methods):
            raise ParamError(f"{where}.method", f"one of: {', '.join(methods)} (or omitted: any)", method)
        if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 0):
            raise ParamError(f"{where}.shots", "an integer >= 0 (0 = every training image; or omitted: any)", shots)
        settings = entry["set"]
        if not isinstance(settings, dict) or not settings:
            raise ParamError(f"{where}.set", "a non-empty mapping of train keys (or the method's, with method named)",
                             settings)
        method_hints = typing.get_type_hints(methods[method]) if method is not None else {}
        accepted = [*train_keys(train_type), *[k for k in method_hints if k not in train_hints]]
        values = {}
        for key, value in settings.items():
            if key not in accepted:
                more = "" if method is not None else " (a method's keys need method named)"
                raise UnknownKey(f"{where}.set.{key_name(key)}", [*accepted[:-1], accepted[-1] + more])
            hint = train_hints[key] if key in train_hints else method_hints[key]
            values[key] = convert(value, hint, f"{where}.set.{key}")
        out.append(RunSettings(dataset, method, shots, values))
    return out


def apply(entries: list[RunSettings], train: Any, method_params: Any, dataset: str, method: str,
          shots: int) -> tuple[Any, Any]:
    """(train params, method params) of one run: the general ones with every matching entry's keys set."""
    train_set: dict[str, Any] = {}
    method_set: dict[str, Any] = {}
    train_names = {f.name for f in dataclasses.fields(train)}
    for entry in entries:
        if entry.matches(dataset, method, shots):
            for key, value in entry.set.items():
                (train_set if key in train_names else method_set)[key] = value
    if train_set:
        train = dataclasses.replace(train, **train_set)
    if method_set:
        method_params = dataclasses.replace(method_params, **method_set)
    return train, method_params


def settings_for(params: Any, dataset: str, method: str) -> tuple[Any, Any]:
    """The train params and `<method>` params that run `dataset` x `method` (at `params.shots`) trains with."""
    return apply(params.runs, params.train, params.method_params(method), dataset, method, params.shots)


def with_run_settings(params: Any, dataset: str, method: str) -> Any:
    """`params` whose `train` and `<method>` sections are the ones `settings_for` gives that run (the
    tune stage searches at the settings the train stage will train with)."""
    import dataclasses

    train, section = settings_for(params, dataset, method)
    return dataclasses.replace(params, train=train, method={**params.method, method: section})


def check_runs(params: Any) -> None:
    """Each entry's values against its sections' rules, with the method it names (or each of `methods`)
    (a rule that ties keys together, e.g. eta_min <= lr, sees the whole result); the validation batch
    against the method's batch rule. ParamError names the entry."""
    for i, entry in enumerate(params.runs):
        where = f"runs[{i}].set"
        names = [entry.method] if entry.method is not None else list(params.methods)
        for name in names:
            if name not in params.method:
                continue  # a method this params file does not define: its values were type-checked
            train, section = apply([entry], params.train, params.method[name], entry.dataset or "",
                                   name, entry.shots if entry.shots is not None else 0)
            train.check(where)
            if hasattr(section, "check"):
                section.check(where)
            check_val_batch(train, section, where)
    for name in params.methods:
        check_val_batch(params.train, params.method[name], "train")


def check_val_batch(train: Any, section: Any, where: str) -> None:
    """`val_batch_size`, where set, must be a batch size the method accepts."""
    size = getattr(train, "val_batch_size", None)
    if size is None or not hasattr(section, "batch_size") or not hasattr(section, "check"):
        return
    try:
        dataclasses.replace(section, batch_size=size).check("x")
    except ParamError as exc:
        rule = str(exc).split(" must be ", 1)[-1].rsplit(", got ", 1)[0].replace("x.", "")
        raise ParamError(f"{where}.val_batch_size", f"a batch size {type(section).__name__} accepts ({rule})",
                         size) from None
