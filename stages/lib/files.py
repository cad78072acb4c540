"""Which files in a dataset's folder or archive count: image suffixes, and the hidden files and
archive or OS debris (`.x`, macOS's `._x.jpg` and `__MACOSX/`, `Thumbs.db`) that never do.

Standard library only, so that registering datasets stays cheap.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})
DEBRIS = frozenset({"__MACOSX", "Thumbs.db", "ehthumbs.db", "desktop.ini"})  # archive and OS leftovers


def hidden(name: str) -> bool:
    """Whether a file or folder name is hidden or debris."""
    return name.startswith(".") or name in DEBRIS


def visible(path: Path, root: Path) -> bool:
    """Whether no part of `path` below `root` is hidden or debris (`__MACOSX/x.jpg` is not visible)."""
    return not any(hidden(part) for part in path.relative_to(root).parts)
