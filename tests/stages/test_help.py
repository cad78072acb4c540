"""`python -m stages.<name> --help` answers at once: no stage imports torch, pandas, scikit-learn,
scipy, matplotlib, umap-learn or timm before its arguments are parsed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, env

STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__")
HEAVY = ("torch", "pandas", "sklearn", "scipy", "matplotlib", "umap", "timm", "pytorch_metric_learning")

PROBE = """
import contextlib, io, runpy, sys
sys.argv = ["stage", "--help"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        runpy.run_module("stages." + NAME, run_name="__main__")
    except SystemExit as exit:
        assert exit.code == 0, exit.code
assert "usage: python -m stages." + NAME in out.getvalue(), out.getvalue()
print(" ".join(m for m in HEAVY if m in sys.modules))
"""


def test_every_stage_is_listed():
    assert {"check", "train", "embed", "evaluate", "umap", "pictures", "report"} <= set(STAGES)


@pytest.mark.parametrize("name", STAGES)
def test_help_imports_no_heavy_library(name):
    code = f"NAME = {name!r}\nHEAVY = {HEAVY!r}\n{PROBE}"
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True,
                            timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"stages.{name} --help imported: {result.stdout.strip()}"
    assert elapsed < 10, elapsed  # under a second on a quiet machine; generous for a busy one


def test_checking_params_imports_no_torch():
    """Every stage checks params.yaml first; the stages that neither train nor embed (check, source,
    download, split, decode, umap, pictures, report...) must not pay 1.3 s for torch to do it, so the
    methods' modules, the optimiser names and the rules they check are importable without torch."""
    code = (
        "import sys\nfrom stages.lib.params import load_params\n"
        "p = load_params('params.yaml')\nassert p.methods and p.train.optimizer, p\n"
        "from stages.lib.methods import METHODS\nassert 'triplet' in METHODS.names()\n"
        "print(' '.join(m for m in ('torch', 'timm', 'pytorch_metric_learning') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"checking params imported: {result.stdout.strip()}"
