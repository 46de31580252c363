"""Measure, on real files, the size of each difference between the suite and the authors' released code
that the README declares (README "Where the suite knowingly differs"):

1. patchcore-inspection's mask rule (``datasets/mvtec.py:82-85``: ``Resize(256)`` bilinear on the PIL mask,
   ``CenterCrop(224)``, ``ToTensor``; ``metrics.py:48``: ``astype(int)``, so only pixels at exactly 1.0 count)
   against the suite's (binarised at full size, nearest resize, 0.5), on the real MVTec ``grid`` masks;
2. the APTOS fundus crop (ReContrast ``prepare_data/prepare_aptos.py:28-39``: ``cv2.resize(..., INTER_LINEAR)``
   to 512 without anti-aliasing, saved as uint8 PNG) against the suite's anti-aliased crop, on the real
   fundus photos (needs ``opencv-python-headless``; skipped with a reason without it);
3. per-image AUPRO's thresholds (ReContrast ``utils.py`` ``compute_pro``: ``np.arange(min, max, (max - min) / 200)``,
   which sometimes yields 201 thresholds) against the suite's exact 200, on smooth random maps over the real masks.

    python benchmarks/released_differences.py [--data ../shared/data]

Prints one Markdown table; nothing is written. The released code is not imported: each rule is written
out here from its file and line.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage


def mask_rule(data: Path) -> list[str]:
    from torchvision import transforms

    from medrecontrast.data.dataset import task_datasets
    from medrecontrast.tasks import get_task

    grid = data / "mvtec_grid"
    if not grid.is_dir():
        return [f"| mask rule | skipped: {grid} not found | | |"]
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "mvtec").mkdir()
        (Path(root) / "mvtec" / "grid").symlink_to(grid.resolve(), target_is_directory=True)
        loaded = get_task("mvtec:grid").load(root)
        _, test = task_datasets(loaded, image_size=256, crop_size=224, cache="none")
        theirs_rule = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
        ours = theirs = 0
        for index, item in enumerate(loaded.test):
            if item["label"] != 1 or not item.get("mask"):
                continue
            ours += int((test[index]["mask"].numpy() > 0.5).sum())
            theirs += int(theirs_rule(Image.open(item["mask"])).numpy().astype(int).sum())
    return [
        f"| mask rule (PatchCore, 256 → 224) | {theirs:,} anomalous pixels (`astype(int)`) | {ours:,} | "
        f"{100 * (theirs - ours) / ours:+.1f} % for theirs |"
    ]


def fundus_crop(data: Path) -> list[str]:
    try:
        import cv2
    except ImportError:
        return ["| APTOS fundus crop | skipped: `pip install opencv-python-headless` to measure | | |"]
    from medrecontrast.data.fundus import crop_fundus

    photos = sorted((data / "aptos" / "train_images").glob("*.png")) + sorted((data / "eyepacs_fundus").glob("*.jpeg"))
    if not photos:
        return ["| APTOS fundus crop | skipped: no fundus photos found | | |"]
    means, p99s = [], []
    for photo in photos:
        rgb = np.asarray(Image.open(photo).convert("RGB"))
        theirs = released_fundus_crop(rgb, cv2).astype(np.float64) / 255
        ours = crop_fundus(rgb.transpose(2, 0, 1).astype(np.float32) / 255).transpose(1, 2, 0)
        difference = np.abs(theirs - ours)
        means.append(difference.mean())
        p99s.append(np.quantile(difference, 0.99))
    return [
        f"| APTOS fundus crop (512 px, {len(photos)} real photos) | `INTER_LINEAR`, uint8 | anti-aliased, float | "
        f"mean absolute difference {100 * min(means):.2f}–{100 * max(means):.2f} % of the range per photo, "
        f"99th percentile {100 * min(p99s):.1f}–{100 * max(p99s):.1f} % |"
    ]


def released_fundus_crop(rgb: np.ndarray, cv2) -> np.ndarray:
    """prepare_aptos.py:28-39 written out: the largest region with channel sum > 30, a square of its longer
    bounding side centred on its centroid (``astype('int16')`` truncation), 5 px margin, zero fill,
    ``cv2.resize`` to 512 with ``INTER_LINEAR``."""
    from skimage.measure import label, regionprops

    regions = regionprops(label(rgb.sum(axis=-1) > 30))
    region = max(regions, key=lambda r: r.area)
    side = (np.array(region.bbox[2:4]) - np.array(region.bbox[0:2])).max()
    box = np.concatenate([np.array(region.centroid) - side / 2, np.array(region.centroid) + side / 2]).astype("int16")
    low, high = np.array([box[0] - 5, box[1] - 5]), np.array([box[2] + 5, box[3] + 5])
    crop = np.zeros((*(high - low), 3), dtype=rgb.dtype)
    src_low, src_high = np.clip(low, 0, rgb.shape[:2]), np.clip(high, 0, rgb.shape[:2])
    crop[src_low[0] - low[0] : src_high[0] - low[0], src_low[1] - low[1] : src_high[1] - low[1]] = rgb[
        src_low[0] : src_high[0], src_low[1] : src_high[1]
    ]
    return cv2.resize(crop, (512, 512), interpolation=cv2.INTER_LINEAR)


def aupro_thresholds(data: Path) -> list[str]:
    from sklearn.metrics import auc

    from medrecontrast.metrics import aupro_image_values

    masks_dir = data / "mvtec_grid" / "ground_truth"
    files = sorted(masks_dir.glob("*/*.png"))
    if not files:
        return [f"| per-image AUPRO thresholds | skipped: {masks_dir} not found | | |"]
    rng = np.random.default_rng(0)
    extra, changes, cases = 0, [], 0
    for file in files:
        mask = np.asarray(Image.open(file).convert("L").resize((256, 256), Image.NEAREST)) > 127
        for _ in range(20):
            amap = ndimage.gaussian_filter(rng.random((256, 256)), 4) + rng.uniform(0, 0.05) * mask
            amap = ndimage.gaussian_filter(amap, 4)  # float64 like the released maps
            thresholds = np.arange(amap.min(), amap.max(), (amap.max() - amap.min()) / 200)
            cases += 1
            if len(thresholds) == 200:
                continue
            extra += 1
            ours = float(aupro_image_values(mask[None], amap[None])[0])
            changes.append(abs(released_pro(mask, amap, thresholds, auc) - ours))
    largest = max(changes) if changes else 0.0
    return [
        f"| per-image AUPRO thresholds ({cases} smooth maps on {len(files)} real masks) | `np.arange`: 201 "
        f"thresholds on {extra} of them | exactly 200 | AUPRO moves by at most {100 * largest:.1e} points there |"
    ]


def released_pro(mask: np.ndarray, amap: np.ndarray, thresholds: np.ndarray, auc) -> float:
    """utils.py ``compute_pro`` on one image, written out: mean region overlap and FPR per threshold, FPR < 0.3
    kept and rescaled by its maximum, trapezoidal area."""
    labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
    pros, fprs = [], []
    for th in thresholds:
        detected = amap > th
        pros.append(np.mean([detected[labelled == r].mean() for r in range(1, count + 1)]))
        fprs.append((detected & ~mask).sum() / (~mask).sum())
    pros, fprs = np.array(pros), np.array(fprs)
    keep = fprs < 0.3
    return float(auc(fprs[keep] / fprs[keep].max(), pros[keep]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = parser.parse_args()
    print("| difference | released | suite | size |")
    print("|---|---|---|---|")
    for measure in (mask_rule, fundus_crop, aupro_thresholds):
        for line in measure(args.data):
            print(line)


if __name__ == "__main__":
    main()
