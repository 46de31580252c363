"""Where a result was produced: exact package versions, device, CPU, threads and code revision.

Recorded in each run's ``environment.json`` and each sweep's ``sweep.json``; never part of what a run
is (:meth:`medrecontrast.run.RunConfig.identity`).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def environment() -> dict:
    """Exact versions, device, CPU (model, instruction set torch uses, threads) and code revision a
    result was produced with: CPU results depend on the instruction set oneDNN picks and on the
    thread count (docs/reproducibility.md)."""
    import torch  # imported here: `medrecontrast.run` binds this function without loading torch

    packages = {
        name: package_version(name)
        for name in ("medrecontrast", "torch", "torchvision", "monai", "numpy", "scikit-learn", "pandas")
    }
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "packages": packages,
        "device": device,
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_revision": _git_revision(),
    }


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo`` on Linux, else what the platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    """The installed version of the package ``name`` (None where it is not installed)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        if name == "medrecontrast":  # on the path but not installed (``python -m medrecontrast`` from a checkout)
            from medrecontrast import __version__

            return __version__
        return None


def _git_revision() -> str | None:
    """The package's commit, with ``+changes`` when its files differ from it (None outside a checkout)."""

    def git(*args: str) -> str:
        return subprocess.run(
            # --no-optional-locks: `git status` would otherwise create .git/index.lock in the user's checkout for a
            # moment, and a commit of theirs at that moment would fail
            ["git", "--no-optional-locks", *args],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        return (
            revision + ("+changes" if git("status", "--porcelain", "--untracked-files=no", "--", ".") else "")
        ) or None
    except (OSError, subprocess.SubprocessError):
        return None
