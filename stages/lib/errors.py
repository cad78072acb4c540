"""One exception type for errors a user can cause, and the wrapper that prints it plainly."""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


class PipelineError(Exception):
    """A problem the user can fix (bad params, missing or corrupt data, no network, no GPU).

    The message says what is wrong and what to do; it is printed without a traceback.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, caught where the work so far could be kept; the message says what was
    kept and what the next run does (printed as one line). `signal`, where set, is the signal
    (when a handler other than `stage_main`'s received it)."""

    signal: int | None = None


def setup_logging(level: int = logging.INFO) -> None:
    """Log to stderr with a short prefix; idempotent."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    root.setLevel(level)


def stage_main(func: F) -> F:
    """Decorate a stage's `main`: set up logging, print a PipelineError as one line, exit 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        setup_logging()
        received = {"signal": signal.SIGINT}

        def terminate(signum: int, frame: object) -> None:  # SIGTERM (a scheduler, `kill`) stops as Ctrl-C does
            received["signal"] = signal.Signals(signum)
            raise KeyboardInterrupt

        main_thread = threading.current_thread() is threading.main_thread()  # signals reach only that thread
        previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            print("error: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # one line, always
            raise SystemExit(1) from None
        except KeyboardInterrupt as exc:
            said = str(exc) if isinstance(exc, Interrupted) else "this stage's outputs are incomplete and were not kept"
            signum = getattr(exc, "signal", None) or received["signal"]  # a handler of its own may have taken it
            name = "terminated" if signum == signal.SIGTERM else "interrupted"
            print(f"{name}: {said}", file=sys.stderr)
            raise SystemExit(128 + signum) from None
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]
