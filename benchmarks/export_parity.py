"""How far exported files score from their checkpoints, per method and format, on the CPU: the README's tolerances.

    python benchmarks/export_parity.py [--methods ...] [--profiles tiny lite] [--out /tmp/export-parity]

Each method trains a short run on the built-in synthetic OCT task (tiny profile: 64 px, random weights; lite profile:
EfficientNet-Lite0 with its ImageNet weights at 224 px, for the methods it applies to), is exported as ONNX and as
TorchScript with ``medrecontrast.run.export_run`` (every test image checked), and the table gives the largest score
and map differences from the checkpoint relative to the largest checkpoint value, the image AUROC both ways, and the
scoring time per image of the checkpoint and of the file (onnxruntime or torch.jit, batch 16, this process's
threads). Writes benchmarks/results/export_parity.csv; the run folders go to ``--out`` (deleted afterwards unless
``--keep``).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from common import publish

from medrecontrast.deploy.formats import ExportedModel
from medrecontrast.run import train_run
from medrecontrast.run.export import export_run
from medrecontrast.tasks import get_task

SHORT = {
    "recontrast": {"iters": 20},
    "rd4ad": {"iters": 20},
    "patchcore": {},
    "dinomaly": {"iters": 20},
    "ae": {"iters": 100},
    "vae": {"iters": 100},
    "memae": {"iters": 100},
    "aeu": {"iters": 100},
}
LITE = ("recontrast", "rd4ad", "patchcore")  # the methods whose lite profile uses EfficientNet-Lite0


def per_image_ms(score, images: np.ndarray, batch: int = 16) -> float:
    began = time.perf_counter()
    for start in range(0, len(images), batch):
        score(images[start : start + batch])
    return round(1000 * (time.perf_counter() - began) / len(images), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(SHORT))
    parser.add_argument("--profiles", nargs="+", default=["tiny", "lite"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/export-parity"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    task = get_task("synth-oct", n_train=40, n_test_normal=20, n_test_abnormal=20)
    rows = []
    for profile in args.profiles:
        for method in args.methods:
            if profile == "lite" and method not in LITE:
                continue
            run = args.out / profile / method
            train_run(task, method, run, profile=profile, overrides=SHORT[method], progress=False, force=True)
            for format in ("onnx", "torchscript"):
                entry = export_run(run, format, force=True)
                model = ExportedModel(run / "export" / entry["file"])
                side = model.side
                images = np.random.default_rng(0).random((32, 3, side, side), dtype=np.float32)
                eps = np.zeros((16, *model.noise["shape"][1:]), np.float32) if model.noise else None
                from medrecontrast.models.base import Detector

                detector = Detector.load(run / "model.pt", device="cpu")
                with torch.no_grad():
                    checkpoint_ms = per_image_ms(lambda x: detector.score_batch(torch.from_numpy(x)), images)
                file_ms = per_image_ms(lambda x: model(x, None if eps is None else eps[: len(x)]), images)
                rows.append(
                    {
                        "method": method,
                        "profile": profile,
                        "side": side,
                        "format": format,
                        "images": entry["checked_images"],
                        "score diff (rel)": f"{entry['max_score_difference_relative']:.1e}",
                        "map diff (rel)": f"{entry['max_map_difference_relative']:.1e}",
                        "tolerance": entry["tolerance"]["score"],
                        "AUROC ckpt": entry["image_auroc_checkpoint"],
                        "AUROC file": entry["image_auroc_exported"],
                        "export s": entry["export_seconds"],
                        "ckpt ms/img": checkpoint_ms,
                        "file ms/img": file_ms,
                    }
                )
                print(rows[-1], flush=True)
    publish(pd.DataFrame(rows), Path(__file__).parent / "results", "export_parity")
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
