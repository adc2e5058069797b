"""Where raybake keeps its own state on the host."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """RAYBAKE_CACHE_DIR, else $XDG_CACHE_HOME/raybake, else ~/.cache/raybake."""
    explicit = os.environ.get("RAYBAKE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "raybake"
