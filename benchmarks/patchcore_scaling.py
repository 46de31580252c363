"""PatchCore fit time, peak memory and memory-bank size as the training set grows; predict time per image.

    python benchmarks/patchcore_scaling.py [--images 200 400 800] [--size 224] [--backbone resnet18]
                                           [--coreset 0.01] [--budget-gb 16]

Training images are built-in synthetic OCT B-scans generated at ``--size`` (decoded once into the
cache before timing, so the fit measures feature extraction + subsampling + coreset). Peak memory is
the host's (or the GPU's) peak during the fit alone. Prints a table and writes
benchmarks/results/patchcore_scaling.csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from medrecontrast import build_detector, get_task
from medrecontrast.data.dataset import task_datasets
from medrecontrast.resources import peak_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[200, 400, 800])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--coreset", type=float, default=0.01)
    parser.add_argument("--budget-gb", type=float, default=16.0)
    parser.add_argument("--test-images", type=int, default=32)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV")
    args = parser.parse_args()

    rows = []
    for count in args.images:
        half = args.test_images // 2
        data = get_task("synth-oct", size=args.size, n_train=count, n_test_normal=half, n_test_abnormal=half).load()
        train, test = task_datasets(data, image_size=args.size)
        for dataset in (train, test):  # decode into the cache now, so the timings below are the model's
            for index in range(len(dataset)):
                dataset[index]
        detector = build_detector("patchcore", backbone=args.backbone, pretrained=False, coreset_ratio=args.coreset, memory_budget_gb=args.budget_gb)
        with peak_memory(detector.device) as memory:
            began = time.perf_counter()
            detector.fit(train, progress=False)
            fit_seconds = time.perf_counter() - began
        began = time.perf_counter()
        detector.predict(test)
        predict_seconds = time.perf_counter() - began
        device = torch.cuda.get_device_name(0) if detector.device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        rows.append({
            "device": device, "backbone": args.backbone, "size": args.size, "train images": count, "coreset": args.coreset,
            "candidates": detector.stats_["candidates"], "memory bank": detector.stats_["memory_bank"],
            "fit s": round(fit_seconds, 1), "fit images/s": round(count / fit_seconds, 1), "fit peak MB": round(memory["peak_memory_mb"]),
            "predict ms/image": round(1000 * predict_seconds / len(test), 1),
        })
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    args.results.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.results / "patchcore_scaling.csv", index=False)


if __name__ == "__main__":
    main()
