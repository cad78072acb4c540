"""Training runs for the distributed tests: the same tiny fits, in one process or as one rank of
a gloo group started by `torch.multiprocessing.spawn` (importable by the spawned processes)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from stages.lib import distributed, launcher, stopping, trainer
from stages.lib.errors import Interrupted
from stages.lib.losses import training
from stages.lib.models import build_backbone
from stages.lib.params import params_from_dict
from stages.lib.trainer import RESUME_FILE, Model, SplitData, Step, _run_batches, fit
from tests.helpers import tiny_params

# 21 training images: classification batches of 8, 8, 5 (the last splits 2 / 3 over two ranks);
# triplet batches of 4 triplets and a last one of 1 (one rank holds it, the other a stand-in).
N_TRAIN, N_VAL, N_CLASSES = 21, 10, 4
METHOD_PARAMS = {
    "classification": {"batch_size": 8},
    "triplet": {"batch_size": 4, "margin": 5.0},  # wide: every triplet has a loss and a gradient
    "supcon": {"batch_size": 8, "images_per_class": 2, "temperature": 0.1},
}


def data(seed: int = 0) -> tuple[SplitData, SplitData]:
    rng = np.random.default_rng(seed)

    def make(n: int) -> SplitData:
        labels = np.arange(n, dtype=np.int64) % N_CLASSES
        pixels = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        pixels[..., 0] = (labels * 60)[:, None, None]  # a class signal, so the losses move
        return SplitData(pixels, labels)

    return make(N_TRAIN), make(N_VAL)


def train_params(epochs: int = 2, **changes):
    raw = tiny_params()
    raw["train"].update(epochs=epochs, cosine_t_max=epochs, lr=1e-3, **changes)
    return params_from_dict(raw).train


CPU = torch.device("cpu")


def method_and_backbone(name: str):
    torch.manual_seed(0)
    backbone = build_backbone("test_convnext")
    cls = training(name)
    return cls(cls.params_type(**METHOD_PARAMS[name]), N_CLASSES, backbone.num_features), backbone


class GradientRecorder:
    """Stands in for the optimiser: keeps every step's gradients (by weight name) and changes no weight."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.named = list(model.named_parameters())
        self.steps: list[dict[str, torch.Tensor]] = []

    def zero_grad(self, set_to_none: bool = True) -> None:
        for _, p in self.named:
            p.grad = None

    def step(self) -> None:
        self.steps.append({name: p.grad.detach().clone() for name, p in self.named})


def gradients(name: str) -> dict:
    """One training pass of method `name` at fixed weights, as the trainer runs it (`_run_batches`,
    DDP with several ranks): every step's gradients (by weight name) and the pass's reported loss."""
    method, backbone = method_and_backbone(name)
    model = Model(backbone, method.head())
    net = distributed.wrap(model, CPU) if distributed.world().size > 1 else model.backbone
    train, _ = data()
    rng = np.random.default_rng([0, 1])
    recorder = GradientRecorder(model)
    model.train()
    step = Step(model, method, CPU, forward=net, hflip=0.5)
    loss = _run_batches(step, train, method.split_batches(train, rng), epoch=1, optimizer=recorder, flip_rng=rng)
    return {"steps": recorder.steps, "loss": loss}


def run(name: str, epochs: int = 2, resume_dir: Path | None = None, **changes) -> dict:
    """`fit` of method `name` (in whatever process group is current): the best weights by name, the
    best epoch and the per-epoch history. `resume_dir`, `changes`: as `fit`, train params."""
    method, backbone = method_and_backbone(name)
    train, val = data()
    result = fit(method, backbone, train, val, train_params(epochs, **changes), seed=0, device=CPU,
                 resume_dir=resume_dir)
    weights = {f"backbone.{k}": v for k, v in result.backbone_state.items()}
    weights.update({f"head.{k}": v for k, v in (result.head_state or {}).items()})
    return {"weights": weights, "best_epoch": result.best_epoch, "history": result.history}


RESUMED = "classification"  # the method stopped and resumed (it has a head: its state is restored too)


def stopped_and_resumed(name: str, folder: Path) -> dict:
    """`run(name)` with a resume folder, stopped as by Ctrl-C at the start of epoch 2 on every
    process (epoch 1 is then in memory only: a checkpoint is due once an hour), then run again:
    what the stop said, the epoch the checkpoint holds, and the resumed run."""
    real = trainer._run_batches

    def stop(*args, **kwargs):
        if kwargs["epoch"] == 2 and kwargs["optimizer"] is not None:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    trainer._run_batches = stop
    try:
        run(name, resume_dir=folder, resume_every_s=3600)
        said = "not stopped"
    except Interrupted as exc:
        said = str(exc)
    finally:
        trainer._run_batches = real
    saved = torch.load(folder / RESUME_FILE, weights_only=True)["epoch"] if (folder / RESUME_FILE).exists() else None
    return {"said": said, "saved_epoch": saved, "resumed": run(name, resume_dir=folder, resume_every_s=3600)}


def rank(rank: int, world_size: int, folder: str, names: list[str]) -> None:
    """One rank of the gloo group: train every method in `names`, and `RESUMED` stopped and
    resumed; rank 0 saves the results."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world_size)
    try:
        results = {name: {"fit": run(name), "gradients": gradients(name)} for name in names}
        results["stopped"] = stopped_and_resumed(RESUMED, Path(folder) / "resume")
        if rank == 0:
            torch.save(results, Path(folder) / "results.pt")
    finally:
        dist.destroy_process_group()


def hung(rank: int, world_size: int, folder: str, port: int, timeout_s: float) -> None:
    """One rank of a group joined as the stage's ranks join (`launcher.init`, with `timeout_s`):
    a classification fit with a resume folder (a checkpoint due once an hour), in which rank 1 stops
    taking part at the start of epoch 2. Rank 0 writes `folder`/epoch2 when it starts epoch 2, and
    what ended its fit, and how long it waited from then, to `folder`/rank0.json."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size))
    launcher.init(CPU, timeout_s=timeout_s)
    real, started = trainer._run_batches, {}

    def stall(*args, **kwargs):
        if kwargs["epoch"] == 2 and kwargs["optimizer"] is not None:
            started.setdefault("epoch 2", time.monotonic())
            if rank == 0:
                (Path(folder) / "epoch2").touch()
            if rank == 1:
                time.sleep(3600)  # hung: alive, its connections open, taking no part
        return real(*args, **kwargs)

    trainer._run_batches = stall
    try:
        run("classification", epochs=3, resume_dir=Path(folder) / "resume", resume_every_s=3600)
        said = {"kind": "finished", "message": ""}
    except BaseException as exc:  # noqa: BLE001 (what ended the fit is the result)
        kind, message = stopping._kind(exc)
        said = {"kind": kind, "message": message}
    said["waited_s"] = time.monotonic() - started.get("epoch 2", time.monotonic())
    if rank == 0:
        (Path(folder) / "rank0.json").write_text(json.dumps(said))
    os._exit(0)  # no goodbye to a hung peer
