"""Where the suite keeps what it generates or caches."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MEDRECONTRAST_CACHE"


def cache_dir() -> Path:
    """``$MEDRECONTRAST_CACHE`` or ``~/.cache/medrecontrast`` (synthetic tasks, decoded images)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "medrecontrast").expanduser()
