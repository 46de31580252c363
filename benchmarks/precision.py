"""bf16 against fp32 at inference, on the same data and the same trained weights.

    python benchmarks/precision.py [--methods recontrast rd4ad patchcore] [--backbone wide_resnet50_2]
                                   [--size 256] [--iters 100] [--train-images 128] [--test-images 64]

Each method is fitted once in fp32 (NCHW) on the built-in ``synth-oct`` task (generated at
``--size``), then predicts the same test images twice: in fp32 NCHW and in bf16 autocast (with
channels_last where the suite uses it). The table gives the largest relative difference of the
image scores, the largest difference of the anomaly maps relative to the fp32 maps' range, and image
and pixel AUROC in both precisions, so that the precision's effect on every reported number is
measured rather than assumed. Random backbone weights (``pretrained=False``) unless ``--weights``.
Writes benchmarks/results/precision.csv.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import device_name, in_memory, publish
from sklearn.metrics import roc_auc_score

from medrecontrast import build_detector, get_task
from medrecontrast.data.dataset import task_datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["recontrast", "rd4ad", "patchcore"])
    parser.add_argument("--backbone", default="wide_resnet50_2")
    parser.add_argument("--weights", default=None, help="backbone weights file (default: random weights)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=100, help="fp32 training iterations of ReContrast and RD4AD")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=128)
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    half = args.test_images // 2
    data = get_task(
        "synth-oct",
        size=args.size,
        n_train=args.train_images,
        n_test_normal=half,
        n_test_abnormal=args.test_images - half,
    ).load()
    train, test = task_datasets(data, image_size=args.size, cache="memory")
    train, test_images = in_memory(train), in_memory(test)
    masks = np.stack([np.asarray(test[i]["mask"]).reshape(args.size, args.size) for i in range(len(test))]) > 0
    labels = test_images.labels.numpy()

    rows = []
    for method in args.methods:
        pretrained = args.weights is not None
        options = dict(
            backbone=args.backbone, pretrained=pretrained, weights=args.weights, device=str(device), amp=False, seed=0
        )
        if method != "patchcore":
            options.update(
                channels_last=False, iters=args.iters, batch_size=args.batch, calibrate_random_encoder=not pretrained
            )
        detector = build_detector(method, **options).fit(train, progress=False)
        predictions = {}
        for precision, amp, channels_last in (("fp32", False, False), ("bf16", "bf16", None)):
            detector.config.amp = amp
            if method != "patchcore":
                detector.config.channels_last = channels_last
            predictions[precision] = detector.predict(test_images, batch_size=args.batch)
        p32, p16 = predictions["fp32"], predictions["bf16"]
        span = float(p32.maps.max() - p32.maps.min()) or 1.0
        scale = np.maximum(np.abs(p32.scores), 1e-12)
        row = {
            "device": device_name(device),
            "method": method,
            "backbone": args.backbone,
            "size": args.size,
            "test images": len(labels),
        }
        row["score max rel. diff"] = float(np.max(np.abs(p16.scores - p32.scores) / scale))
        row["map max diff / range"] = float(np.max(np.abs(p16.maps - p32.maps)) / span)
        for precision, p in predictions.items():
            row[f"I-AUROC {precision} %"] = round(100 * roc_auc_score(labels, p.scores), 2)
        for precision, p in predictions.items():
            row[f"P-AUROC {precision} %"] = round(100 * roc_auc_score(masks.ravel(), p.maps.ravel()), 2)
        row["I-AUROC diff (points)"] = round(row["I-AUROC bf16 %"] - row["I-AUROC fp32 %"], 2)
        print(row, flush=True)
        rows.append(row)
        del detector
        if device.type == "cuda":
            torch.cuda.empty_cache()
    publish(pd.DataFrame(rows), args.results, "precision")


if __name__ == "__main__":
    main()
