"""The exceptions that end a stage with one line (an error a user can cause, a stop that kept its
work), and the wrapper of a stage's `main` (how each ends: `stages.lib.stopping`)."""

from __future__ import annotations

import logging
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
    """Decorate a stage's `main`: set up logging; a PipelineError, Ctrl-C or SIGTERM ends it with one
    line and the exit code of `stages.lib.stopping.ENDINGS` (1, 130, 143)."""
    from stages.lib.stopping import one_process  # stopping builds on this module's exceptions

    return one_process(func)
