"""How long the command line takes to answer, and how much memory it needs, for the commands that
should feel instant (`--help`, `tasks`, an argument error, the mistakes people make: a misspelled task or
method, `--holdout 2`, a missing run or sweep folder, a report folder that is not the suite's) and one that
loads the models (`methods`).

    python benchmarks/cli_startup.py [--repeats 3] [--checkout DIR]

Each command runs in a fresh process (what a user's shell does): the table gives the fastest wall time over
``--repeats`` runs (the least disturbed by the rest of the machine) and the peak resident memory of one run
(measured by a wrapper process around it, so each figure is that command's alone), plus the import time of
``medrecontrast.cli``. ``--checkout DIR`` runs ``python -m medrecontrast`` from another checkout (e.g. an older
commit in a git worktree), for a before/after table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

COMMANDS = (
    ["--help"],
    ["tasks"],
    ["bench", "--bogus"],
    ["train", "--help"],
    ["methods"],
    ["bench", "--tasks", "synth-ocd"],
    ["bench", "--tasks", "synth-oct", "--methods", "rd4da"],
    ["bench", "--tasks", "synth-oct", "--holdout", "2"],
    ["bench", "--tasks", "synth-oct", "--report", "{own_folder}"],
    ["train", "--task", "synth-oct", "--method", "gan"],
    ["evaluate", "--run", "/nonexistent"],
    ["tables", "/nonexistent"],
)
PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkout", type=Path, default=None, help="run `python -m medrecontrast` from this checkout")
    args = parser.parse_args()
    if args.checkout is None:
        executable = [shutil.which("medrecontrast") or sys.exit("medrecontrast is not installed: pip install -e .")]
        env = None
    else:
        executable = [sys.executable, "-m", "medrecontrast"]
        env = {**os.environ, "PYTHONPATH": str(args.checkout.resolve())}
    own_folder = Path(tempfile.mkdtemp())
    (own_folder / "notes.txt").write_text("a user's own file")  # a report folder the suite must refuse
    rows = []
    for template in COMMANDS:
        command = [part.format(own_folder=own_folder) for part in template]
        seconds = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            subprocess.run([*executable, *command], capture_output=True, env=env, cwd=own_folder.parent)
            seconds.append(time.perf_counter() - began)
        peak_kb = int(
            subprocess.run(
                [sys.executable, "-c", PEAK, *executable, *command], capture_output=True, text=True, env=env
            ).stdout.strip()
        )
        rows.append(
            {
                "command": "medrecontrast " + " ".join(template).replace("{own_folder}", "<a user's folder>"),
                "min s": round(min(seconds), 2),
                "peak MB": round(peak_kb / 1024),
            }
        )
    importtime = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import medrecontrast.cli"], capture_output=True, text=True, env=env
    ).stderr
    total_us = int(importtime.strip().splitlines()[-1].split("|")[1])
    rows.append({"command": "import medrecontrast.cli", "min s": round(total_us / 1e6, 2), "peak MB": None})
    shutil.rmtree(own_folder)
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
