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

from stages.lib.errors import PipelineError
from stages.lib.params import Params, params_from_dict
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
    else:  # valid params are usable: every seed is one its library takes
        assert isinstance(params, Params)
        assert math.isfinite(params.train.lr) and params.train.epochs >= 1
        torch.manual_seed(params.seed)
        np.random.default_rng([params.seed, params.shots])
        for seed in (params.evaluate.kmeans_seed, params.umap.seed):
            np.random.RandomState(seed)  # scikit-learn's and umap-learn's random_state


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
