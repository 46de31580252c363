"""PatchCore fit time, peak host and GPU memory, memory-bank size and accuracy as the training set grows.

    python benchmarks/patchcore_scaling.py [--images 1000 5000 26000] [--size 224] [--backbone resnet18]
                                           [--coreset 0.01] [--candidate-ratio 1.0 0.1] [--budget-gb 16]
                                           [--distinct 500]

Training images are built-in synthetic OCT B-scans at ``--size``: ``--distinct`` of them are
generated and decoded once, in memory, and the larger sets are made from them by flips and
shifts (a different pair per repetition), so that 26k images (OCT2017's 26,315 normals) need
neither 26k files nor their decoding time. Each row fits on the images of that count with one
candidate ratio (the documented subsampling before the greedy coreset), then predicts a fixed
test set: predict time per image grows with the bank, and the image AUROC shows what the
subsampling costs. The bank is built in one or two passes (``passes``; the second
recomputes the selected patches when only their projections fit the budget), each stage
timed. Prints a table and writes benchmarks/results/patchcore_scaling.csv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from common import device_name, in_memory, publish
from sklearn.metrics import roc_auc_score
from torch.utils.data import Dataset

from medrecontrast import build_detector, get_task
from medrecontrast.data.dataset import task_datasets
from medrecontrast.resources import peak_memory


class Augmented(Dataset):
    """``count`` training images from a smaller decoded set: repetition ``r`` of image ``i`` is
    flipped when ``r`` is odd and rolled by a shift that depends on ``r``, so no two are equal."""

    def __init__(self, images: torch.Tensor, count: int):
        self.images, self.count = images, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        repetition, source = divmod(index, len(self.images))
        image = self.images[source]
        if repetition:
            image = torch.roll(image, shifts=(3 * repetition % 17, 5 * repetition % 23), dims=(1, 2))
            if repetition % 2:
                image = image.flip(-1)
        return {"image": image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 5000, 26000])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--embed-dim", type=int, default=1024)
    parser.add_argument("--coreset", type=float, default=0.01)
    parser.add_argument("--candidate-ratio", type=float, nargs="+", default=[1.0])
    parser.add_argument("--budget-gb", type=float, default=16.0, help="host memory budget")
    parser.add_argument("--gpu-budget-gb", type=float, default=None, help="GPU memory budget (default: what is free)")
    parser.add_argument(
        "--distinct", type=int, default=500, help="generated training images the larger sets are made from"
    )
    parser.add_argument("--test-images", type=int, default=60)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV")
    args = parser.parse_args()

    half = args.test_images // 2
    distinct = min(args.distinct, max(args.images))
    data = get_task(
        "synth-oct", size=args.size, n_train=distinct, n_test_normal=half, n_test_abnormal=args.test_images - half
    ).load()
    train, test = (in_memory(dataset) for dataset in task_datasets(data, image_size=args.size, cache="memory"))
    images = train.images

    rows = []
    for count in args.images:
        for ratio in args.candidate_ratio:
            detector = build_detector(
                "patchcore",
                backbone=args.backbone,
                pretrained=False,
                embed_dim=args.embed_dim,
                coreset_ratio=args.coreset,
                candidate_ratio=ratio,
                memory_budget_gb=args.budget_gb,
                gpu_memory_budget_gb=args.gpu_budget_gb,
                batch_size=args.batch,
                num_workers=args.workers,
            )
            cuda = detector.device.type == "cuda"
            with peak_memory("cpu") as host, peak_memory(detector.device) as device_memory:
                began = time.perf_counter()
                detector.fit(Augmented(images, count), progress=False)
                if cuda:
                    torch.cuda.synchronize()
                fit_seconds = time.perf_counter() - began
            began = time.perf_counter()
            predictions = detector.predict(test, batch_size=args.batch)
            predict_seconds = time.perf_counter() - began
            rows.append(
                {
                    "device": device_name(detector.device),
                    "backbone": args.backbone,
                    "size": args.size,
                    "train images": count,
                    "coreset": args.coreset,
                    "candidate ratio": ratio,
                    "candidates": detector.stats_["candidates"],
                    "memory bank": detector.stats_["memory_bank"],
                    "passes": detector.stats_["passes"],
                    "pass 1 s": detector.stats_["pass_1_s"],
                    "search s": detector.stats_["search_s"],
                    "pass 2 s": detector.stats_.get("pass_2_s", 0.0),
                    "fit s": round(fit_seconds, 1),
                    "fit images/s": round(count / fit_seconds, 1),
                    "host peak MB": round(host["peak_memory_mb"]),
                    "gpu peak MB": round(device_memory["peak_memory_mb"]) if cuda else 0,
                    "predict ms/image": round(1000 * predict_seconds / len(test), 1),
                    "image AUROC %": round(100 * roc_auc_score(predictions.labels, predictions.scores), 2),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    publish(table, args.results, "patchcore_scaling")


if __name__ == "__main__":
    main()
