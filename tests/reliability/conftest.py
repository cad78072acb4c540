"""Shared pieces of the reliability tests: a prepared synthetic workspace and the one-line error check."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT, default_sigint, env, prepare_synthetic, tiny_params, write_params


def error_line(stderr: str, *, strict: bool = True) -> str:
    """The single `error:` line of a failed stage's stderr, asserting there is nothing else.

    `strict`: stderr is exactly that line. Otherwise the progress log of a stage that ran for a
    while (log records, progress-bar redraws) may come before it, but it is the last line, the
    only `error:` line, and there is no traceback.
    """
    assert "Traceback" not in stderr, stderr
    lines = [line.rsplit("\r", 1)[-1].strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    if strict:
        assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one error line, last:\n{stderr}"
    assert errors[0].startswith("error: ") and "\n" not in errors[0]
    return errors[0]


def subprocess_env() -> dict[str, str]:
    """helpers.env() with progress bars off, so stderr holds only what the stage says."""
    e = env()
    e["TQDM_DISABLE"] = "1"
    e["PYTHONPATH"] = str(ROOT)
    return e


@dataclass
class Workspace:
    """A synthetic dataset downloaded, split and decoded in `root`, ready for `train`."""

    root: Path
    params: Path

    def write_params(self, params: dict[str, Any], name: str = "params.yaml") -> Path:
        return write_params(self.root / name, params)

    def train_args(self, method: str, tag: str, params: Path | None = None, resume: bool = True) -> list[str]:
        """Arguments of the train stage writing to `<tag>/` (model, curve) with `resume/<tag>` for resuming."""
        d = self.root
        args = [
            "synthetic", method, "--seed", "0", "--params", str(params or self.params), "--splits", f"{d}/splits",
            "--decoded", f"{d}/decoded.npy", "--weights", f"{d}/pretrained", "--out", f"{d}/{tag}/model",
            "--curve", f"{d}/{tag}/curve.csv",
        ]
        return args + (["--resume-dir", f"{d}/resume/{tag}"] if resume else [])

    def popen_train(self, method: str, tag: str, params: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "stages.train", *self.train_args(method, tag, params)],
            cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=default_sigint,
        )

    def run_train(self, method: str, tag: str, params: Path | None = None) -> subprocess.CompletedProcess:
        proc = self.popen_train(method, tag, params)
        out, err = proc.communicate(timeout=300)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def reliability_params(**train: Any) -> dict[str, Any]:
    """tiny_params with a few more images (so an epoch takes a moment) and `train` overrides."""
    p = tiny_params()
    p["sources"]["synthetic"].update(n_classes=4, per_class=20)
    p["train"].update(train)
    return p


def prepare(root: Path, params: dict[str, Any]) -> Workspace:
    """download, split, decode and weights for `synthetic`, in-process (fast: no imports to pay)."""
    return Workspace(root, prepare_synthetic(root, params))


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return prepare(tmp_path / "ws", reliability_params(epochs=4, cosine_t_max=4))
