"""Stopping cleanly when asked to: Ctrl-C (SIGINT) and a scheduler's SIGTERM (SLURM, Kubernetes and systemd
send it before they kill a job) end a run the same way.

Outside the training loop, SIGTERM raises :class:`Interrupted` in the main thread, as Ctrl-C raises
``KeyboardInterrupt`` (Python's default for SIGTERM ends the process with no message and no record). Inside
the loop, the first signal is deferred to the end of the iteration, where a checkpoint is written, then
:class:`Interrupted` is raised; a second signal stops at once. The run records ``interrupted`` in its
``status.json`` and the command line says what continues it and exits with 128 + the signal's number
(130 for Ctrl-C, 143 for SIGTERM). Handlers can only be set in the main thread; elsewhere (a Ray worker's
thread, a notebook's background thread) nothing changes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by ``signal_name`` (``SIGINT``: Ctrl-C, ``SIGTERM``: a scheduler)."""

    def __init__(self, signum: int, detail: str = ""):
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {self.signal_name}" + (f" {detail}" if detail else ""))


def interruption_of(exc: BaseException) -> tuple[str, int]:
    """``(signal name, exit code)`` of a ``KeyboardInterrupt`` (a bare one is Ctrl-C)."""
    if isinstance(exc, Interrupted):
        return exc.signal_name, exc.exit_code
    return "SIGINT", 128 + signal.SIGINT


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` (as Ctrl-C raises ``KeyboardInterrupt``)."""
    if not _in_main_thread():
        yield
        return

    def stop(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred_stop() -> Iterator[dict]:
    """Within the block, SIGINT and SIGTERM set ``flag["signum"]`` instead of stopping, so the caller can stop at
    a safe point (after an iteration, with a checkpoint); a second signal raises :class:`Interrupted` at once."""
    flag: dict = {}
    if not _in_main_thread():
        yield flag
        return

    def note(signum, frame):
        if "signum" in flag:
            raise Interrupted(signum, "(second signal: stopped at once)")
        flag["signum"] = signum

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
