"""Data pipeline throughput: first pass (decode + resize, fills the cache) vs cached passes.

    python benchmarks/data_pipeline.py [--task synth-fundus] [--size 256] [--images 200] [--workers 0 2]

Prints a table and writes benchmarks/results/data_pipeline.csv.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from common import publish
from torch.utils.data import DataLoader

from medrecontrast.data.dataset import image_dataset
from medrecontrast.tasks import get_task


def images_per_second(dataset, workers: int, batch_size: int = 16) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    start = time.perf_counter()
    count = sum(batch["image"].shape[0] for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="synth-fundus")
    parser.add_argument("--size", type=int, default=256, help="network input size")
    parser.add_argument("--source-size", type=int, default=512, help="size of the generated source images")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV")
    args = parser.parse_args()

    task = get_task(args.task, size=args.source_size, n_train=args.images, n_test_normal=1, n_test_abnormal=1)
    items = task.load().train
    rows = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as cache:
            disk = image_dataset(items, args.size, cache="disk", cache_root=cache)
            rows.append(
                {
                    "cache": "disk",
                    "workers": workers,
                    "pass": "first (decode)",
                    "images/s": images_per_second(disk, workers),
                }
            )
            rows.append(
                {"cache": "disk", "workers": workers, "pass": "cached", "images/s": images_per_second(disk, workers)}
            )
        uncached = image_dataset(items, args.size, cache="none")
        rows.append(
            {
                "cache": "none",
                "workers": workers,
                "pass": "every pass",
                "images/s": images_per_second(uncached, workers),
            }
        )
    table = pd.DataFrame(rows).assign(
        task=args.task,
        source_px=args.source_size,
        input_px=args.size,
        images=len(items),
        torch_threads=torch.get_num_threads(),
    )
    publish(table.round(1), args.results, "data_pipeline")


if __name__ == "__main__":
    main()
