"""One run on several processes, its life: PyTorch's elastic launcher (torchrun) starts the ranks,
each joins the process group and leaves it.

With `train.processes: N > 1` the train stage starts itself N times under `torch.distributed.run`
(what `torchrun --standalone --nproc-per-node=N` does) and each process, a rank, joins the group
(NCCL on CUDA, gloo on the CPU; `device.process_group_backend`) with a timeout: a rank that waits
longer than `stopping.COLLECTIVE_TIMEOUT_S` for the others in one collective gives up, so a lost
or hung peer cannot keep the run waiting for ever. What the ranks compute together is
`stages.lib.distributed`; how a failed or stopped run ends (one line, the exit code) is
`stages.lib.stopping`. A rank dies with its launcher, so a killed stage leaves no orphans that
keep writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import logging
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from stages.lib import stopping
from stages.lib.device import process_group_backend
from stages.lib.distributed import World, world
from stages.lib.errors import PipelineError


def launched() -> bool:
    """Whether this process is a rank started by torchrun (the stage's own launch or the user's)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and "WORLD_SIZE" in os.environ


def launched_size() -> int:
    """The number of ranks torchrun started, on every machine (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """This rank's index on its machine (its GPU), as torchrun set it."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_size() -> int:
    """The number of ranks torchrun started on this machine (`--nproc-per-node`; 1 outside torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def launch(module: str, argv: list[str], processes: int, *, hint: str = "", stopped: str = "") -> None:
    """Run `python -m module argv` as `processes` ranks on this machine under PyTorch's elastic
    launcher (torchrun --standalone, no restarts); return when all have finished.

    Each rank gets OMP_NUM_THREADS = the stage's threads (OMP_NUM_THREADS, else the cores) divided
    by `processes`, and this `stages` package on its path. A failed run raises one `PipelineError`
    naming the root cause (`stopping.root_cause`), with `hint` added where a rank was lost. Ctrl-C
    or SIGTERM (the launcher passes it to the ranks, which stop as one process does) raises
    `Interrupted` saying `stopped` (what was kept).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = os.environ.get("OMP_NUM_THREADS", "")
    budget = int(threads) if threads.isdigit() and int(threads) > 0 else cores  # the stage's threads, shared out
    package_root = str(Path(__file__).resolve().parents[2])
    args = parse_args(["--standalone", f"--nproc-per-node={processes}", "--max-restarts=0", "--module", module, *argv])
    env = {
        "OMP_NUM_THREADS": str(max(1, budget // processes)),
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p),
    }
    with _environment(env), _quiet_elastic_logs():
        try:
            run(args)
        except ChildFailedError as exc:
            raise PipelineError(stopping.root_cause(exc, processes, hint)) from None
        except SignalException as exc:  # the launcher's handler took it; stage_main names it
            raise stopping.launcher_stopped(exc.sigval, processes, stopped) from None


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_elastic_logs() -> Iterator[None]:
    """The launcher's own log records (rendezvous, "closing signal", its failure table) off: a
    failure is reported once, as the stage's one error line."""
    loggers = [logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
               if name.startswith("torch.distributed")]
    loggers.append(logging.getLogger("torch.distributed"))
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# --- a rank ---------------------------------------------------------------------------------


def init(device: torch.device, timeout_s: float = stopping.COLLECTIVE_TIMEOUT_S) -> World:
    """Join the launcher's process group on `device` (a rank's entry; `device` is already this
    process's current GPU, `pick_device`). A collective that waits `timeout_s` for the other ranks
    fails (gloo raises; NCCL's watchdog aborts), so a lost or hung peer ends the run instead of
    blocking it. Every rank dies with its launcher and unwinds (atomic writes clean up, the trainer
    keeps the last finished epoch) on SIGTERM or SIGINT (`stopping.stop_on_signals`)."""
    _die_with_parent()
    stopping.stop_on_signals()
    dist.init_process_group(process_group_backend(device), timeout=datetime.timedelta(seconds=timeout_s))
    w = world()
    speak_for_the_run(w.rank)
    return w


# An op without a deterministic kernel warns (`configure_determinism`) on whichever rank runs it.
NONDETERMINISTIC = r".*does not have a deterministic implementation"


def speak_for_the_run(rank: int) -> None:
    """Rank 0 speaks for the run: other ranks log warnings only and show no Python warning, except
    that an op has no deterministic kernel (it breaks byte-identical reruns, whichever rank meets it)."""
    if rank == 0:
        return
    logging.getLogger().setLevel(logging.WARNING)
    warnings.simplefilter("ignore")
    warnings.filterwarnings("default", message=NONDETERMINISTIC)


def finish() -> None:
    """Leave the process group (end of a rank)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its launcher dies (PR_SET_PDEATHSIG), so a killed stage
    leaves no ranks training on as orphans; elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher is already gone
        os._exit(1)
