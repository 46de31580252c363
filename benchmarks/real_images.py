"""The test pass on real JPEG files, side by side with anomalib: decode, resize, model, scores.

    pip install -e ".[bench-peers]"
    python benchmarks/real_images.py [--test-images 1512] [--train-images 200] [--size 256] [--methods patchcore rd4ad]
                                     [--profile 128]

The files: crops of the real EyePACS fundus photographs in ``../shared/data/eyepacs_fundus``
(up to 4928 x 3264), saved as 600 x 450 JPEGs (quality 90, ISIC2018's own size and format) under the
names and labels of the real ISIC2018 Test ground truth (1,512 images), in ISIC2018's official
layout, plus ``--train-images`` normals with a Training ground truth written beside them. The
suite reads them through its real ``isic:test`` task (loader, decode cache, ``Detector.predict``);
anomalib reads the same files through its ``FolderDataset`` (PIL decode of the full image),
batch collation, its PatchCore pre-processor (``Resize(256, antialias) + Normalize``) and its torch
models (no Lightning trainer, so no trainer overhead is charged to it). The labels are ISIC's and
the pixels fundus photos, so AUROC means nothing here: this measures speed.

Equal settings: resnet18 with the SAME random weights in both (copied), layers 2 + 3, images
resized to ``--size`` (no crop), batch 16, loader workers 0 (the suite's CPU default) on the same
threads, PatchCore with a 1 % coreset of the training images, the patch score from the nearest
memory-bank entry, the image score re-weighted over 9 neighbours (anomalib's only mode; the suite's
``reweight = true``), a memory-bank vector of anomalib's size (all 384 layer2 + layer3 channels =
the suite's ``embed_dim``). RD4AD: both untrained decoders (one training step), scored at ``--size``.

Passes: "cold" is the first test pass over files the suite has never seen (it decodes and writes
its cache), "warm" the second (the suite reads its cache; anomalib has none and decodes again, with
the files in the OS page cache both times). ``--profile N`` also profiles the suite's PatchCore
``predict`` on N warm images (cProfile, the ten largest cumulative entries). Prints a table and writes
benchmarks/results/real_images.csv.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import device_name, publish
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDRECONTRAST_SHARED_DATA", REPO.parent / "shared" / "data"))
JPEG_SIZE = (600, 450)  # ISIC2018 Task 3 images: 600 x 450 JPEG


def make_layout(root: Path, test_images: int, train_images: int) -> tuple[Path, Path]:
    """ISIC2018-layout JPEGs for the suite and class folders of the same files for anomalib."""
    photos = sorted((SHARED / "eyepacs_fundus").glob("*.jpeg"))
    truth = SHARED / "isic2018" / "ISIC2018_Task3_Test_GroundTruth.csv"
    if not photos or not truth.is_file():
        raise SystemExit(
            f"needs the real samples in {SHARED} (eyepacs_fundus/*.jpeg, isic2018/ISIC2018_Task3_Test_GroundTruth.csv)"
        )
    sources = [Image.open(p).convert("RGB") for p in photos]
    rng = np.random.default_rng(0)
    isic = root / "isic2018"
    test = pd.read_csv(truth).head(test_images)
    train = pd.DataFrame(
        {"image": [f"ISIC_9{i:06d}" for i in range(train_images)], **{c: 0.0 for c in test.columns[1:]}}
    )
    train["NV"] = 1.0
    theirs = root / "anomalib"
    for subset, frame in (("Training", train), ("Test", test)):
        folder = isic / f"ISIC2018_Task3_{subset}_Input"
        folder.mkdir(parents=True)
        (isic / f"ISIC2018_Task3_{subset}_GroundTruth").mkdir()
        frame.to_csv(
            isic / f"ISIC2018_Task3_{subset}_GroundTruth" / f"ISIC2018_Task3_{subset}_GroundTruth.csv", index=False
        )
        for image_id, normal in zip(frame["image"], frame["NV"] == 1):
            source = sources[rng.integers(len(sources))]
            width, height = source.size
            crop_w = int(rng.uniform(0.3, 0.6) * width)
            crop_h = crop_w * JPEG_SIZE[1] // JPEG_SIZE[0]
            left, top = int(rng.integers(0, width - crop_w)), int(rng.integers(0, height - crop_h))
            path = folder / f"{image_id}.jpg"
            source.crop((left, top, left + crop_w, top + crop_h)).resize(JPEG_SIZE, Image.BILINEAR).save(
                path, quality=90
            )
            link = theirs / ("train" if subset == "Training" else "test") / ("good" if normal else "bad") / path.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    return root, theirs


def copy_encoder(ours: torch.nn.Module, theirs: torch.nn.Module) -> None:
    """anomalib's timm feature extractor gets the suite's encoder weights (same ResNet, other names)."""
    source = {
        name.replace("stem.0.", "conv1.").replace("stem.1.", "bn1."): value for name, value in ours.state_dict().items()
    }
    target = theirs.state_dict()
    theirs.load_state_dict({name: source[name.split("feature_extractor.", 1)[-1]] for name in target})


def timed(function) -> tuple[float, object]:
    began = time.perf_counter()
    result = function()
    return time.perf_counter() - began, result


def ours(args, root: Path, cache: Path) -> tuple[list[dict], dict]:
    """Each method gets its own empty decode cache: its first test pass is cold, its second warm."""
    from medrecontrast import build_detector, get_task
    from medrecontrast.data.dataset import task_datasets

    data = get_task("isic:test").load(root)
    rows, detectors = [], {}
    for method in args.methods:
        os.environ["MEDRECONTRAST_CACHE"] = str(cache / method)
        train, test = task_datasets(data, image_size=args.size, crop_size=None)
        if method == "patchcore":
            options = dict(embed_dim=384, coreset_ratio=0.01, num_neighbors=1, reweight=True, reweight_neighbors=9)
        else:
            options = dict(iters=1)
        detectors[method] = detector = build_detector(
            method, backbone="resnet18", pretrained=False, batch_size=16, device="cpu", **options
        )
        detector.fit(train, progress=False)
        for cache_pass in ("cold", "warm"):
            seconds, _ = timed(lambda: detector.predict(test, batch_size=16))
            rows.append(
                {
                    "method": method,
                    "pass": cache_pass,
                    "library": "medrecontrast",
                    "images": len(test),
                    "seconds": seconds,
                }
            )
    return rows, detectors


def anomalib_rows(args, theirs_root: Path, detectors: dict) -> list[dict]:
    from anomalib.data.datasets.image.folder import FolderDataset
    from anomalib.models import Patchcore
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel
    from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel
    from torch.utils.data import DataLoader

    def dataset(split: str):
        return FolderDataset(
            name="real",
            root=theirs_root,
            normal_dir="train/good",
            normal_test_dir="test/good",
            abnormal_dir="test/bad",
            split=split,
        )

    transform = Patchcore.configure_pre_processor(image_size=(args.size, args.size)).transform

    def batches(split: str):
        data = dataset(split)
        for batch in DataLoader(data, batch_size=16, num_workers=0, collate_fn=data.collate_fn):
            yield transform(batch.image)

    rows = []
    with torch.no_grad():
        if "patchcore" in detectors:
            model = PatchcoreModel(layers=["layer2", "layer3"], backbone="resnet18", pre_trained=False, num_neighbors=9)
            copy_encoder(detectors["patchcore"].model, model.feature_extractor)
            model.train()
            for images in batches("train"):
                model(images)
            model.subsample_embedding(0.01)
            model.eval()
            for cache_pass in ("cold", "warm"):
                seconds, _ = timed(lambda: [model(images).pred_score for images in batches("test")])
                rows.append(
                    {
                        "method": "patchcore",
                        "pass": cache_pass,
                        "library": "anomalib",
                        "images": len(dataset("test")),
                        "seconds": seconds,
                    }
                )
        if "rd4ad" in detectors:
            model = ReverseDistillationModel(
                "resnet18", (args.size, args.size), ("layer1", "layer2", "layer3"), "add", pre_trained=False
            )
            copy_encoder(detectors["rd4ad"].model.encoder, model.encoder)
            model.eval()
            for cache_pass in ("cold", "warm"):
                seconds, _ = timed(lambda: [model(images).pred_score for images in batches("test")])
                rows.append(
                    {
                        "method": "rd4ad",
                        "pass": cache_pass,
                        "library": "anomalib",
                        "images": len(dataset("test")),
                        "seconds": seconds,
                    }
                )
    return rows


def profile(args, detector, test) -> str:
    """cProfile of the suite's ``predict`` on the first ``args.profile`` (cached) test images."""
    subset = torch.utils.data.Subset(test, range(min(args.profile, len(test))))
    profiler = cProfile.Profile()
    profiler.enable()
    detector.predict(subset, batch_size=16)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test-images", type=int, default=1512)
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=["patchcore", "rd4ad"], choices=["patchcore", "rd4ad"])
    parser.add_argument(
        "--profile", type=int, default=0, help="profile the suite's PatchCore predict on this many images"
    )
    parser.add_argument("--no-anomalib", action="store_true", help="only the suite (anomalib not installed)")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="folder for the CSV")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="real-images-"))
    try:
        root, theirs_root = make_layout(work / "data", args.test_images, args.train_images)
        rows, detectors = ours(args, root, work / "cache")
        if not args.no_anomalib:
            rows += anomalib_rows(args, theirs_root, detectors)
        if args.profile and "patchcore" in detectors:
            from medrecontrast import get_task
            from medrecontrast.data.dataset import task_datasets

            os.environ["MEDRECONTRAST_CACHE"] = str(work / "cache" / "patchcore")
            _, test = task_datasets(get_task("isic:test").load(root), image_size=args.size, crop_size=None)
            print(profile(args, detectors["patchcore"], test), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame(rows)
    table["images/s"] = (table["images"] / table["seconds"]).round(1)
    table["seconds"] = table["seconds"].round(1)
    table.insert(0, "device", device_name(torch.device("cpu")))
    publish(table, args.results, "real_images")


if __name__ == "__main__":
    main()
