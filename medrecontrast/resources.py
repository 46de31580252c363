"""Peak memory of one stage (training, inference), on the GPU or on the host.

``ru_maxrss`` only ever grows over a process's life, so in a sweep that runs many stages in one
process it would report the first stage's peak for every later one. On Linux the kernel's peak
resident set size (``VmHWM``) can be reset through ``/proc/self/clear_refs``; elsewhere the
lifetime peak is reported and labelled as such.
"""

from __future__ import annotations

import resource
from contextlib import contextmanager
from pathlib import Path

import torch

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


@contextmanager
def peak_memory(device: torch.device | str):
    """Context manager yielding a dict that holds ``peak_memory_mb`` (and its ``peak_memory_kind``) on exit."""
    device = torch.device(device)
    result: dict = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    resettable = _reset_host_peak()
    try:
        yield result
    finally:
        if device.type == "cuda":
            result.update(
                peak_memory_mb=torch.cuda.max_memory_allocated(device) / 2**20, peak_memory_kind="gpu allocated"
            )
        elif resettable:
            result.update(peak_memory_mb=_host_peak_kb() / 1024, peak_memory_kind="host rss (this stage)")
        else:
            result.update(
                peak_memory_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                peak_memory_kind="host rss (process lifetime)",
            )


def _reset_host_peak() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return _host_peak_kb() is not None
    except OSError:
        return False


def _host_peak_kb() -> int | None:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None
