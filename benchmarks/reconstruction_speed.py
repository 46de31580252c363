"""Training time of MedIAnomaly's reconstruction methods (AE, VAE, MemAE, AE-U) at the released size.

    python benchmarks/reconstruction_speed.py [--methods ae vae memae aeu] [--iters 1000] [--device cpu]

Each method trains ``--iters`` iterations of the released step (64 px grey, batch 64, Adam) through the suite's
own loop (``Detector.fit``) on 1,000 random images held in memory, so decoding is excluded; the table gives the
median step, the seconds per 1,000 iterations (median step x 1,000, and the measured total scaled to 1,000) and
what the released Brain Tumor schedule (600 epochs of ⌈1000 / 64⌉ = 16 batches: 9,600 iterations) then costs.
Writes benchmarks/results/reconstruction_speed.csv.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd
from common import device_name, publish, random_images

from medrecontrast import build_detector
from medrecontrast.models.reconstruction import RELEASED_SIZE

BRAIN_TUMOR_ITERATIONS = 600 * 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["ae", "vae", "memae", "aeu"])
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    images = random_images(1000, RELEASED_SIZE)
    rows = []
    for method in args.methods:
        detector = build_detector(method, iters=args.iters, device=args.device)
        began = time.perf_counter()
        detector.fit(images, progress=False)
        total = time.perf_counter() - began
        steps = detector.training_.iteration_seconds[min(10, args.iters - 1) :]  # after the warm-up
        median = statistics.median(steps)
        rows.append(
            {
                "method": method,
                "device": device_name(detector.device),
                "iterations": args.iters,
                "median step ms": round(1000 * median, 1),
                "s per 1,000 (median)": round(1000 * median, 1),
                "s per 1,000 (measured)": round(total * 1000 / args.iters, 1),
                "Brain Tumor schedule (9,600 it), min": round(median * BRAIN_TUMOR_ITERATIONS / 60, 1),
            }
        )
    publish(pd.DataFrame(rows), Path(__file__).parent / "results", "reconstruction_speed")


if __name__ == "__main__":
    main()
