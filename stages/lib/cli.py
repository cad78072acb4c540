"""Argument parsing shared by the stage modules: every path comes from `dvc.yaml`."""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.lib.params import Params, load_params


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ArgumentParser with the common `--params` option."""
    p = argparse.ArgumentParser(prog=f"python -m stages.{prog}", description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    return p


def params_of(args: argparse.Namespace) -> Params:
    """Load and validate the params file named on the command line."""
    return load_params(args.params)
