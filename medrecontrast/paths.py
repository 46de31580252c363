"""Where the suite keeps what it generates or caches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medrecontrast.errors import UserInputError

CACHE_ENV = "MEDRECONTRAST_CACHE"


def cache_dir() -> Path:
    """``$MEDRECONTRAST_CACHE`` or ``~/.cache/medrecontrast`` (synthetic tasks, decoded images); a path that exists
    and is not a folder is a user error naming where it came from (it was a traceback from deep in a run)."""
    given = os.environ.get(CACHE_ENV)
    folder = Path(given or Path.home() / ".cache" / "medrecontrast").expanduser()
    if folder.exists() and not folder.is_dir():
        source = f"${CACHE_ENV}" if given else "the default cache folder"
        raise UserInputError(
            f"the cache folder {folder} ({source}) is a file, not a folder; set {CACHE_ENV} to a folder (it is "
            "created if missing) or move the file."
        )
    return folder


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


def remove_stale_partials(folder: str | os.PathLike, including_own: bool = False) -> list[Path]:
    """Delete the ``.NAME.PID.partial`` temporaries in ``folder`` that no live process is writing (a
    process killed mid-write, or a write that failed on a full disk, leaves them); returns them."""
    removed = []
    for partial in Path(folder).glob(".*.partial"):
        try:
            pid = int(partial.name.rsplit(".", 2)[-2])
        except ValueError:
            continue
        if pid == os.getpid() and not including_own:
            continue
        if pid != os.getpid() and _alive(pid):
            continue
        partial.unlink(missing_ok=True)
        removed.append(partial)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def require_writable_folder(path: str | os.PathLike, option: str) -> None:
    """``path`` is a folder, or can be created, and this process may write there (checked before any
    work starts, so an unwritable ``--out``/``--report`` is a one-line error, not a crash at the end)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{option} {path} is a file, not a folder.")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(f"{option} {path}: cannot write in {existing} (permission denied).")


REPORT_MARKER = ".medrecontrast-report"


def claim_report_folder(folder: str | os.PathLike, write: bool = True, sweep: str | os.PathLike | None = None) -> Path:
    """A report folder the suite may write into: new, empty, or one it wrote before (it holds
    :data:`REPORT_MARKER`); anything else is refused, as a user's own folder must never be
    overwritten. With ``write`` the folder is created and marked.

    With ``sweep`` (the sweep folder the report is of), the folder must also be this sweep's: the marker
    records the sweep's id (``sweep.json``) and path, and a report made for another sweep that still exists
    is refused — a copied sweep (same id, another path) must never rewrite its original's report, nor two
    sweeps share one. A report whose sweep is gone from its recorded path (moved, or deleted) may be claimed."""
    folder = Path(folder)
    require_writable_folder(folder, "report")
    marker_file = folder / REPORT_MARKER
    if folder.is_dir() and any(folder.iterdir()) and not marker_file.is_file():
        raise UserInputError(
            f"report folder {folder} is not empty and was not written by medrecontrast (no {REPORT_MARKER}); "
            "choose an empty or new folder, so that none of its files is overwritten."
        )
    marker = read_json(marker_file) if marker_file.is_file() else {}
    owner = {}
    if sweep is not None:
        here = Path(sweep).resolve()
        owner = {"sweep_id": sweep_id(here), "sweep": str(here)}
        _check_report_owner(folder, marker, owner)
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {"written_by": "medrecontrast", "purpose": "marks a report folder the suite may rewrite", **owner}
        if not marker_file.is_file() or (owner and {k: marker.get(k) for k in owner} != owner):
            write_json(marker_file, {**marker, **wanted})
    return folder


def sweep_id(sweep: str | os.PathLike) -> str | None:
    """The id a sweep folder's ``sweep.json`` records (None: no sweep there, or one written before ids)."""
    marker = Path(sweep) / "sweep.json"
    if not marker.is_file():
        return None
    try:
        return read_json(marker).get("id")
    except UserInputError:
        return None


def _check_report_owner(folder: Path, marker: dict, owner: dict) -> None:
    recorded, recorded_id = marker.get("sweep"), marker.get("sweep_id")
    if recorded is None or (recorded == owner["sweep"] and recorded_id == owner["sweep_id"]):
        return
    if recorded_id is None or sweep_id(recorded) != recorded_id:
        return  # the sweep it was made for is no longer where it was (moved or deleted): this one may take it
    copy = " (a copy of that sweep: it has the same id)" if recorded_id == owner["sweep_id"] else ""
    raise UserInputError(
        f"report folder {folder} is the report of the sweep in {recorded}, not of {owner['sweep']}{copy}; writing "
        "it would leave that report's README and tables disagreeing. Give this sweep its own report folder with "
        "--report DIR (report=DIR)."
    )


def retire_previous_report_files(folder: str | os.PathLike, began_ns: int) -> list[str]:
    """After a report was written into ``folder`` (a report folder the suite owns), delete the files that the
    previous report of that folder wrote and this one did not (a ``results.parquet`` of a run with pyarrow beside
    the ``results.csv`` of one without, the figures of a task the sweep no longer has), and record in the marker
    the files this report wrote; returns the names deleted. A file this report wrote is one changed since
    ``began_ns`` (every report file is written by an atomic rename; 1 s of slack for coarse file-system clocks);
    a file no report recorded (a user's notes) is never deleted."""
    folder = Path(folder)
    marker_file = folder / REPORT_MARKER
    marker = read_json(marker_file) if marker_file.is_file() else {}
    since = began_ns - 1_000_000_000
    written = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name != REPORT_MARKER and p.stat().st_mtime_ns >= since
    )
    retired = sorted(set(marker.get("files", [])) - set(written))
    for name in retired:
        (folder / name).unlink(missing_ok=True)
    write_json(marker_file, {**marker, "files": written})
    return retired


def read_json(path: str | os.PathLike):
    """A JSON file's content; a file that is not readable UTF-8 JSON (damaged, or a link to some other
    file) is a user error naming it, never a traceback."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        linked = f" (a link to {os.path.realpath(path)})" if path.is_symlink() else ""
        raise UserInputError(f"cannot read {path}{linked} as JSON ({type(exc).__name__}: {exc}).") from None
