"""Every file a stage writes appears whole or not at all: a failure injected partway through a
write leaves no final file (or the previous good one, untouched) and no temporary file; a
SIGKILL partway through leaves the old or the new file, never half of one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stages import embed, evaluate, split, train, umap
from stages.lib import arrays, atomic, models
from stages.lib.arrays import load_npz, save_npz
from stages.lib.atomic import write_json
from tests.helpers import ROOT
from tests.reliability.conftest import subprocess_env


class Injected(Exception):
    """The failure injected partway through a write."""


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fail_on_call(monkeypatch, owner, name: str, call: int) -> None:
    """Make `owner.name` raise Injected on its `call`-th call (1-based); earlier calls work."""
    real = getattr(owner, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= call:
            raise Injected(f"{name} failed on call {calls['n']}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.fixture
def embedded(workspace):
    """The workspace with the untrained model saved and its embeddings and metrics written once."""
    ws, d, p = workspace, workspace.root, str(workspace.params)
    train.main(ws.train_args("pretrained", "run", resume=False))
    embed.main(["--params", p, "--model", f"{d}/run/model", "--splits", f"{d}/splits", "--decoded",
                f"{d}/decoded.npy", "--out", f"{d}/out/embeddings.npz"])
    evaluate.main(["--params", p, "--embeddings", f"{d}/out/embeddings.npz", "--out", f"{d}/out/metrics.json",
                   "--predictions", f"{d}/out/predictions.csv"])
    return ws


def embed_args(ws, out: str) -> list[str]:
    d = ws.root
    return ["--params", str(ws.params), "--model", f"{d}/run/model", "--splits", f"{d}/splits",
            "--decoded", f"{d}/decoded.npy", "--out", f"{d}/{out}"]


def test_embeddings_failing_after_the_first_array(embedded, monkeypatch):
    ws = embedded
    before = snapshot(ws.root / "out")
    fail_on_call(monkeypatch, np.lib.format, "write_array", 2)
    with pytest.raises(Injected):
        embed.main(embed_args(ws, "out/embeddings.npz"))
    assert snapshot(ws.root / "out") == before  # the previous good file untouched, no temp file
    fail_on_call(monkeypatch, np.lib.format, "write_array", 2)
    with pytest.raises(Injected):
        embed.main(embed_args(ws, "fresh/embeddings.npz"))
    assert snapshot(ws.root / "fresh") == {}  # no final file appears


def test_embeddings_failing_in_the_zip_write(embedded, monkeypatch):
    ws = embedded
    before = snapshot(ws.root / "out")
    fail_on_call(monkeypatch, arrays.zipfile.ZipFile, "writestr", 2)
    with pytest.raises(Injected):
        embed.main(embed_args(ws, "out/embeddings.npz"))
    assert snapshot(ws.root / "out") == before


@pytest.mark.parametrize("where", ["dumps", "write"])
def test_metrics_failing_partway(embedded, monkeypatch, where):
    ws, d = embedded, embedded.root
    before = snapshot(d / "out")
    if where == "dumps":
        fail_on_call(monkeypatch, atomic.json, "dumps", 1)
    else:  # half the text reaches the disk, then the disk is full
        def half_then_fail(self, text, *args, **kwargs):
            with open(self, "w", encoding="utf-8") as handle:
                handle.write(text[: len(text) // 2])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises((Injected, OSError)):
        evaluate.main(["--params", str(ws.params), "--embeddings", f"{d}/out/embeddings.npz",
                       "--out", f"{d}/out/metrics.json",
                   "--predictions", f"{d}/out/predictions.csv"])
    assert snapshot(d / "out") == before
    json.loads((d / "out/metrics.json").read_text())


def test_checkpoint_folder_failing_between_weights_and_meta(embedded, monkeypatch):
    ws = embedded
    before = snapshot(ws.root / "run")
    fail_on_call(monkeypatch, models.json, "dumps", 1)  # after model.safetensors is written
    with pytest.raises(Injected):
        train.main(ws.train_args("pretrained", "run", resume=False))
    assert snapshot(ws.root / "run") == before  # weights and meta data still belong together
    assert [p.name for p in ws.root.iterdir() if p.name.startswith(".")] == []


def test_split_tables_failing_on_the_last_file(workspace, monkeypatch):
    d = workspace.root
    before = snapshot(d / "splits")
    fail_on_call(monkeypatch, split.json, "dumps", 1)  # classes.json comes after the three tables
    with pytest.raises(Injected):
        split.main(["synthetic", "--params", str(workspace.params), "--raw", f"{d}/raw", "--out", f"{d}/splits"])
    assert snapshot(d / "splits") == before
    assert [p.name for p in d.iterdir() if p.name.startswith(".")] == []


def test_umap_picture_failing_mid_write(embedded, monkeypatch):
    from matplotlib.figure import Figure

    d = embedded.root

    def half_png(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG\r\n\x1a\n half")
        raise Injected("savefig failed")

    monkeypatch.setattr(Figure, "savefig", half_png)
    monkeypatch.setattr(umap, "project", lambda embeddings, params: embeddings[:, :2])  # skip UMAP itself
    with pytest.raises(Injected):
        umap.main(["synthetic", "pretrained", "--params", str(embedded.params), "--embeddings",
                   f"{d}/out/embeddings.npz", "--metrics", f"{d}/out/metrics.json", "--out", f"{d}/plots/u.png"])
    assert snapshot(d / "plots") == {}


WRITER = """
import os, sys, time, zipfile
import numpy as np
from pathlib import Path
from stages.lib.arrays import save_npz
from stages.lib.atomic import write_json

out, where = Path(sys.argv[1]), sys.argv[2]


def wait_to_be_killed(tmp):
    print(tmp, flush=True)
    time.sleep(600)


if where == "between the arrays":  # the temporary file holds the first array, not the second nor the zip's index
    writestr = zipfile.ZipFile.writestr

    def first_then_stop(self, info, data, *args, **kwargs):
        if info.filename != "a.npy":
            self.fp.flush()
            wait_to_be_killed(self.filename)
        return writestr(self, info, data, *args, **kwargs)

    zipfile.ZipFile.writestr = first_then_stop
else:  # "before the rename": the temporary file is whole, the old file still in place
    replace = os.replace

    def stop_before(src, dst):
        if Path(dst).name == "m.json":
            wait_to_be_killed(src)
        replace(src, dst)

    os.replace = stop_before
if where == "between the arrays":
    save_npz(out / "big.npz", a=np.zeros(2_000_000, np.float32), b=np.zeros(1_000_000, np.int64))
write_json(out / "m.json", {"v": 0, "pad": "x" * 200_000})
"""


@pytest.mark.parametrize("where", ["between the arrays", "before the rename"])
def test_sigkill_during_a_write_leaves_the_old_file_whole(tmp_path, where):
    """The writer stops itself at a known point of a write (a hook in it), says which temporary
    file it is writing, and is killed there: the old file is whole and untouched."""
    save_npz(tmp_path / "big.npz", a=np.full(2_000_000, 1, np.float32), b=np.full(1_000_000, 1, np.int64))
    write_json(tmp_path / "m.json", {"v": 1, "pad": "x" * 200_000})
    old = snapshot(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), where], cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    tmp = Path(proc.stdout.readline().strip())  # it is inside the write now, and waits
    try:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp"), tmp
        if where == "between the arrays":  # half a file: the first array's 8 MB, no second array, no zip index
            assert tmp.name.startswith(".big.npz.") and 8_000_000 < tmp.stat().st_size < 12_000_000
        else:  # the whole new file, not yet renamed
            assert tmp.name.startswith(".m.json.") and json.loads(tmp.read_text())["v"] == 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    left = snapshot(tmp_path)
    assert {k: v for k, v in left.items() if not k.startswith(".")} == old
    data = load_npz(tmp_path / "big.npz", ("a", "b"))
    assert (data["a"] == 1).all() and (data["b"] == 1).all()
    # Nothing runs after SIGKILL, so the temporary file stays behind: hidden, never read, and
    # ignored by DVC (.dvcignore: .*.tmp).
    assert tmp.exists() and [k for k in left if k.startswith(".")] == [tmp.name]
