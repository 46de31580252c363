"""Where a sweep keeps its runs, who is running which one, and what each run became.

Layout of a sweep folder::

    <out>/sweep.json                         format, config, environment of the last invocation
    <out>/bench.log                          every sweep-level line with its time (sweep_log)
    <out>/<task>/<method>/seed-<k>/          one run folder (see medrecontrast.run)
    <out>/.claims/<task>__<method>__seed-<k>  held while a process runs that run
    <out>/.claims-locks/                      the file locks under which claims are decided

A claim (:class:`Claim`) is a file written under a ``filelock`` lock, with a heartbeat: two
``bench`` processes (or Ray workers) on the same folder never run the same run twice, and a claim
whose process has died (same host) or whose heartbeat stopped (any host) is taken over.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from medrecontrast.errors import UserInputError, require_format
from medrecontrast.paths import write_json
from medrecontrast.run.config import RunConfig
from medrecontrast.run.folder import RunFolder
from medrecontrast.tasks.base import task_slug

SWEEP_FORMAT = 1


@dataclass(frozen=True)
class RunSpec:
    """One (task, method, seed) of a sweep, with everything a worker needs to run it anywhere: the
    resolved :class:`~medrecontrast.run.RunConfig` it runs exactly as planned, and where."""

    config: RunConfig
    folder: str
    claims: str
    data_root: str | None = None
    force: bool = False  # redo the run from scratch, whatever its folder holds (bench --force)
    # the method's storage_estimate for this run (bytes) plus "kept" (what the finished run keeps), where it has one
    storage: dict | None = None
    status: str = "absent"  # the run folder's status when the sweep was planned (RunFolder.status)
    train_images: int | None = None  # how many normals it trains on (after the hold-out)
    # (method, network, weights file) of the pretrained weights it loads, None where it loads none
    weights: tuple | None = None

    @property
    def to_do(self) -> bool:
        """Planned to run: not finished when planned, or forced."""
        return self.force or self.status != "finished"

    @property
    def input_size(self) -> int:
        return self.config.input_size

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def method(self) -> str:
        """The method or variant name (the sweep's row)."""
        return self.config.name

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def key(self) -> str:
        return f"{task_slug(self.task)}__{self.method}__seed-{self.seed}"

    @property
    def label(self) -> str:
        return f"{self.task} · {self.method} · seed {self.seed}"


def sweep_log(out: str | Path) -> Path:
    """``<out>/bench.log``: every sweep-level line (runs, ETA, outcomes, interruptions) with its time."""
    return Path(out) / "bench.log"


def run_folder(out: str | Path, task: str, method: str, seed: int) -> Path:
    return Path(out) / task_slug(task) / method / f"seed-{seed}"


def run_status(folder: str | Path) -> dict:
    """A run folder's status (:meth:`RunFolder.status <medrecontrast.run.folder.RunFolder.status>`)."""
    return RunFolder(folder).status()


def read_sweep_marker(out: Path) -> dict | None:
    """The sweep folder's ``sweep.json`` (None if there is none), refused if of another format."""
    marker = Path(out) / "sweep.json"
    if not marker.is_file():
        return None
    payload = json.loads(marker.read_text())
    require_format(payload.get("format"), SWEEP_FORMAT, "results", out, "Choose another out=DIR.")
    return payload


def check_sweep_folder(out: Path) -> None:
    """Refuse a folder that is neither new, empty, nor a sweep of this format."""
    if read_sweep_marker(out) is None and out.exists() and any(out.iterdir()):
        raise UserInputError(f"{out} is not empty and is not a sweep folder; choose an empty or new out=DIR.")


def open_sweep_folder(out: Path, payload: dict) -> None:
    """Create or re-open a sweep folder and record this invocation in ``sweep.json``."""
    check_sweep_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    # the sweep's id, kept across invocations: its report folder records it (paths.claim_report_folder), so that a
    # copy of the sweep (the same id in another folder) never writes into the original's report
    previous = read_sweep_marker(out) or {}
    write_json(out / "sweep.json", {"format": SWEEP_FORMAT, "id": previous.get("id") or uuid.uuid4().hex, **payload})


CLAIM_TTL_ENV = "MEDRECONTRAST_CLAIM_TTL"
CLAIM_TTL_S = 600.0  # a claim whose heartbeat is older than this is abandoned (a dead node of a cluster)
HEARTBEAT_S = 30.0


class Claim:
    """Exclusive right to run one run; a context manager that releases it on exit.

    The claim file holds its owner (host, pid) and a heartbeat that a background thread refreshes
    every :data:`HEARTBEAT_S` seconds while the run goes on. Deciding whether a claim is free and
    writing ours happen under a ``filelock`` lock on a companion file, so that of many processes
    released at once exactly one wins (the previous create-then-write claim let a competitor read
    an empty file, judge it abandoned and take it over). A claim is abandoned when its process is
    gone (same host) or its heartbeat is older than ``$MEDRECONTRAST_CLAIM_TTL`` seconds (default
    600; any host, so a claim left by a dead cluster node expires).
    """

    def __init__(self, claims: str | Path, key: str):
        self.path = Path(claims) / key
        self._stop: threading.Event | None = None

    def _lock(self) -> FileLock:
        # beside the claims folder, not in it: that folder lists exactly the claims that are held
        locks = self.path.parent.with_name(f"{self.path.parent.name}-locks")
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{self.path.name}.lock"), timeout=60)

    def acquire(self) -> bool:
        """True if this process now holds the claim; False if a live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            holder = self.holder()
            if self.path.exists() and not self._abandoned(holder):
                return False
            self._write()
        self._stop = threading.Event()
        threading.Thread(target=self._beat, args=(self._stop,), daemon=True, name=f"claim {self.path.name}").start()
        return True

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        with self._lock():
            if self._mine(self.holder()):
                self.path.unlink(missing_ok=True)

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def held_elsewhere(self) -> bool:
        """True while another live process holds this claim (its heartbeat fresh, its process alive)."""
        holder = self.holder()
        return self.path.exists() and not self._mine(holder) and not self._abandoned(holder)

    def describe(self) -> str:
        """Who holds the claim and how to clear it, for a user who believes it is left over."""
        holder = self.holder()
        return (
            f"claimed by pid {holder.get('pid')} on {holder.get('host')}, heartbeat {holder.get('heartbeat', '?')}; "
            "if no such process "
            f"runs it, delete {self.path} (claims also expire {ttl():.0f} s after their last heartbeat)"
        )

    def _write(self) -> None:
        write_json(self.path, {"host": platform.node(), "pid": os.getpid(), "heartbeat": time.time()})

    def _mine(self, holder: dict) -> bool:
        return holder.get("host") == platform.node() and holder.get("pid") == os.getpid()

    def _beat(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            with self._lock():
                if self._mine(self.holder()):
                    self._write()

    def _abandoned(self, holder: dict) -> bool:
        """Its process is gone (same host), or its heartbeat (the file's mtime for claims written
        without one) is older than the TTL (any host: a dead node, a hung process, a reused pid)."""
        if not holder:
            return True  # unreadable: only a crash inside the atomic write could leave that, and it cannot
        try:
            beat = float(holder.get("heartbeat") or self.path.stat().st_mtime)
        except OSError:
            return True
        expired = time.time() - beat > ttl()
        if holder.get("host") != platform.node():
            return expired
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return expired

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def ttl() -> float:
    """Seconds after its last heartbeat a claim is abandoned (``$MEDRECONTRAST_CLAIM_TTL``, default 600)."""
    value = os.environ.get(CLAIM_TTL_ENV)
    try:
        return float(value) if value else CLAIM_TTL_S
    except ValueError:
        raise UserInputError(f"${CLAIM_TTL_ENV} must be a number of seconds, got {value!r}") from None
