"""What a dataset of your own costs on this machine: a folder of N images through the pipeline's first stages.

Generates N JPEGs of 500x375 (the size of an Oxford pet photo, about 60 KB each at quality 90)
in 10 class folders, and a CSV listing the same files, then times, each in its own process as
`dvc repro` runs them:

1. `source` (the links DVC watches), `download` (list, check, copy, decode each image once to
   check it, write the manifest with sha256) and `decode` (every image RGB at 224x224 into the
   cache), for the folder and for the CSV;
2. the same three stages through `dvc repro` in a fresh git repository: the first run (DVC also
   hashes the folder through the link, the copy and the decoded cache, and copies the copy
   into its cache) and a second run with nothing changed (DVC checks the folder and runs nothing).

Each stage runs `--repeats` times (default 2) and the fastest is kept, as other processes on a
shared machine only ever slow a run down; the `dvc repro` rows are one run each (a first run
happens once). The load average at the start and at the end is printed with the table.

`--train-model NAME --train-size S --images N`: instead, one training epoch of each method and the
embedding of N images with timm's NAME at random initialisation, per 1,000 images, wall and CPU
time (the CPU recipe of docs/own-data.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = 10


def make_images(folder: Path, count: int, seed: int = 0) -> int:
    """`count` JPEGs of 500x375 in `folder/class<k>/`: smooth colour fields with noise; returns bytes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:375, 0:500].astype(np.float32)
    total = 0
    for index in range(count):
        k = index % CLASSES
        a, b, c = rng.uniform(0.005, 0.03, size=3)
        base = np.stack([np.sin(a * x + k), np.cos(b * y + k), np.sin(c * (x + y))], axis=-1) * 90 + 128
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"class{k}" / f"img_{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        total += path.stat().st_size
    return total


def write_table(folder: Path, csv_path: Path) -> None:
    rows = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg"))
    csv_path.write_text("path,label\n" + "".join(f"{r},{r.split('/')[0]}\n" for r in rows))


def params(folder: Path, csv_path: Path) -> dict:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["datasets"] = ["mine_folder", "mine_table"]
    p["sources"]["mine_folder"] = {"folder": str(folder)}
    p["sources"]["mine_table"] = {"csv": str(csv_path), "root": str(folder)}
    p["split"]["source"] = "generated"
    p["model"]["pretrained"] = False
    return p


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.update(TQDM_DISABLE="1", DVC_NO_ANALYTICS="1", PYTHONPATH="")
    return e


def timed_run(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def project(dest: Path, p: dict) -> Path:
    """A copy of the pipeline in a fresh git repository (as tests/helpers.project_copy)."""
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", "stages", ".dvc/config", ".dvcignore", ".gitignore"):
        src, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    (dest / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-qm", "p"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env())
    return dest


def cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def training_cost(model_name: str, size: int, images: int, classes: int = CLASSES) -> dict:
    """Seconds per 1,000 training images for one epoch of each method as `trainer.fit` runs it on the
    CPU (train pass + a validation pass of a tenth as many images), and for embedding 1,000 images:
    `model_name` at random initialisation (`pretrained: false`: the same network and cost as its
    pretrained weights), generated pixels at `size` x `size`, fp32, the threads torch chooses."""
    import dataclasses

    import stages  # noqa: F401  (the process options, before torch)

    # isort: split
    import torch

    from stages.lib.embedding import embed_pixels
    from stages.lib.losses import training
    from stages.lib.models import build_backbone, embedding_size
    from stages.lib.params import load_params
    from stages.lib.trainer import SplitData, fit

    defaults = load_params(ROOT / "params.yaml")
    params = dataclasses.replace(defaults.train, epochs=1, warmup_epochs=0, cosine_t_max=1, device="cpu",
                                 precision="fp32", compile=False, resume_every_s=0)
    rng = np.random.default_rng(0)
    n_val = max(classes, images // 10)
    pixels = rng.integers(0, 256, (images + n_val, size, size, 3), dtype=np.uint8)
    labels = np.arange(images + n_val) % classes
    train, val = SplitData(pixels[:images], labels[:images]), SplitData(pixels[images:], labels[images:])
    cpu = torch.device("cpu")
    out: dict = {"model": model_name, "image_size": size, "train_images": images, "val_images": n_val,
                 "torch_threads": torch.get_num_threads()}
    for name in ("classification", "triplet"):
        backbone = build_backbone(model_name)
        method = training(name)(defaults.method_params(name), classes, embedding_size(backbone))  # head and loss
        wall, cpu0 = time.perf_counter(), cpu_s()
        fit(method, backbone, train, val, params, seed=0, device=cpu)
        out[name] = {"wall_s_per_1000": (time.perf_counter() - wall) * 1000 / images,
                     "cpu_s_per_1000": (cpu_s() - cpu0) * 1000 / images}
        print(f"  {name}: one epoch {out[name]['wall_s_per_1000']:.1f} s per 1,000 training images "
              f"({out[name]['cpu_s_per_1000']:.1f} CPU s)", flush=True)
    backbone = build_backbone(model_name)
    wall, cpu0 = time.perf_counter(), cpu_s()
    embed_pixels(backbone, pixels[:images], cpu, 256)
    out["embed"] = {"wall_s_per_1000": (time.perf_counter() - wall) * 1000 / images,
                    "cpu_s_per_1000": (cpu_s() - cpu0) * 1000 / images}
    print(f"  embed: {out['embed']['wall_s_per_1000']:.1f} s per 1,000 images ({out['embed']['cpu_s_per_1000']:.1f} "
          "CPU s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="images in the folder (default 5000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each stage; the fastest is kept (default 2)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--train-model", metavar="NAME",
                        help="instead: what one training epoch per method and embedding cost per 1,000 images with "
                             "this timm model at random initialisation (docs/own-data.md, on a CPU)")
    parser.add_argument("--train-size", type=int, default=128, help="with --train-model: image size (default 128)")
    args = parser.parse_args(argv)
    if args.train_model:
        load = os.getloadavg()
        figures = training_cost(args.train_model, args.train_size, args.images)
        figures["load_average"] = [load, os.getloadavg()]
        print(f"load average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return
    load = os.getloadavg()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_own_data.") as tmp:
        work = Path(tmp)
        folder, csv_path = work / "data" / "images", work / "data" / "labels.csv"
        size = make_images(folder, args.images)
        write_table(folder, csv_path)
        repo = project(work / "repo", params(folder, csv_path))
        py = [sys.executable, "-m"]
        for name in ("mine_folder", "mine_table"):
            for stage, cmd in (
                ("source", ["stages.source", name, "--out", f"data/sources/{name}"]),
                ("download", ["stages.download", name, "--out", f"data/raw/{name}", "--cache", f"data/cache/{name}"]),
                ("decode", ["stages.decode", "--raw", f"data/raw/{name}", "--out", f"data/decoded/{name}.npy"]),
            ):
                figures[f"{name} {stage}"] = min(timed_run([*py, *cmd], repo) for _ in range(args.repeats))
        shutil.rmtree(repo / "data")
        targets = ["decode@mine_folder"]
        figures["dvc repro decode@mine_folder, first run"] = timed_run(["dvc", "repro", *targets], repo)
        figures["dvc repro decode@mine_folder, nothing changed"] = timed_run(["dvc", "repro", *targets], repo)
    end = os.getloadavg()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.images} JPEGs of 500x375 ({size / args.images / 1024:.0f} KB each) in {CLASSES} classes; "
          f"{cores} cores; load average {load[0]:.2f} at the start, {end[0]:.2f} at the end")
    print("| step | seconds |\n| --- | --- |")
    for key, value in figures.items():
        print(f"| {key} | {value:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"images": args.images, "load_average": [load, end], **figures}, indent=2)
                             + "\n")


if __name__ == "__main__":
    main()
