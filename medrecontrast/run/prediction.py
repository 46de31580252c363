"""Scores and overlays of new images from a finished run's saved detector, without retraining."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from medrecontrast.errors import UserInputError
from medrecontrast.paths import atomic_path, write_csv
from medrecontrast.run.artefacts import display_image
from medrecontrast.run.config import expected_network, read_run_config


def predict_images(
    run: str | os.PathLike, inputs: list[str | os.PathLike], out: str | os.PathLike | None = None, batch_size: int = 16
) -> Path:
    """Score new images with a finished run's saved detector, without retraining.

    ``inputs`` are image files or folders (searched recursively for every format the suite reads).
    Each image is resized like the run's test images. Writes into ``out`` (default
    ``<run>/predictions/<UTC time>``; it must be new or empty): ``scores.csv`` (one row per image:
    id, path, score and, where the run fixed a label-free threshold from held-out normals, that
    threshold and the label it gives) and ``overlays/<id>.png`` (the image with its anomaly map, one
    colour scale for all images). Returns ``out``.
    """
    from medrecontrast.data.dataset import image_dataset
    from medrecontrast.data.readers import image_format, strip_image_suffix
    from medrecontrast.models.base import Detector

    run = Path(run)
    if not (run / "config.json").is_file() or not (run / "model.pt").is_file():
        raise UserInputError(f"{run} is not a finished run folder (expected config.json and model.pt).")
    config = read_run_config(run)
    files: list[Path] = []
    for given in map(Path, inputs):
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.is_file() and image_format(p))
            if not found:
                raise UserInputError(f"{given} holds no image the suite reads (PNG, JPEG, BMP, TIFF, DICOM, NIfTI).")
            files += found
        elif given.is_file():
            if not image_format(given):
                raise UserInputError(f"{given} is not an image the suite reads (PNG, JPEG, BMP, TIFF, DICOM, NIfTI).")
            files.append(given)
        else:
            raise UserInputError(f"{given} does not exist.")
    ids = [strip_image_suffix(p.name) for p in files]
    if len(set(ids)) < len(ids):  # several folders hold the same name: the path below their common folder
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in files]))
        ids = [strip_image_suffix(p.resolve().relative_to(root).as_posix()).replace("/", "__") for p in files]
    if len(set(ids)) < len(ids):
        raise UserInputError("some inputs are the same image file given twice; give each once.")
    out = Path(out) if out else run / "predictions" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if out.exists() and any(out.iterdir()):
        raise UserInputError(f"{out} is not empty; choose a new or empty out=DIR (predict never overwrites files).")
    detector = Detector.load(run / "model.pt", **expected_network(config))
    items = [{"image": str(p), "label": 0, "id": i} for p, i in zip(files, ids)]
    dataset = image_dataset(items, config.image_size, config.crop_size, masks=False, cache="none")
    predictions = detector.predict(dataset, batch_size=batch_size)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    threshold = metrics.get("threshold_holdout")
    frame = pd.DataFrame({"id": predictions.ids, "path": [str(p) for p in files], "score": predictions.scores})
    if threshold is not None:
        frame["threshold_holdout"] = threshold
        frame["label"] = np.where(predictions.scores >= threshold, "abnormal", "normal")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "scores.csv", frame)
    _save_overlays(dataset, predictions, out / "overlays")
    return out


def _save_overlays(dataset, predictions, folder: Path) -> None:
    """Each image with its anomaly map over it (inferno, one colour scale for all images) as PNG."""
    from matplotlib import colormaps
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    low, high = float(predictions.maps.min()), float(predictions.maps.max())
    colour = colormaps["inferno"]
    for index, identifier in enumerate(predictions.ids):
        image = display_image(dataset[index]["image"]).astype(np.float32)
        scaled = (predictions.maps[index] - low) / max(high - low, 1e-12)
        heat = colour(scaled)[..., :3] * 255
        blended = (0.5 * image + 0.5 * heat).round().astype(np.uint8)
        with atomic_path(folder / f"{identifier}.png") as partial:
            Image.fromarray(blended).save(partial, format="PNG")
