"""Fuzzing params validation: any mutation of a valid params dict gives either valid Params or a
PipelineError whose message is one line naming a key; never another exception."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stages.lib.datasets import DATASETS
from stages.lib.errors import PipelineError
from stages.lib.methods import METHODS
from stages.lib.params import MAX_SEED, Params, params_from_dict
from tests.helpers import tiny_params

BASE = tiny_params()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, 1e300, float("nan"), float("inf")]),
    st.text(max_size=12),
    st.sampled_from(["", "auto", "cpu", "cuda", "1e-3", "nan", "inf", "true", "null", "5e-05", "study"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
keys = st.one_of(st.text(max_size=10), st.sampled_from(["name", "lr", "seed", "epochs", "batch_size", "x"]))


def paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) into the nested dicts and lists of `tree`."""
    found = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            found += paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found += paths(v, (*prefix, i))
    return found


def get(tree: Any, path: tuple) -> Any:
    for step in path:
        tree = tree[step]
    return tree


@st.composite
def mutated(draw) -> tuple[dict, list[tuple]]:
    raw = copy.deepcopy(BASE)
    touched = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(raw)))
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        parent = get(raw, path[:-1]) if path else None
        if op == "replace" and path:
            parent[path[-1]] = draw(values)
        elif op == "delete" and path and isinstance(parent, dict):
            del parent[path[-1]]
        elif op == "add" and isinstance(get(raw, path), dict):
            key = draw(keys)
            get(raw, path)[key] = draw(values)
            path = (*path, key)
        elif op == "replace":  # the whole file
            raw = draw(values)
        touched.append(path)
    return raw, touched


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_any_mutation_is_valid_params_or_one_line_naming_a_key(case):
    raw, touched = case
    try:
        params = params_from_dict(raw)
    except PipelineError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1 and message.isprintable(), repr(message)
        assert message.startswith("params.yaml: ")
        assert any(w in message for w in ("must be", "unknown key", "missing key")), message
        if () not in touched:  # (a whole-file replacement may name any key)
            named = {str(p[0]) for p in touched}
            assert any(n in message or _escaped(n) in message for n in named), (message, touched)
    else:
        assert_usable(params)


def assert_usable(params: Params) -> None:
    """What every accepted params must satisfy for the pipeline to run as documented."""
    assert isinstance(params, Params)
    assert params.seeds and len(set(params.seeds)) == len(params.seeds), params.seeds  # one run per seed
    assert all(0 <= s <= MAX_SEED for s in (params.seed, *params.seeds)), (params.seed, params.seeds)
    assert params.shots >= 0
    for names, registry in ((params.datasets, DATASETS), (params.methods, METHODS)):
        assert names and len(set(names)) == len(names) and all(n in registry for n in names), names
    s, t, e = params.split, params.train, params.evaluate
    assert 0 < s.test_fraction and 0 < s.val_fraction and s.test_fraction + s.val_fraction < 1
    assert math.isfinite(t.lr) and t.lr > 0 and t.epochs >= 1 and 0 <= t.eta_min <= t.lr
    assert len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas) and 0 <= t.hflip <= 1
    assert 0 < t.warmup_start_factor <= 1 and t.warmup_epochs >= 0 and t.cosine_t_max >= 1
    assert e.kmeans_n_init >= 1 and e.knn_k >= 1 and e.kmeans_repeats >= 1
    assert 0 <= e.kmeans_seed and e.kmeans_seed + e.kmeans_repeats - 1 <= MAX_SEED
    for name, section in params.method.items():
        assert getattr(section, "batch_size", 1) >= 1, name
    torch.manual_seed(params.seed)  # every seed is one its library takes
    np.random.default_rng([params.seed, params.shots])
    for seed in (params.evaluate.kmeans_seed, params.evaluate.kmeans_seed + params.evaluate.kmeans_repeats - 1,
                 params.umap.seed, *params.seeds):
        np.random.RandomState(seed)  # scikit-learn's and umap-learn's random_state


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-2, 4) | st.sampled_from([MAX_SEED, MAX_SEED + 1]), max_size=5),
    st.lists(st.sampled_from([*DATASETS.names(), "cifar"]), max_size=3),
    st.lists(st.sampled_from([*METHODS.names(), "arcface"]), max_size=3),
)
def test_any_seed_dataset_and_method_lists_are_usable_or_refused_naming_them(seeds, datasets, methods):
    raw = copy.deepcopy(BASE)
    raw.update(seeds=seeds, datasets=datasets, methods=methods)
    raw["split"]["source"] = "generated"
    try:
        params = params_from_dict(raw)
    except PipelineError as exc:
        assert any(f"params.yaml: {key}" in str(exc) for key in ("seeds", "datasets", "methods")), str(exc)
    else:
        assert_usable(params)


def _escaped(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def test_huge_integers_for_float_keys_are_refused_in_one_line():
    raw = copy.deepcopy(BASE)
    raw["train"]["lr"] = 10**400
    try:
        params_from_dict(raw)
    except PipelineError as exc:
        assert "train.lr must be a finite number" in str(exc)
    else:
        raise AssertionError("accepted lr = 10**400")
