"""Reading a file an earlier stage wrote: a CSV table or a JSON document, with the one-line error
that names the stage to run when it is missing or unreadable (one place for that wording)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stages.lib.errors import PipelineError


def read_csv(path: Path, made_by: str, **options: Any):
    """`pandas.read_csv(path, **options)`; missing: "run the <made_by> stage first", unreadable
    (a parse error, no data, not UTF-8, a column asked for in `usecols` missing): "re-run" it."""
    import pandas as pd

    try:
        return pd.read_csv(path, **options)
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the {made_by} stage first (dvc repro)") from None
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); re-run the {made_by} stage") from None


def read_json(path: Path, made_by: str) -> Any:
    """The JSON document at `path`, with the same errors as `read_csv`."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run the {made_by} stage first (dvc repro)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path} is corrupt ({exc}); re-run the {made_by} stage") from None
