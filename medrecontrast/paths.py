"""Where the suite keeps what it generates or caches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CACHE_ENV = "MEDRECONTRAST_CACHE"


def cache_dir() -> Path:
    """``$MEDRECONTRAST_CACHE`` or ``~/.cache/medrecontrast`` (synthetic tasks, decoded images)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "medrecontrast").expanduser()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed over ``path`` when the block succeeds.

    Readers (and a crash at any moment) see the old file or the new one, never half of one; the
    name holds the pid, so two processes writing the same file do not share a temporary. It ends in
    ``.partial``, so writers that guess a format from the suffix must be given the format.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(payload, indent=2, default=str))
