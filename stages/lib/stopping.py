"""How a stage ends when it does not finish: the one table from what happened to the exit code and
the line printed, used by the one-process path (`stage_main`), by each training process of a
several-process run (a rank) and by the launcher that started them.

| what happened                                | exit        | the line (one, on stderr)                    |
|----------------------------------------------|-------------|----------------------------------------------|
| Ctrl-C (SIGINT)                              | 130         | `interrupted: <what was kept>`               |
| SIGTERM (a scheduler, `kill`)                | 143         | `terminated: <what was kept>`                |
| an error the user can fix (`PipelineError`)  | 1           | `error: <what is wrong and what to do>`      |
| a lost training process (killed, or it       | 1           | `error: training process rank r of N ...`    |
| stopped answering for `COLLECTIVE_TIMEOUT`)  |             |                                              |
| a bug (any other exception)                  | 1           | the traceback, as Python prints it           |

Another signal that stops the launcher (SIGHUP, SIGQUIT) ends it as Ctrl-C, with 128 + its number.
A rank prints none of these: it writes what happened to torchrun's error file (`kind`: error,
stopped, lost, bug) and exits (143 when stopped, else 1); the launcher reads every rank's file and
prints one line for the whole run (`root_cause`). The trainer keeps every finished epoch before it
stops (`stages.lib.trainer`); what it kept, and the command that continues, is said here
(`after_training`, `rerun`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from stages.lib.errors import Interrupted, PipelineError, setup_logging

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class Ending:
    """How a process ends for one kind of event: its exit code, and the word its one line starts
    with (None: no line of ours; a rank's launcher speaks for it, or Python prints a traceback)."""

    code: int
    word: str | None


ENDINGS: dict[str, Ending] = {
    "interrupted": Ending(128 + signal.SIGINT, "interrupted"),  # Ctrl-C
    "terminated": Ending(128 + signal.SIGTERM, "terminated"),  # SIGTERM
    "error": Ending(1, "error"),  # a PipelineError
    "lost": Ending(1, "error"),  # lost contact with another training process
    "bug": Ending(1, None),  # anything else: the traceback is kept
    "stopped": Ending(128 + signal.SIGTERM, None),  # a rank stopped by its launcher (after Ctrl-C, or a failure)
}
NOT_KEPT = "this stage's outputs are incomplete and were not kept"
COLLECTIVE_TIMEOUT_S = 600  # a rank waiting this long for the others gives up (docs/scaling.md)


def _signal_ending(signum: int) -> Ending:
    """The ending for a signal: SIGTERM is `terminated`; Ctrl-C, and any other signal that stops a
    launcher (SIGHUP, SIGQUIT), `interrupted`, exiting 128 + its number."""
    name = "terminated" if signum == signal.SIGTERM else "interrupted"
    return dataclasses.replace(ENDINGS[name], code=128 + int(signum))


def _end(ending: Ending, said: str) -> None:
    print(f"{ending.word}: {' '.join(said.splitlines())}", file=sys.stderr)  # one line, always
    raise SystemExit(ending.code) from None


def one_process(func: F) -> F:
    """`stage_main`: set up logging; a PipelineError, Ctrl-C or SIGTERM ends the stage with its
    line and exit code from `ENDINGS` (SIGTERM, from a scheduler or `kill`, stops as Ctrl-C does)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        setup_logging()
        received = {"signal": signal.SIGINT}

        def terminate(signum: int, frame: object) -> None:
            received["signal"] = signal.Signals(signum)
            raise KeyboardInterrupt

        main_thread = threading.current_thread() is threading.main_thread()  # signals reach only that thread
        previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            _end(ENDINGS["error"], str(exc))
        except KeyboardInterrupt as exc:
            said = str(exc) if isinstance(exc, Interrupted) else NOT_KEPT
            signum = getattr(exc, "signal", None) or received["signal"]  # a handler of its own may have taken it
            _end(_signal_ending(signum), said)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return cast(F, wrapper)


# --- what the trainer says it kept ----------------------------------------------------------


def rerun() -> str:
    """The command that continues this run, as the user started it: under `dvc exp run` (DVC puts
    DVC_EXP_NAME in the environment of the stages it runs for an experiment) the same command again,
    else `dvc repro`."""
    return "running the same `dvc exp run` again" if os.environ.get("DVC_EXP_NAME") else "the next `dvc repro`"


def after_training(exc: BaseException, saved: int | None, checkpoint: Path | None) -> BaseException:
    """What the trainer raises once it has written the last finished epoch after `exc` stopped it
    (`saved`: the epoch the resume checkpoint `checkpoint` holds, None when none): a PipelineError
    or Ctrl-C/SIGTERM with what was kept and what continues; anything else (a bug, a lost process)
    as it is (`exc` itself: re-raise it)."""
    if isinstance(exc, PipelineError):
        kept = f"; epochs 1-{saved} and their best weights are kept in {checkpoint}" if saved else ""
        return PipelineError(f"{exc}{kept}")
    if not isinstance(exc, KeyboardInterrupt) or checkpoint is None:
        return exc
    if saved:
        return Interrupted(f"epochs 1-{saved} are saved in {checkpoint}; {rerun()} resumes from epoch {saved + 1}")
    return Interrupted(f"no epoch had finished; {rerun()} starts training from epoch 1")


def launch_lines(resume_dir: Path | None) -> tuple[str, str]:
    """(what to do after a failed several-process run, what a stopped one kept) for the launcher."""
    if resume_dir is None:
        return "re-run to train again", "nothing was kept"
    return (f"re-run to continue from the last epoch saved in {resume_dir}",
            f"every finished epoch is kept in {resume_dir}; {rerun()} resumes after the last")


# --- a rank ---------------------------------------------------------------------------------


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT in a rank (from the launcher: the run was stopped, or another rank failed):
    the rank stops as one process does on Ctrl-C (the trainer keeps the last finished epoch)."""


def stop_on_signals() -> None:
    """In a rank: SIGTERM and SIGINT raise `Stopped`, once; and they run what `keep` holds at once,
    from a thread of its own, even while the main thread is blocked in a collective (a Python
    handler runs only when the main thread returns to Python: a rank waiting on a peer that will
    never answer would be killed by its launcher, 30 s after its SIGTERM, before it saved)."""
    signal.signal(signal.SIGTERM, _raise_stopped)
    signal.signal(signal.SIGINT, _raise_stopped)
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)  # a signal's number is written there at once
    threading.Thread(target=_keep_on_signal, args=(read,), name="keep-on-stop", daemon=True).start()


class _Keeper:
    """What would be lost if the process stopped now (the last finished epoch, when it is only in
    memory) and how to write it; written once, by whichever comes first: a signal's thread or the
    main thread's stop path."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: tuple[Any, Callable[[Any], None]] | None = None
        self._written: Any = None

    def hold(self, state: Any, write: Callable[[Any], None]) -> None:
        with self._lock:
            self._held = None if state is None else (state, write)

    def write(self, state: Any = None, write: Callable[[Any], None] | None = None) -> None:
        with self._lock:  # a second caller waits until the first has written
            held, self._held = self._held, None
            if state is None:  # a signal's thread: what is held
                if held is not None:
                    held[1](held[0])
                    self._written = held[0]
                return
            if state is not self._written:
                assert write is not None
                write(state)
            self._written = None


_KEEPER = _Keeper()


def keep(state: Any, write: Callable[[Any], None]) -> None:
    """Hold `state` (what would be lost if the process stopped now; None: nothing) and `write`,
    for a signal in a rank (`stop_on_signals`) and for `kept_now`."""
    _KEEPER.hold(state, write)


def kept_now(state: Any, write: Callable[[Any], None]) -> None:
    """On the stop path: `write(state)`, unless a signal's thread has already written this very
    `state`; it is on disk when this returns, and nothing is held any more."""
    _KEEPER.write(state, write)


def _keep_on_signal(read: int) -> None:
    while os.read(read, 1):
        _KEEPER.write()


def _raise_stopped(signum: int, frame: Any) -> None:
    """Stop once: Ctrl-C reaches a rank twice (from the terminal, then passed on by the launcher),
    and a second interruption must not cut short the saving of the last epoch."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


@contextlib.contextmanager
def reporting_to_launcher(launched: bool) -> Iterator[None]:
    """In a rank (`launched`): what ended it is written to torchrun's error file instead of stderr
    (`_kind`), and the launcher prints one line for the whole run; the exit code is `ENDINGS`'s.
    A bug keeps its traceback. Outside torchrun, nothing."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not launched or not error_file:
        yield
        return
    try:
        yield
    except PipelineError as exc:
        _record(error_file, "error", " ".join(str(exc).splitlines()))
        raise SystemExit(ENDINGS["error"].code) from None
    except KeyboardInterrupt as exc:  # stopped (the trainer kept what it could): not a cause
        _record(error_file, "stopped", " ".join(str(exc).splitlines()))
        raise SystemExit(ENDINGS["stopped"].code) from None
    except Exception as exc:
        kind, message = _kind(exc)
        _record(error_file, kind, message)
        if kind == "bug":
            raise
        raise SystemExit(ENDINGS[kind].code) from None
    finally:  # leaving (done, or failed and reported): the launcher's SIGTERM now ends the process quietly
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# What a rank that lost its peer sees: gloo's and NCCL's words for a connection that another process
# closed (it died) or that stayed silent past the timeout, and torch's error types for a lost store.
_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Timed out", "timed out",
              "ncclRemoteError", "remote process exit", "Socket Timeout")
# An error of the collective library itself, with no sign of a lost peer: its set-up (every rank meets it).
_LIBRARY = ("NCCL", "nccl", "gloo", "Gloo")


def _kind(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of an exception in a rank: `lost` (another process died or stopped answering),
    `error` (the collective library failed with no peer lost: its set-up, the same on every rank),
    else `bug`."""
    import torch.distributed as dist  # only a rank, which has torch loaded, gets here; `--help` stays light

    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    network = (getattr(dist, "DistNetworkError", ()), getattr(dist, "DistStoreError", ()))
    collective = isinstance(exc, (RuntimeError, dist.DistError))
    if isinstance(exc, network) or (collective and any(m in text for m in _PEER_LOST)):
        return "lost", f"lost contact with another training process ({first})"
    if collective and (isinstance(exc, dist.DistError) or any(m in text for m in _LIBRARY)):
        return "error", (f"the training processes could not communicate ({first}); this is their set-up, not a "
                         "lost process: check that each process has a GPU of its own and that NCCL works on this "
                         "machine (NCCL_DEBUG=WARN says why), or set train.device: cpu")
    return "bug", f"{type(exc).__name__}: {exc}"


def _record(path: str, kind: str, message: str) -> None:
    """torchrun's error-file format with a plain message (read back as `ProcessFailure.message`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"message": message, "timestamp": int(time.time()), "kind": kind}))


# --- the launcher ---------------------------------------------------------------------------


def launcher_stopped(signum: int, processes: int, stopped: str) -> Interrupted:
    """The launcher took Ctrl-C or SIGTERM (and passed it to the ranks): the stage's line, `stopped`
    saying what was kept; `stage_main` names the signal."""
    error = Interrupted(f"its {processes} training processes stopped" + (f"; {stopped}" if stopped else ""))
    error.signal = signal.Signals(signum)
    return error


def root_cause(exc: Any, processes: int, hint: str) -> str:
    """One line for a failed run (torchrun's ChildFailedError): a rank killed by a signal (other than
    the launcher's own SIGTERM) comes first, then a rank's own error, then anything else; a lost peer
    is a consequence. `hint` (what to do) is added where a rank was lost."""
    failures = sorted(exc.failures.items())
    order = {"signal": 0, "error": 1, "bug": 2, "lost": 3}

    def kind(failure: Any) -> str:
        if failure.exitcode < 0:
            return "stopped" if failure.signal_name() in ("SIGTERM", "SIGINT") else "signal"
        data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
        return str(data.get("kind", "bug"))

    ranked = sorted(failures, key=lambda item: (order.get(kind(item[1]), 4), item[0]))
    rank, failure = ranked[0]
    what = kind(failure)
    then = f"; {hint}" if hint else ""
    if what == "signal":
        return (f"training process rank {rank} of {processes} (pid {failure.pid}) was killed by "
                f"{failure.signal_name()}; the other processes were stopped and no model was written{then}")
    message = str(failure.message) if failure.message else f"exit code {failure.exitcode}"
    if what == "error":
        return message
    if what == "lost":
        return f"training process rank {rank} of {processes}: {message}{then}"
    if what == "stopped":  # only stopped ranks: one was stopped from outside the launcher
        return f"training process rank {rank} of {processes} was stopped ({message}){then}"
    return f"training process rank {rank} of {processes} failed: {message} (its traceback is above){then}"
