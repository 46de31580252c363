"""How long the command line takes to answer, and how much memory it needs, for the commands that
should feel instant (`--help`, `tasks`, an argument error) and one that loads the models (`methods`).

    python benchmarks/cli_startup.py [--repeats 5]

Each command runs in a fresh process (what a user's shell does): the table gives the median wall
time over ``--repeats`` runs and the peak resident memory of one run (measured by a wrapper process
around it, so each figure is that command's alone), plus the import time of ``medrecontrast.cli``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

import pandas as pd

COMMANDS = (["--help"], ["tasks"], ["bench", "--bogus"], ["train", "--help"], ["methods"])
PEAK = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    executable = shutil.which("medrecontrast") or sys.exit("medrecontrast is not installed: pip install -e .")
    rows = []
    for command in COMMANDS:
        seconds = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            subprocess.run([executable, *command], capture_output=True)
            seconds.append(time.perf_counter() - began)
        peak_kb = int(
            subprocess.run(
                [sys.executable, "-c", PEAK, executable, *command], capture_output=True, text=True
            ).stdout.strip()
        )
        rows.append(
            {
                "command": "medrecontrast " + " ".join(command),
                "median s": round(statistics.median(seconds), 2),
                "peak MB": round(peak_kb / 1024),
            }
        )
    importtime = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import medrecontrast.cli"], capture_output=True, text=True
    ).stderr
    total_us = int(importtime.strip().splitlines()[-1].split("|")[1])
    rows.append({"command": "import medrecontrast.cli", "median s": round(total_us / 1e6, 2), "peak MB": None})
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
