"""Hostile and broken inputs, each at the stage level: the stage exits 1 with one `error:` line that
names the file or key and says what to do, and leaves no output behind; the image oddities that
real datasets contain (grayscale, CMYK, 16-bit, PNG data in a .jpg) decode fine."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from stages import decode, download, embed, split, train
from stages.lib.datasets import DATASETS, file_stem_group
from stages.lib.leaks import no_leak
from stages.lib.manifest import MANIFEST, scan
from stages.lib.models import WEIGHTS_FILE, build_backbone, save_checkpoint
from tests.helpers import ROOT, tiny_params, write_params
from tests.reliability.conftest import error_line, subprocess_env


def fails(capsys, main, args: list[str], strict: bool = True) -> str:
    """Run a stage's main in-process; assert exit code 1 and one error line; return the line."""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 1
    return error_line(capsys.readouterr().err, strict=strict)


def jpeg(colour=(200, 30, 30), mode="RGB", size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def raw_dataset(root: Path, files: dict[str, bytes]) -> Path:
    """`root/images/<class>/<file>` from {"class/file": bytes}, plus its manifest."""
    for rel, data in files.items():
        path = root / "images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    scan(root, file_stem_group).to_csv(root / MANIFEST, index=False, lineterminator="\n")
    return root


@pytest.fixture
def params(tmp_path) -> Path:
    return write_params(tmp_path / "params.yaml", tiny_params())


# --- images --------------------------------------------------------------------------------

GOOD = {"a/good.jpg": jpeg(), "b/good.jpg": jpeg((30, 200, 30))}


def truncated() -> bytes:
    data = jpeg(size=(64, 64))
    return data[: len(data) // 2]


def bomb() -> bytes:  # 200 x 200 = 40,000 pixels, above the limit the test sets
    return png(Image.new("L", (200, 200)))


@pytest.mark.parametrize(
    ("content", "limit", "says"),
    [
        (truncated(), None, "is corrupt or truncated"),
        (b"", None, "is not an image Pillow can read"),
        (b"<html>404 Not Found</html>\n", None, "is not an image Pillow can read"),
        (bomb(), 30_000, "larger than Pillow's safety limit (30000 pixels)"),  # between 1x and 2x the limit
        (bomb(), 10_000, "larger than Pillow's safety limit (10000 pixels)"),  # Pillow's own refusal
    ],
    ids=["truncated", "zero-bytes", "not-an-image", "bomb", "bomb-2x"],
)
def test_a_broken_image_fails_decode_naming_the_file(content, limit, says, tmp_path, params, capsys, monkeypatch):
    if limit is not None:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    raw = raw_dataset(tmp_path / "raw", {**GOOD, "b/broken.jpg": content})
    out = tmp_path / "decoded" / "d.npy"
    line = fails(capsys, decode.main, ["--params", str(params), "--raw", str(raw), "--out", str(out)], strict=False)
    assert str(raw / "images/b/broken.jpg") in line and says in line
    assert "remove" in line  # what to do
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no output, no temporary file


def sixteen_bit() -> bytes:
    pixels = np.zeros((20, 20), dtype=np.uint16)
    pixels[:, 10:] = 65535
    image = Image.fromarray(pixels)
    assert image.mode.startswith("I")
    return png(image)


def test_odd_but_valid_images_decode_to_rgb(tmp_path, params):
    files = {
        "a/gray.jpg": jpeg(128, mode="L"),
        "a/cmyk.jpg": jpeg((0, 255, 255, 0), mode="CMYK"),  # red in CMYK
        "a/sixteen.png": sixteen_bit(),
        "b/png_named.jpg": png(Image.new("RGB", (30, 30), (10, 20, 240))),
        "b/palette.png": png(Image.new("P", (30, 30), 3)),
        "b/rgba.png": png(Image.new("RGBA", (30, 30), (250, 250, 0, 128))),
    }
    raw = raw_dataset(tmp_path / "raw", files)
    out = tmp_path / "decoded.npy"
    decode.main(["--params", str(params), "--raw", str(raw), "--out", str(out)])
    pixels = np.load(out)
    order = list(scan(raw, file_stem_group)["path"])
    get = lambda rel: pixels[order.index(f"images/{rel}")].astype(int)  # noqa: E731
    assert pixels.shape == (6, 32, 32, 3) and pixels.dtype == np.uint8
    gray = get("a/gray.jpg")
    assert (gray[..., 0] == gray[..., 1]).all() and abs(gray.mean() - 128) < 3
    red = get("a/cmyk.jpg").mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    sixteen = get("a/sixteen.png")
    assert sixteen[:, :8].max() == 0 and sixteen[:, -8:].min() == 255  # scaled to 8 bits, not clipped
    blue = get("b/png_named.jpg").mean(axis=(0, 1))
    assert blue[2] > 200 and blue[0] < 40


# --- datasets and splits -------------------------------------------------------------------


def test_an_empty_class_folder_fails_download_naming_it(tmp_path, params, capsys, monkeypatch):
    spec = DATASETS.get("synthetic")

    def fetch(source, images_dir, cache_dir):
        spec.fetch(source, images_dir, cache_dir)
        (images_dir / "zz_empty").mkdir()

    monkeypatch.setitem(DATASETS._entries, "synthetic", dataclasses.replace(spec, fetch=fetch))
    out = tmp_path / "raw"
    line = fails(capsys, download.main, ["synthetic", "--params", str(params), "--out", str(out),
                                         "--cache", str(tmp_path / "cache")])
    assert line.startswith("error: class folder ") and "zz_empty is empty" in line
    assert not out.exists() and [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def small_class_dataset(root: Path, small: int) -> Path:
    files = {f"big/{i}.jpg": jpeg() for i in range(20)}
    files.update({f"small/{i}.jpg": jpeg((0, 0, 200)) for i in range(small)})
    return raw_dataset(root, files)


def test_a_class_with_fewer_images_than_shots_fails_split(tmp_path, capsys):
    raw = small_class_dataset(tmp_path / "raw", 8)
    settings = tiny_params(shots=10)
    settings["sources"]["synthetic"]["per_class"] = 40  # params allow 10; this download's small class does not
    params = write_params(tmp_path / "params.yaml", settings)
    out = tmp_path / "splits"
    line = fails(capsys, split.main, ["synthetic", "--params", str(params), "--raw", str(raw), "--out", str(out)])
    assert "shots=10 is larger than the training images of class 'small'" in line and "set shots to at most" in line
    assert not out.exists()


def test_a_class_too_small_to_split_fails_split(tmp_path, params, capsys):
    raw = small_class_dataset(tmp_path / "raw", 2)
    out = tmp_path / "splits"
    line = fails(capsys, split.main, ["synthetic", "--params", str(params), "--raw", str(raw), "--out", str(out)])
    assert "class 'small' has 2 images" in line and "at least 3 are needed" in line
    assert not out.exists()


# --- params.yaml ---------------------------------------------------------------------------


def test_malformed_yaml_fails_in_one_line_from_the_command_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 0\ntrain:\n  lr: [1e-3\n  epochs: 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "stages.split", "synthetic", "--params", str(bad), "--raw", "r", "--out", "o"],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith(f"error: {bad} is not valid YAML at line ") and "fix the file" in line


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda p: p["train"].update(epochs="ten"), "train.epochs must be an integer, got 'ten'"),
        (lambda p: p["model"].update(image_size=32.5), "model.image_size must be an integer, got 32.5"),
        (lambda p: p.update(seed=[0]), "seed must be an integer, got [0]"),
        (lambda p: p["train"].update(epoch=3), "unknown key train.epoch; accepted: "),
        (lambda p: p.update(sedd=1), "unknown key sedd; accepted: "),
        (lambda p: p["train"].pop("lr"), "missing key train.lr"),
    ],
    ids=["string-for-int", "float-for-int", "list-for-int", "unknown-nested", "unknown-top", "missing"],
)
def test_a_bad_params_value_fails_in_one_line_naming_the_key(change, says, tmp_path, capsys):
    raw = tiny_params()
    change(raw)
    p = write_params(tmp_path / "params.yaml", raw)
    line = fails(capsys, split.main, ["synthetic", "--params", str(p), "--raw", "r", "--out", str(tmp_path / "o")])
    assert line.startswith(f"error: {p}: ") and says in line
    assert not (tmp_path / "o").exists()


def test_params_that_are_not_text_fail_in_one_line(tmp_path, capsys):
    p = tmp_path / "params.yaml"
    p.write_bytes(b"seed: 0\n\xff\xfe\x00binary")
    line = fails(capsys, split.main, ["synthetic", "--params", str(p), "--raw", "r", "--out", "o"])
    assert line == f"error: {p} is not UTF-8 text (byte 8); fix the file"


def test_a_params_key_with_control_characters_is_shown_on_one_line(tmp_path, capsys):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({**tiny_params(), "bad\nkey": 1}))
    line = fails(capsys, split.main, ["synthetic", "--params", str(p), "--raw", "r", "--out", "o"])
    assert "unknown key 'bad\\nkey'" in line


# --- checkpoints ---------------------------------------------------------------------------


@pytest.fixture
def model_dir(tmp_path, params) -> Path:
    """A valid checkpoint of test_convnext, and split tables and decoded pixels to embed with it."""
    backbone = build_backbone("test_convnext")
    meta = {"model": "test_convnext", "image_size": 32, "classes": ["a", "b"], "pretrained": False,
            "leak": no_leak()}
    save_checkpoint(tmp_path / "model", backbone, None, meta)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits/test.csv").write_text("row,path,label,class,group\n0,x/0.jpg,0,a,a/0\n1,x/1.jpg,1,b,b/1\n")
    np.save(tmp_path / "decoded.npy", np.zeros((2, 32, 32, 3), np.uint8))
    return tmp_path / "model"


def embed_args(params: Path, model: Path) -> list[str]:
    d = model.parent
    return ["--params", str(params), "--model", str(model), "--splits", f"{d}/splits", "--decoded",
            f"{d}/decoded.npy", "--out", f"{d}/emb/out.npz"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_checkpoint_fails_embed_naming_it(damage, model_dir, params, capsys):
    weights = model_dir / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes({"garbage": b"\x00not safetensors" * 10, "truncated": data[: len(data) // 2],
                         "empty": b""}[damage])
    line = fails(capsys, embed.main, embed_args(params, model_dir))
    assert str(weights) in line and "not a readable safetensors file" in line
    assert not (model_dir.parent / "emb").exists()


def test_a_checkpoint_of_another_model_fails_embed_naming_it(model_dir, params, capsys):
    save_checkpoint(model_dir, build_backbone("test_resnet"), None,
                    json.loads((model_dir / "meta.json").read_text()))  # meta says test_convnext
    line = fails(capsys, embed.main, embed_args(params, model_dir))
    assert f"{model_dir / WEIGHTS_FILE} does not fit model test_convnext" in line and "re-run the train stage" in line


@pytest.mark.parametrize("meta", [b"\xff\xfe not json", b"{}", b"[1, 2]"])
def test_a_broken_meta_file_fails_embed_naming_it(meta, model_dir, params, capsys):
    (model_dir / "meta.json").write_bytes(meta)
    line = fails(capsys, embed.main, embed_args(params, model_dir))
    assert str(model_dir / "meta.json") in line and "re-run the train stage" in line


def test_pretrained_weights_of_another_model_fail_train_naming_them(workspace, capsys):
    folder = workspace.root / "pretrained"
    from safetensors.torch import save_file

    save_file(build_backbone("test_vit").state_dict(), str(folder / WEIGHTS_FILE))
    (folder / "info.json").write_text(json.dumps({"model": "test_convnext", "pretrained": True}))
    line = fails(capsys, train.main, workspace.train_args("classification", "x"))
    assert f"{folder / WEIGHTS_FILE} does not fit model test_convnext" in line and "check model.name" in line
    assert not (workspace.root / "x/model").exists()


def test_a_multi_line_message_is_printed_on_one_line(capsys):
    from stages.lib.errors import PipelineError, stage_main

    @stage_main
    def main(argv):
        raise PipelineError("first\nsecond\r\nthird")

    line = fails(capsys, main, [])
    assert line == "error: first second third"
