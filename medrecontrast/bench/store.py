"""Where a sweep keeps its runs, who is running which one, and what each run became.

Layout of a sweep folder::

    <out>/sweep.json                         format, config, environment of the last invocation
    <out>/<task>/<method>/seed-<k>/          one run folder (see medrecontrast.runs)
    <out>/.claims/<task>__<method>__seed-<k>  held while a process runs that run

A claim is a file created with ``O_EXCL``: two ``bench`` processes (or Ray workers) on the same
folder never run the same run twice. A claim whose process has died (same host, pid gone) is
stale and is taken over.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from medrecontrast.errors import UserInputError, require_format
from medrecontrast.paths import write_json
from medrecontrast.tasks.base import task_slug

SWEEP_FORMAT = 1


@dataclass(frozen=True)
class RunSpec:
    """One (task, method, seed) of a sweep, with everything a worker needs to run it anywhere."""

    task: str
    method: str
    seed: int
    profile: str
    folder: str
    claims: str
    task_options: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    data_root: str | None = None
    weights: str | None = None
    threads: int | None = None  # torch threads in this run (Ray workers); None keeps the default
    base_method: str | None = None  # for a variant (``method`` is then its name): the registered method

    @property
    def variant(self) -> str | None:
        return self.method if self.base_method else None

    @property
    def key(self) -> str:
        return f"{task_slug(self.task)}__{self.method}__seed-{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.task} · {self.method} · seed {self.seed}"


def run_folder(out: str | Path, task: str, method: str, seed: int) -> Path:
    return Path(out) / task_slug(task) / method / f"seed-{seed}"


def run_status(folder: str | Path) -> dict:
    """``{"status": "absent" | "running" | "failed" | "finished", ...}`` of a run folder."""
    path = Path(folder) / "status.json"
    if not path.is_file():
        return {"status": "absent"}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"status": "running"}  # cut off mid-write by a crash: treat as interrupted


def read_sweep_marker(out: Path) -> dict | None:
    """The sweep folder's ``sweep.json`` (None if there is none), refused if of another format."""
    marker = Path(out) / "sweep.json"
    if not marker.is_file():
        return None
    payload = json.loads(marker.read_text())
    require_format(payload.get("format"), SWEEP_FORMAT, "results", out, "Choose another --out.")
    return payload


def check_sweep_folder(out: Path) -> None:
    """Refuse a folder that is neither new, empty, nor a sweep of this format."""
    if read_sweep_marker(out) is None and out.exists() and any(out.iterdir()):
        raise UserInputError(f"{out} is not empty and is not a sweep folder; choose an empty or new --out.")


def open_sweep_folder(out: Path, payload: dict) -> None:
    """Create or re-open a sweep folder and record this invocation in ``sweep.json``."""
    check_sweep_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", {"format": SWEEP_FORMAT, **payload})


class Claim:
    """Exclusive right to run one run; a context manager that releases it on exit."""

    def __init__(self, claims: str | Path, key: str):
        self.path = Path(claims) / key

    def acquire(self) -> bool:
        """True if this process now holds the claim; False if a live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not self._stale():
                    return False
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(handle, "w") as file:
                json.dump({"host": platform.node(), "pid": os.getpid()}, file)
            return True
        return False

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def _stale(self) -> bool:
        holder = self.holder()
        if not holder:
            return True  # the holder died between creating and writing the file
        if holder.get("host") != platform.node():
            return False  # another machine: cannot tell, so respect it
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
