"""Scores and overlays of new images from a finished run's saved detector, without retraining."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from medrecontrast.deploy.outputs import (
    UNREADABLE,
    claim_output,
    collect_images,
    map_on_original,
    readable_dataset,
    write_prediction,
)
from medrecontrast.run.config import expected_network
from medrecontrast.run.folder import RunFolder

__all__ = ["UNREADABLE", "map_on_original", "predict_images"]


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
    from medrecontrast.models.base import Detector

    run = RunFolder(run)
    run.require_trained()
    config = run.config()
    files, ids = collect_images(inputs)
    out = claim_output(
        Path(out) if out else run.predictions_folder / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    )
    detector = Detector.load(run.model_path, **expected_network(config))
    files, ids, unreadable, dataset = readable_dataset(files, ids, config.image_size, config.crop_size)
    predictions = detector.predict(dataset, batch_size=batch_size)
    metrics = run.metrics()
    write_prediction(
        out,
        files,
        predictions.ids,
        predictions.scores,
        predictions.maps,
        unreadable,
        image_size=config.image_size,
        crop_size=config.crop_size,
        threshold=metrics.get("threshold_holdout"),
        source=str(run),
    )
    return out
