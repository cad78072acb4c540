"""One exception type for errors a user can cause, and the wrapper that prints it plainly."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


class PipelineError(Exception):
    """A problem the user can fix (bad params, missing or corrupt data, no network, no GPU).

    The message says what is wrong and what to do; it is printed without a traceback.
    """


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
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            print("error: " + " ".join(str(exc).splitlines()), file=sys.stderr)  # one line, always
            raise SystemExit(1) from None
        except KeyboardInterrupt:
            print("error: interrupted; outputs of this stage are incomplete and were not kept", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
