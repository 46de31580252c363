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
    """A temporary name beside ``path`` to write to, made durable and renamed over ``path`` when the
    block succeeds: the one way the suite writes a file (JSON, CSV, tables, figures, checkpoints, models).

    Readers (and a crash or power loss at any moment) see the old file or the new one, never half of
    one: the temporary is fsynced before the rename and the folder after it. The name holds the pid,
    so two processes writing the same file do not share a temporary; it ends in ``.partial``, so
    writers that guess a format from the suffix must be given the format. On an error the temporary
    is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        _fsync(partial, os.O_RDONLY)
        os.replace(partial, path)
        _fsync(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    finally:
        partial.unlink(missing_ok=True)


def _fsync(path: Path, flags: int) -> None:
    descriptor = os.open(path, flags)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as partial:
        partial.write_text(json.dumps(payload, indent=2, default=str))


def write_csv(path: str | os.PathLike, frame) -> None:
    """A pandas DataFrame as CSV (no index), atomically."""
    with atomic_path(path) as partial:
        frame.to_csv(partial, index=False)
