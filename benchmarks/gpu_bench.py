"""Training and embedding throughput on one CUDA GPU: the study's way against ours.

Two plans. `--quick` (fits one 10-minute call on an H100-class GPU, see benchmarks/README.md):
training images/s of every method that trains, at the pipeline's defaults (params.yaml:
`deterministic: true`, `precision: auto`, no compile) and with `deterministic: false`, beside the
study's way; the embed stage's throughput at its settings (fp32, `embed.batch_size`); a 2-epoch
`fit` twice and once interrupted and resumed, the weights compared byte for byte; retrieval and
K-means metrics at 20,000 points on the GPU against the CPU; the evaluate stage at 1,000,000 x
768. Each row is written to `rows.jsonl` and `rows.txt` in the output folder (`--out`, else
`$OUT`, else build/gpu-bench) as soon as it is measured, so a killed run keeps what finished.
The full plan (no `--quick`) is the older, longer one described below.

Random uint8 images through the real `convnext_tiny` (random weights, `pretrained=False`: the
same compute as the pretrained one) at 224x224; needs PyTorch, timm and numpy, no network and
no dataset. Run it with `benchmarks/gpu.sh`; `--dry-run` runs the same code on the CPU with
timm's `test_convnext` at 32x32 for a couple of steps, to check it without a GPU.

- The study's way: fp32, eager, contiguous memory, `torch.optim.Adam` (for-each), batches of
  normalised fp32 tensors copied from the host each step, three forward passes per triplet
  batch, `loss.item()` every step.
- Ours: the trainer's own `_run_batches` over a host uint8 array (gather, pinned non-blocking
  copy, flip and normalisation on the device), bf16 autocast, channels-last, fused Adam from
  `build_optimizer`, one forward per batch; with and without `torch.compile`.
- Embedding: ours is `embed_pixels` at the embed stage's settings (fp32, TF32 off, batches of
  `embed.batch_size`); the study embedded in fp32 batches of 4.
- DDP (`train.processes`): ours on one GPU and on every visible GPU, one process per GPU under
  DistributedDataParallel, the study's global triplet batch split across them (the same
  experiment whatever the number of GPUs); skipped, saying so, where there is one GPU.
- Evaluate: the evaluate stage's metrics on 100,000 and 1,000,000 generated 768-d embeddings
  (`benchmarks/bench_evaluate.py`, each size in its own process): the neighbour search and
  K-means (`stages.lib.kmeans`) on the GPU.

Each measurement runs a fixed number of warm-up steps, then a fixed number of timed steps
between `torch.cuda.synchronize()` calls; peak memory is `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would garble the table; read at import

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# First: `stages` sets the process options the pipeline runs with, before torch starts.
import stages  # noqa: E402,F401

# isort: split
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

try:  # the project's own building blocks: "ours" is the real code
    from stages.lib import distributed, kmeans, metrics, resume, trainer
    from stages.lib.device import (
        MEAN,
        STD,
        autocast_dtype,
        configure_determinism,
        configure_tf32,
        prepare_model,
        process_group_backend,
    )
    from stages.lib.embedding import embed_pixels
    from stages.lib.losses import ClassificationTraining as Classification
    from stages.lib.losses import TripletTraining as Triplet
    from stages.lib.losses import training
    from stages.lib.methods import METHODS
    from stages.lib.methods.classification import ClassificationParams
    from stages.lib.methods.triplet import TripletParams
    from stages.lib.params import load_params
    from stages.lib.schedule import build_optimizer
    from stages.lib.trainer import Model, SplitData, Step, _run_batches, fit
except ModuleNotFoundError as exc:
    sys.exit(
        f"benchmarks/gpu_bench.py runs the project's stages.lib, which imports {exc.name!r}, not installed "
        f"here: `pip install {exc.name}`, or put a copy of it on PYTHONPATH (the machine has no network)."
    )

N_CLASSES = 10
EPOCHS = 100  # the study's schedule
STUDY_OPTIMISER = SimpleNamespace(optimizer="adam", lr=5e-5, betas=[0.9, 0.999], weight_decay=1e-6)

# The study's table: 2 datasets x 2 regimes x 2 methods. Train / validation / test images per run,
# approximated from SEED_PROTOCOL.md (the study's exact list sizes are not known here):
# - pets, all data: the official trainval (3,680) less a 10% validation set (368) -> 3,312 train;
#   test 1,480 (40 per breed).
# - defungi, all data: 9,114 x 0.7 ~ 6,380 train, 9,114 x 0.1 ~ 911 validation; test 740.
# - 15 images per class: 37 x 15 = 555 (pets), 5 x 15 = 75 (defungi) train; the validation set
#   is assumed as large as with all data (an overestimate); test 1,480 and 150.
STUDY_RUNS = {
    "pets, all data": (3_312, 368, 1_480),
    "pets, 15 per class": (555, 368, 1_480),
    "defungi, all data": (6_380, 911, 740),
    "defungi, 15 per class": (75, 911, 150),
}


@dataclass(frozen=True)
class Config:
    model: str
    size: int
    triplet_batch: int  # triplets per step (the study: 64)
    classification_batch: int  # images per step (the study: 128)
    embed_batch: int
    embed_images: int
    study_embed_batch: int  # the study embedded test images 4 at a time
    study_embed_images: int
    pool: int  # random host images the batches are drawn from
    warmup: int
    steps: int


FULL = Config("convnext_tiny", 224, 64, 128, 256, 4_096, 4, 512, 1_024, warmup=3, steps=10)
QUICK = Config("convnext_tiny", 224, 64, 128, 256, 2_048, 4, 256, 1_024, warmup=2, steps=6)
TINY = Config("test_convnext", 32, 4, 8, 16, 64, 4, 16, 48, warmup=1, steps=2)
EVALUATE_POINTS = {"full": (100_000, 1_000_000), "tiny": (300, 600)}  # tiny: 64-d, 10 classes, in process
DRY_RUN_PROCESSES = 2  # --dry-run: the DDP rows with two gloo processes on the CPU


@dataclass
class Result:
    name: str
    images_per_s: float
    peak_gib: float | None
    warmup_s: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _backbone(cfg: Config) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(cfg.model, pretrained=False, num_classes=0)


def _timed(warm_up, timed, steps: int, device: torch.device) -> tuple[float, float]:
    """Seconds of `warm_up()`, then seconds per step of `timed()` (`steps` steps), the device
    synchronised around each so that queued GPU work is counted."""
    _sync(device)
    start = time.perf_counter()
    warm_up()
    _sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    timed()
    _sync(device)
    return warm, (time.perf_counter() - start) / steps


def _timed_steps(step, warmup: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Seconds of `warmup` untimed steps, then seconds per step over `steps` timed ones."""
    return _timed(lambda: [step(i) for i in range(warmup)], lambda: [step(warmup + i) for i in range(steps)],
                  steps, device)


def _host_float_batches(cfg: Config, batch: int, count: int) -> list[torch.Tensor]:
    """Normalised fp32 batches on the host, as the study's DataLoader delivered them."""
    gen = torch.Generator().manual_seed(0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return [
        (torch.randint(0, 256, (batch, 3, cfg.size, cfg.size), generator=gen, dtype=torch.uint8).float() / 255 - mean)
        / std
        for _ in range(count)
    ]


# --- the study's way ----------------------------------------------------------------------------


def study_triplet(cfg: Config, device: torch.device) -> Result:
    _reset_peak(device)
    backbone = _backbone(cfg).to(device)
    opt = torch.optim.Adam(backbone.parameters(), lr=5e-5, betas=(0.9, 0.999), weight_decay=1e-6)
    criterion = nn.TripletMarginLoss(margin=1.0, p=2, eps=1e-7)
    host = _host_float_batches(cfg, cfg.triplet_batch, 6)
    backbone.train()

    def step(i: int) -> None:
        anchor, positive, negative = (host[(3 * i + k) % len(host)].to(device) for k in range(3))
        loss = criterion(backbone(anchor), backbone(positive), backbone(negative))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()

    warm, per_step = _timed_steps(step, cfg.warmup, cfg.steps, device)
    return Result("triplet, study's way: fp32, eager, 3 forwards", 3 * cfg.triplet_batch / per_step,
                  _peak(device), warm)


def study_classification(cfg: Config, device: torch.device) -> Result:
    _reset_peak(device)
    backbone = _backbone(cfg).to(device)
    head = nn.Linear(backbone.num_features, N_CLASSES).to(device)
    opt = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=5e-5, betas=(0.9, 0.999),
                           weight_decay=1e-6)
    criterion = nn.CrossEntropyLoss()
    host = _host_float_batches(cfg, cfg.classification_batch, 2)
    labels = torch.arange(cfg.classification_batch) % N_CLASSES
    backbone.train()

    def step(i: int) -> None:
        images, target = host[i % len(host)].to(device), labels.to(device)
        loss = criterion(head(backbone(images)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()

    warm, per_step = _timed_steps(step, cfg.warmup, cfg.steps, device)
    return Result("classification, study's way: fp32, eager", cfg.classification_batch / per_step,
                  _peak(device), warm)


def study_embedding(cfg: Config, device: torch.device) -> Result:
    _reset_peak(device)
    backbone = _backbone(cfg).to(device).eval()
    host = _host_float_batches(cfg, cfg.study_embed_batch, 8)
    n_steps = cfg.study_embed_images // cfg.study_embed_batch

    def step(i: int) -> None:
        with torch.no_grad():
            backbone(host[i % len(host)].to(device)).cpu()

    warm, per_step = _timed_steps(step, cfg.warmup, n_steps, device)
    return Result(f"embedding, study's way: fp32, batch {cfg.study_embed_batch}", cfg.study_embed_batch / per_step,
                  _peak(device), warm)


# --- ours -----------------------------------------------------------------------------------------


@functools.cache
def _host_pixels(cfg: Config) -> SplitData:
    """`cfg.pool` random uint8 images and their labels, made once per size (only read after)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (cfg.pool, cfg.size, cfg.size, 3), dtype=np.uint8)
    return SplitData(pixels, np.arange(cfg.pool) % N_CLASSES)


def _full_batches(method, data: SplitData, per_batch: int, count: int) -> list[np.ndarray]:
    """`count` of the method's own index arrays, full-sized only (so the compiled graph stays one)."""
    rng = np.random.default_rng(1)
    out: list[np.ndarray] = []
    while len(out) < count:
        out += [b for b in method.split_batches(data, rng) if len(b) == per_batch]
    return out[:count]


def ours_training(cfg: Config, device: torch.device, method_name: str, compile_: bool) -> Result:
    _reset_peak(device)
    data = _host_pixels(cfg)
    backbone = _backbone(cfg)
    if method_name == "triplet":
        method = Triplet(TripletParams(batch_size=cfg.triplet_batch, margin=1.0), N_CLASSES, backbone.num_features)
        per_batch = 3 * cfg.triplet_batch
    else:
        method = Classification(ClassificationParams(batch_size=cfg.classification_batch), N_CLASSES,
                                backbone.num_features)
        per_batch = cfg.classification_batch
    model = prepare_model(Model(backbone, method.head()), device)
    optimizer = build_optimizer(model.parameters(), STUDY_OPTIMISER)  # fused Adam on CUDA
    if compile_:
        torch._dynamo.reset()  # the previous model's compiled graphs and guards: not this one's
    forward = torch.compile(model.backbone) if compile_ else model.backbone
    batches = _full_batches(method, data, per_batch, cfg.warmup + cfg.steps)
    model.train()

    def run(chunk: list[np.ndarray], epoch: int) -> None:
        step = Step(model, method, device, forward=forward, amp_dtype=torch.bfloat16, hflip=0.5)
        _run_batches(step, data, chunk, epoch=epoch, optimizer=optimizer, flip_rng=np.random.default_rng(epoch))

    warm, per_step = _timed(
        lambda: run(batches[: cfg.warmup], 1), lambda: run(batches[cfg.warmup :], 2), cfg.steps, device
    )
    how = "bf16, channels-last, fused Adam" + (", 1 forward" if method_name == "triplet" else "")
    name = f"{method_name}, ours: {how}" + (", torch.compile" if compile_ else "")
    return Result(name, per_batch / per_step, _peak(device), warm)


def ours_embedding(cfg: Config, device: torch.device) -> Result:
    """The embed stage's `embed_pixels` at its settings: fp32 (TF32 off), batches of `cfg.embed_batch`."""
    _reset_peak(device)
    backbone = _backbone(cfg)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (cfg.embed_images, cfg.size, cfg.size, 3), dtype=np.uint8)
    _sync(device)
    start = time.perf_counter()
    embed_pixels(backbone, pixels[: cfg.embed_batch * max(cfg.warmup, 1)], device, cfg.embed_batch, "fp32")
    _sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    out = embed_pixels(backbone, pixels, device, cfg.embed_batch, "fp32")
    _sync(device)
    seconds = time.perf_counter() - start
    assert out.shape == (cfg.embed_images, backbone.num_features)
    return Result(f"embedding, ours: fp32 (no TF32), inference_mode, batch {cfg.embed_batch}",
                  cfg.embed_images / seconds, _peak(device), warm)


# --- DDP: one run on several GPUs ------------------------------------------------------------------


def _ddp_rank(rank: int, world: int, folder: str, cfg: Config, device_type: str) -> None:
    """One process of the DDP measurement: the trainer's own `_run_batches` on this rank's slices of
    the study's global triplet batches; rank 0 writes images/s (global images per step)."""
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    elif world > 1:  # forked: one thread (a thread pool does not survive a fork)
        torch.set_num_threads(1)
    dist.init_process_group(process_group_backend(device), init_method=f"file://{folder}/store", rank=rank,
                            world_size=world)
    try:
        data = _host_pixels(cfg)
        backbone = _backbone(cfg)
        method = Triplet(TripletParams(batch_size=cfg.triplet_batch, margin=1.0), N_CLASSES, backbone.num_features)
        model = prepare_model(Model(backbone, None), device)
        optimizer = build_optimizer(model.parameters(), STUDY_OPTIMISER)
        net = distributed.wrap(model, device) if world > 1 else model.backbone
        batches = _full_batches(method, data, 3 * cfg.triplet_batch, cfg.warmup + cfg.steps)
        model.train()

        def run(chunk: list[np.ndarray], epoch: int) -> None:
            step = Step(model, method, device, forward=net, amp_dtype=autocast_dtype("auto", device), hflip=0.5)
            _run_batches(step, data, chunk, epoch=epoch, optimizer=optimizer, flip_rng=np.random.default_rng(epoch))

        start = time.perf_counter()
        run(batches[: cfg.warmup], 1)
        _sync(device)
        dist.barrier()
        warm = time.perf_counter() - start
        start = time.perf_counter()
        run(batches[cfg.warmup :], 2)
        _sync(device)
        dist.barrier()
        per_step = (time.perf_counter() - start) / cfg.steps
        if rank == 0:
            (Path(folder) / "result.txt").write_text(f"{3 * cfg.triplet_batch / per_step} {warm} {_peak(device)}")
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def one_thread(on: bool = True):
    """torch, BLAS and OpenMP on one thread while inside (`on`), as before after: for the dry run's
    tiny sizes, where starting and joining threads on a busy machine would be all it measured."""
    if not on:
        yield
        return
    try:  # scikit-learn's (the evaluate rows'); without it, torch's threads alone
        from threadpoolctl import threadpool_limits
    except ModuleNotFoundError:
        threadpool_limits = None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext():
            yield
    finally:
        torch.set_num_threads(threads)


def ddp_training(cfg: Config, device: torch.device, world: int) -> Result:
    """Triplet training images/s with `world` processes (one per GPU; gloo processes on the CPU)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gpu_bench_ddp_") as folder:
        if world == 1:  # here, as the other rows (on the CPU on one thread, as each of several processes)
            with one_thread(device.type == "cpu"):
                _ddp_rank(0, 1, folder, cfg, device.type)
        else:
            # CUDA needs fresh (spawned) processes; gloo processes on the CPU (the dry run) are forked
            # from this one, which spares each its imports (seconds), and use one thread each.
            mp.start_processes(_ddp_rank, args=(world, folder, cfg, device.type), nprocs=world,
                               start_method="spawn" if device.type == "cuda" else "fork")
        ips, warm, peak = (Path(folder) / "result.txt").read_text().split()
    unit = ("GPU" if device.type == "cuda" else "CPU process") + ("es" if world > 1 and device.type != "cuda" else
                                                                   "s" if world > 1 else "")
    name = f"triplet DDP, ours: {world} {unit}, global batch {cfg.triplet_batch} triplets"
    return Result(name, float(ips), None if peak == "None" else float(peak), float(warm))


def ddp_rows(cfg: Config, device: torch.device, dry_run: bool) -> tuple[list[Result], str]:
    """DDP images/s with one process and with every visible GPU (two CPU processes in a dry run);
    with one GPU, no rows and the line that says so."""
    world = DRY_RUN_PROCESSES if dry_run else torch.cuda.device_count()
    if world < 2:
        return [], "triplet DDP: one GPU: skipped"
    one, many = ddp_training(cfg, device, 1), ddp_training(cfg, device, world)
    return [one, many], (f"triplet DDP: {world} x {one.images_per_s:.0f} = {world * one.images_per_s:.0f} "
                         f"images/s if it scaled perfectly; measured {many.images_per_s:.0f} "
                         f"({many.images_per_s / (world * one.images_per_s):.0%} scaling efficiency)")


# --- evaluate on large test sets ------------------------------------------------------------------


def evaluate_rows(sizes: tuple[int, ...], device: torch.device, in_process: bool = False) -> list[dict]:
    """`bench_evaluate` at each size, each in its own process (its own peak memory; `in_process`: here,
    for a dry run), the retrieval on `device`. Needs scikit-learn and SciPy."""
    try:
        from benchmarks import bench_evaluate
    except ModuleNotFoundError as exc:
        print(f"  evaluate rows: skipped, {exc.name!r} is not installed here (pip install {exc.name})", flush=True)
        return []
    rows = []
    for points in sizes:
        if in_process:
            with one_thread():
                row = bench_evaluate.evaluate(*bench_evaluate.blobs(points, dim=64, n_classes=10), device)
            row["peak_rss_gib"] = bench_evaluate.peak_rss_gib()
        else:
            row = bench_evaluate.run_in_subprocess(points, device.type)
        rows.append(row)
        print(f"  evaluate {points} x {row['dim']}: {row['total_s']:.1f} s, peak RSS {row['peak_rss_gib']:.2f} GiB",
              flush=True)
    return rows


def evaluate_table(rows: list[dict]) -> str:
    header = ("evaluate (K-means and retrieval on the device)", "total s", "retrieval s", "peak RSS GiB",
              "GPU peak GiB")
    body = [(f"{r['points']:,} x {r['dim']}, {r['classes']} classes (+ the L2-normalised pass)",
             f"{r['total_s']:.1f}", f"{r['retrieval_s']:.1f}", f"{r['peak_rss_gib']:.2f}",
             f"{r['gpu_peak_gib']:.2f}" if "gpu_peak_gib" in r else "-") for r in rows]
    width = [max(len(x[i]) for x in [header, *body]) for i in range(5)]
    fmt = lambda row: " | ".join(c.ljust(width[0]) if i == 0 else c.rjust(width[i]) for i, c in enumerate(row))  # noqa: E731
    lines = [fmt(header), "-+-".join("-" * w for w in width), *map(fmt, body)]
    if len(rows) >= 2:
        from benchmarks.bench_evaluate import growth

        lines.append(f"growth between the two sizes: time ~ N^{growth(rows, 'total_s'):.2f}, "
                     f"peak RSS ~ N^{growth(rows, 'peak_rss_gib'):.2f}")
    return "\n".join(lines)


# --- the quick plan: one call on a lent GPU -------------------------------------------------------


class Rows:
    """Each measured row, at once, to `rows.jsonl` (one JSON object a line) and `rows.txt` (the line
    printed) in `folder`, flushed to disk: a run killed at its time limit keeps every finished row.
    Each row records `elapsed_s`, the seconds since the benchmark started, when it was written."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.start = time.perf_counter()
        self.rows: list[dict] = []
        for name in ("rows.jsonl", "rows.txt"):
            (folder / name).write_text("")

    def add(self, row: dict, line: str) -> None:
        row = {**row, "elapsed_s": round(time.perf_counter() - self.start, 1)}
        line = f"[{row['elapsed_s']:6.0f} s] {line}"
        self.rows.append(row)
        for name, text in (("rows.jsonl", json.dumps(row)), ("rows.txt", line)):
            with open(self.folder / name, "a", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
        print(f"  {line}", flush=True)


def output_folder(given: Path | None) -> Path:
    """`--out`, else `$OUT` (what a lent machine brings back), else build/gpu-bench."""
    if given is not None:
        return given
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "build" / "gpu-bench"


@functools.cache
def pipeline_params():
    """params.yaml: the pipeline's defaults (training, embed and evaluate settings)."""
    return load_params(ROOT / "params.yaml")


def trained_methods() -> list[str]:
    return [name for name in METHODS.names() if METHODS.get(name).trains]


def _method(cfg: Config, name: str, features: int):
    """`name` with its params.yaml settings; at the tiny sizes, the tiny batch sizes."""
    settings = pipeline_params().method_params(name)
    if cfg is TINY:
        settings = dataclasses.replace(settings, batch_size=cfg.triplet_batch if name == "triplet" else
                                       cfg.classification_batch)
    return training(name)(settings, N_CLASSES, features)


def pipeline_training(cfg: Config, device: torch.device, name: str, deterministic: bool) -> Result:
    """Training images/s (images through the backbone per second) of method `name` as the train
    stage runs it: params.yaml's precision (`auto`: bf16 on CUDA), no compile, its batches, fused
    Adam, `configure_determinism(deterministic)`."""
    train = pipeline_params().train
    configure_determinism(deterministic, device)
    configure_tf32(train.precision, device)
    _reset_peak(device)
    data = _host_pixels(cfg)
    backbone = _backbone(cfg)
    method = _method(cfg, name, backbone.num_features)
    model = prepare_model(Model(backbone, method.head()), device)
    optimizer = build_optimizer(model.parameters(), train)
    rng = np.random.default_rng(1)
    batches: list[np.ndarray] = []
    while len(batches) < cfg.warmup + cfg.steps:
        epoch = method.split_batches(data, rng)
        size = max(len(b) for b in epoch)
        batches += [b for b in epoch if len(b) == size]  # full batches only
    batches = batches[: cfg.warmup + cfg.steps]
    amp = autocast_dtype(train.precision, device)
    model.train()

    def run(chunk: list[np.ndarray], epoch: int) -> None:
        step = Step(model, method, device, amp_dtype=amp, hflip=train.hflip)
        _run_batches(step, data, chunk, epoch=epoch, optimizer=optimizer, flip_rng=np.random.default_rng(epoch))

    warm, per_step = _timed(
        lambda: run(batches[: cfg.warmup], 1), lambda: run(batches[cfg.warmup :], 2), cfg.steps, device
    )
    return Result(f"{name}, ours", len(batches[0]) / per_step, _peak(device), warm)


def training_rows(cfg: Config, device: torch.device, rows: Rows) -> None:
    """Every trained method at params.yaml's `deterministic` and with the other setting, beside the
    study's way (triplet and classification: the study trained no other)."""
    default = pipeline_params().train.deterministic
    study: dict[str, Result] = {}
    configure_tf32("bf16", device)  # the study's way: PyTorch's defaults (TF32 convolutions on CUDA)
    configure_determinism(False, device)
    for name, measure in (("triplet", study_triplet), ("classification", study_classification)):
        study[name] = measure(cfg, device)
    for name in trained_methods():
        for deterministic in (default, not default):
            r = pipeline_training(cfg, device, name, deterministic)
            theirs = study.get(name)
            row = {"row": "train", "method": name, "deterministic": deterministic,
                   "defaults": deterministic == default, "images_per_s": r.images_per_s,
                   "study_images_per_s": theirs.images_per_s if theirs else None, "peak_gib": r.peak_gib,
                   "warmup_s": r.warmup_s}
            beside = (f"study's way {theirs.images_per_s:.0f} img/s ({r.images_per_s / theirs.images_per_s:.1f}x)"
                      if theirs else "study's way: none (not in the study)")
            peak = f", peak {r.peak_gib:.1f} GiB" if r.peak_gib is not None else ""
            rows.add(row, f"train {name}, deterministic {str(deterministic).lower()}"
                          f"{' (params default)' if deterministic == default else ''}: {r.images_per_s:.0f} img/s; "
                          f"{beside}{peak}")
    configure_determinism(default, device)


def embedding_rows(cfg: Config, device: torch.device, rows: Rows) -> None:
    ours, theirs = ours_embedding(cfg, device), study_embedding(cfg, device)
    rows.add({"row": "embed", "precision": "fp32", "batch": cfg.embed_batch, "images_per_s": ours.images_per_s,
              "study_images_per_s": theirs.images_per_s, "peak_gib": ours.peak_gib},
             f"embed (the stage's settings: fp32, no TF32, batch {cfg.embed_batch}): {ours.images_per_s:.0f} img/s; "
             f"study's way (fp32, batch {cfg.study_embed_batch}) {theirs.images_per_s:.0f} img/s")


class _Stop(Exception):
    """Stands in for a kill right after the first epoch's resume checkpoint is written."""


def _same_weights(a, b) -> bool:
    states = ((a.backbone_state, b.backbone_state), (a.head_state or {}, b.head_state or {}))
    return all(x.keys() == y.keys() and all(x[k].cpu().numpy().tobytes() == y[k].cpu().numpy().tobytes() for k in x)
               for x, y in states)


def fit_rows(cfg: Config, device: torch.device, rows: Rows, work: Path) -> None:
    """`trainer.fit` for 2 epochs (the triplet method, params.yaml's train settings), twice from
    scratch and once stopped after epoch 1 and resumed from its checkpoint: are the weights the
    same bytes? (`deterministic: true` promises so, on CUDA too.)"""
    train = dataclasses.replace(pipeline_params().train, epochs=2, resume_every_s=0)
    configure_determinism(train.deterministic, device)
    configure_tf32(train.precision, device)
    pool = _host_pixels(cfg)
    n_val = max(cfg.pool // 8, 2 * N_CLASSES)
    val = SplitData(pool.pixels[:n_val], pool.labels[:n_val])
    data = SplitData(pool.pixels[n_val:], pool.labels[n_val:])

    def run(resume_dir: Path | None):
        torch.manual_seed(0)
        backbone = _backbone(cfg)
        method = _method(cfg, "triplet", backbone.num_features)
        start = time.perf_counter()
        result = fit(method, backbone, data, val, train, seed=0, device=device, resume_dir=resume_dir,
                     context={"benchmark": "gpu_bench"})
        return result, time.perf_counter() - start

    first, seconds = run(None)
    second, _ = run(None)
    folder = work / "resume"
    save = trainer._save_resume

    def save_then_stop(where, state):
        save(where, state)
        if state["epoch"] == 1:
            raise _Stop

    trainer._save_resume = save_then_stop
    try:
        run(folder)
    except _Stop:
        pass
    finally:
        trainer._save_resume = save
    resumed, _ = run(folder)
    resume.clear_resume(folder)
    again, back = _same_weights(first, second), _same_weights(first, resumed)
    rows.add({"row": "fit", "epochs": 2, "train_images": len(data.labels), "deterministic": train.deterministic,
              "seconds": seconds, "rerun_identical": again, "resumed_identical": back},
             f"fit 2 epochs (triplet, {len(data.labels)} train / {n_val} val images, deterministic "
             f"{str(train.deterministic).lower()}): {seconds:.1f} s; rerun {'identical' if again else 'DIFFERS'}, "
             f"resumed after epoch 1 {'identical' if back else 'DIFFERS'} (weights byte for byte)")


def metric_rows(points: int, dim: int, classes: int, device: torch.device, rows: Rows) -> None:
    """K-means (params' n_init and seed) and retrieval (both views, params' k) on `points` of the
    benchmark's embeddings: on `device` (the torch K-means, torch's product) against the CPU
    (scikit-learn's K-means, numpy's product), values and seconds."""
    from benchmarks import bench_evaluate

    e = pipeline_params().evaluate
    x, y = bench_evaluate.blobs(points, dim=dim, n_classes=classes)
    timed = {}
    start = time.perf_counter()
    here = kmeans.kmeans_fit_predict(x, classes, n_init=e.kmeans_n_init, seed=e.kmeans_seed, device=device)
    _sync(device)
    timed["device"] = time.perf_counter() - start
    start = time.perf_counter()
    cpu = metrics.kmeans_clusters(x, classes, n_init=e.kmeans_n_init, seed=e.kmeans_seed)
    timed["cpu"] = time.perf_counter() - start
    acc_here, acc_cpu = metrics.matched_accuracy(y, here), metrics.matched_accuracy(y, cpu)
    within = abs(acc_here - acc_cpu) <= 0.005
    rows.add({"row": "kmeans", "points": points, "dim": dim, "classes": classes, "device": str(device),
              "kmeans_acc_device": acc_here, "kmeans_acc_cpu": acc_cpu, "within_0.005": within,
              "device_s": timed["device"], "cpu_s": timed["cpu"]},
             f"kmeans {points:,} x {dim}, {classes} classes, n_init {e.kmeans_n_init}: accuracy {acc_here:.4f} on "
             f"{device} ({timed['device']:.1f} s) vs {acc_cpu:.4f} scikit-learn on the CPU ({timed['cpu']:.1f} s): "
             f"{'within' if within else 'NOT within'} 0.005")
    rankings = ("euclidean", "euclidean_l2")
    start = time.perf_counter()
    here = metrics.retrieval_by_distance(x, y, knn_k=e.knn_k, distances=rankings, device=device, cpu_product="torch")
    _sync(device)
    timed["device"] = time.perf_counter() - start
    start = time.perf_counter()
    cpu = metrics.retrieval_by_distance(x, y, knn_k=e.knn_k, distances=rankings, device=torch.device("cpu"))
    timed["cpu"] = time.perf_counter() - start
    gap = max(abs(here[r][k] - cpu[r][k]) for r in rankings for k in here[r])
    rows.add({"row": "retrieval", "points": points, "dim": dim, "device": str(device), "device_scores": here,
              "cpu_scores": cpu, "largest_difference": gap, "device_s": timed["device"], "cpu_s": timed["cpu"]},
             f"retrieval {points:,} x {dim} (both views): P@1 {here['euclidean']['precision_at_1']:.4f}, MAP@R "
             f"{here['euclidean']['map_at_r']:.4f} on {device} ({timed['device']:.1f} s) vs the CPU "
             f"({timed['cpu']:.1f} s): largest difference {gap:.2g}")


def evaluate_row(points: int, dim: int, device: torch.device, rows: Rows, in_process: bool) -> None:
    """The evaluate stage's metrics (`bench_evaluate`: params' settings, both views) on `points` x
    `dim`, in a process of its own on a GPU (its own peak memory): search and K-means on `device`."""
    from benchmarks import bench_evaluate

    if in_process:
        with one_thread():
            row = bench_evaluate.evaluate(*bench_evaluate.blobs(points, dim=dim, n_classes=10), device)
        row["peak_rss_gib"] = bench_evaluate.peak_rss_gib()
    else:
        row = bench_evaluate.run_in_subprocess(points, device.type)
    gpu = f", GPU peak {row['gpu_peak_gib']:.1f} GiB" if "gpu_peak_gib" in row else ""
    rows.add({"row": "evaluate", **row},
             f"evaluate {row['points']:,} x {row['dim']}, {row['classes']} classes, on {device}: "
             f"{row['total_s']:.1f} s (search {row['retrieval_s']:.1f} s, K-means and the rest "
             f"{row['kmeans_s']:.1f} s), K-means accuracy {row['kmeans_acc']:.4f}, peak RSS "
             f"{row['peak_rss_gib']:.1f} GiB{gpu}")


def quick(cfg: Config, device: torch.device, rows: Rows, dry_run: bool) -> None:
    """The quick plan, cheapest rows first; see the module's docstring."""
    import tempfile

    training_rows(cfg, device, rows)
    embedding_rows(cfg, device, rows)
    with tempfile.TemporaryDirectory(prefix="gpu_bench_fit_") as work:
        fit_rows(cfg, device, rows, Path(work))
    points, dim, classes = (600, 64, 10) if dry_run else (20_000, 768, 100)
    metric_rows(points, dim, classes, device, rows)
    evaluate_row(*((2_000, 64) if dry_run else (1_000_000, 768)), device, rows, in_process=dry_run)


# --- the estimate and the table -----------------------------------------------------------------


def study_table_hours(triplet_ips: float, classification_ips: float, embed_ips: float,
                      runs: dict[str, tuple[int, int, int]] = STUDY_RUNS, epochs: int = EPOCHS) -> float:
    """Hours for the study's 8 runs x `epochs`: per epoch every training image once (three images per
    triplet) forward and backward, every validation image forward (taken as a third of a training
    step's cost), then the test set embedded once. Model time only: data loading not counted."""
    seconds = 0.0
    for train, val, test in runs.values():
        for ips, images_per_item in ((triplet_ips, 3), (classification_ips, 1)):
            per_epoch = images_per_item * (train + val / 3) / ips
            seconds += epochs * per_epoch + test / embed_ips
    return seconds / 3600


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        what = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    else:
        what = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return f"{what}; torch {torch.__version__}, timm {timm.__version__}, Python {platform.python_version()}"


def table(rows: list[Result]) -> str:
    base = {r.name.split(",")[0]: r.images_per_s for r in rows if "study's way" in r.name}
    header = ("measurement", "images/s", "vs study", "peak GiB", "warm-up s")
    body = []
    for r in rows:
        kind = r.name.split(",")[0]
        ratio = f"{r.images_per_s / base[kind]:.1f}x" if kind in base else ""
        peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "-"
        body.append((r.name, f"{r.images_per_s:.0f}", ratio, peak, f"{r.warmup_s:.1f}"))
    width = [max(len(x[i]) for x in [header, *body]) for i in range(5)]
    fmt = lambda row: " | ".join(c.ljust(width[0]) if i == 0 else c.rjust(width[i]) for i, c in enumerate(row))  # noqa: E731
    return "\n".join([fmt(header), "-+-".join("-" * w for w in width), *map(fmt, body)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="test_convnext at 32x32, a couple of steps")
    parser.add_argument("--dry-run", action="store_true", help="same as --device cpu --tiny (no GPU needed)")
    parser.add_argument("--compile", dest="compile", action="store_true", default=None,
                        help="also measure torch.compile (default: on CUDA)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-evaluate", dest="evaluate", action="store_false",
                        help="without the evaluate rows (100,000 and 1,000,000 points; several minutes)")
    parser.add_argument("--quick", action="store_true",
                        help="the plan that fits one 10-minute call on an H100-class GPU (benchmarks/README.md)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for rows.jsonl and rows.txt, each row written when measured "
                             "(default: $OUT, else build/gpu-bench)")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.tiny = "cpu", True
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            "benchmarks/gpu.sh needs a CUDA GPU, and torch.cuda.is_available() is False on this machine "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a GPU machine, or "
            "check it on the CPU with `benchmarks/gpu.sh --dry-run`."
        )
    # Read when cuBLAS starts: set before any CUDA work, as the train stage does with `deterministic: true`.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    cfg = TINY if args.tiny else QUICK if args.quick else FULL
    device = torch.device(args.device)
    compile_ = args.compile if args.compile is not None else device.type == "cuda"
    start = time.perf_counter()
    rows = Rows(output_folder(args.out))
    print(f"device: {machine(device)}", flush=True)
    if args.quick:
        print(f"quick plan: {cfg.model} (random weights) at {cfg.size}x{cfg.size}, {cfg.warmup} warm-up + "
              f"{cfg.steps} timed steps per training row; rows written to {rows.folder}", flush=True)
        rows.add({"row": "machine", "device": machine(device), "plan": "quick", "tiny": args.tiny},
                 f"machine: {machine(device)}")
        with one_thread(device.type == "cpu"):  # the tiny sizes: threads on a busy machine would be all it measured
            quick(cfg, device, rows, args.tiny)
        rows.add({"row": "total", "seconds": time.perf_counter() - start},
                 f"whole benchmark: {time.perf_counter() - start:.0f} s")
        return
    print(f"model {cfg.model} (random weights) at {cfg.size}x{cfg.size}; {cfg.warmup} warm-up + {cfg.steps} "
          f"timed steps; triplet batch {cfg.triplet_batch}, classification batch {cfg.classification_batch}",
          flush=True)

    plan = [
        ("triplet/study", lambda: study_triplet(cfg, device)),
        ("triplet/ours", lambda: ours_training(cfg, device, "triplet", False)),
        ("triplet/compiled", lambda: ours_training(cfg, device, "triplet", True)),
        ("classification/study", lambda: study_classification(cfg, device)),
        ("classification/ours", lambda: ours_training(cfg, device, "classification", False)),
        ("classification/compiled", lambda: ours_training(cfg, device, "classification", True)),
        ("embedding/study", lambda: study_embedding(cfg, device)),
        ("embedding/ours", lambda: ours_embedding(cfg, device)),
    ]
    results: dict[str, Result] = {}
    for key, measure in plan:
        if key.endswith("/compiled") and not compile_:
            continue
        results[key] = measure()
        r = results[key]
        rows.add({"row": key, "name": r.name, "images_per_s": r.images_per_s, "peak_gib": r.peak_gib,
                  "warmup_s": r.warmup_s}, f"{r.name}: {r.images_per_s:.0f} images/s")

    ddp, ddp_line = ddp_rows(cfg, device, args.dry_run)
    for r in ddp:
        print(f"  {r.name}: {r.images_per_s:.0f} images/s", flush=True)
    print(f"  {ddp_line}", flush=True)
    sizes = EVALUATE_POINTS["tiny" if args.tiny else "full"]
    evaluated = evaluate_rows(sizes, device, in_process=args.dry_run) if args.evaluate else []

    ips = {key: r.images_per_s for key, r in results.items()}
    estimates = {
        "study's way": study_table_hours(ips["triplet/study"], ips["classification/study"], ips["embedding/study"]),
        "ours": study_table_hours(ips["triplet/ours"], ips["classification/ours"], ips["embedding/ours"]),
    }
    if compile_:
        estimates["ours + torch.compile"] = study_table_hours(
            ips["triplet/compiled"], ips["classification/compiled"], ips["embedding/ours"]
        )
    print()
    print(table([*results.values(), *ddp]))
    print(ddp_line)
    if evaluated:
        print()
        print(evaluate_table(evaluated))
    print()
    print(f"Estimated model time for the study's table (8 runs x {EPOCHS} epochs, {cfg.model} at {cfg.size}px; "
          "train/val/test sizes per run approximated from SEED_PROTOCOL.md, see STUDY_RUNS):")
    baseline = estimates["study's way"]
    for name, hours in estimates.items():
        faster = f" (speed-up {baseline / hours:.1f}x)" if name != "study's way" else ""
        print(f"  {name}: {hours:.2f} h{faster}")
    print(f"whole benchmark: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
