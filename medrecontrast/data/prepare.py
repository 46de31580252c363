"""One-off preprocessing that writes new files next to a dataset (never touching the originals)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import track

from medrecontrast.data.fundus import FUNDUS_SIZE, crop_fundus
from medrecontrast.data.readers import read_image
from medrecontrast.errors import DataLayoutError
from medrecontrast.tasks.aptos import APTOS_PREPARED_DIR
from medrecontrast.tasks.base import read_label_csv, require_dir, resolve_data_root
from medrecontrast.tasks.registry import get_task


def prepare_aptos(data_root: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Crop the black border of every APTOS photo once and save it as a 512x512 PNG.

    Writes ``<data root>/aptos/prepared_512/<id_code>.png`` (each file atomically, so an
    interrupted run resumes where it stopped); afterwards the ``aptos`` task reads these files and
    skips the crop. Returns counts of written and already present files.
    """
    task = get_task("aptos")
    root = resolve_data_root(data_root, task) / task.folder
    frame = read_label_csv(root / "train.csv", ("id_code", "diagnosis"), task)
    source = require_dir(root / "train_images", "the Kaggle train images", task)
    out = root / APTOS_PREPARED_DIR
    out.mkdir(exist_ok=True)
    ids = frame["id_code"].astype(str).tolist()
    missing = [i for i in ids if not (source / f"{i}.png").is_file()]
    if missing:
        raise DataLayoutError(f"{len(missing)} image(s) listed in {root / 'train.csv'} are missing from {source}, e.g. {missing[0]}.png")
    written = 0
    for image_id in track(ids, description="cropping APTOS fundus photos", console=Console(stderr=True), disable=not progress):
        target = out / f"{image_id}.png"
        if target.is_file():
            continue
        cropped = crop_fundus(read_image(source / f"{image_id}.png"), FUNDUS_SIZE)
        _save_png_atomically(cropped, target)
        written += 1
    return {"written": written, "already_present": len(ids) - written, "folder": str(out)}


def _save_png_atomically(image: np.ndarray, target: Path) -> None:
    pixels = np.round(np.moveaxis(image, 0, -1) * 255).astype(np.uint8)
    partial = target.with_name(f".{target.name}.partial")
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(partial, format="PNG")
    os.replace(partial, target)
