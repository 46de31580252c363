"""``predict --model``: score images with an exported file (ONNX via onnxruntime, TorchScript via torch.jit), with
none of the suite's training code: the suite's readers decode each file and its data transforms resize it as the
run's test images were (the sizes are in the file's metadata); the graph does the rest."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from medrecontrast.deploy.formats import ExportedModel
from medrecontrast.deploy.outputs import claim_output, collect_images, readable_dataset, write_prediction
from medrecontrast.errors import UserInputError


def predict_with_model(
    model: str | os.PathLike,
    inputs: list[str | os.PathLike],
    out: str | os.PathLike | None = None,
    batch_size: int = 16,
) -> Path:
    """Score ``inputs`` (image files or folders) with the exported file ``model``; writes what ``predict --run``
    writes (``scores.csv`` with the run's label-free threshold and label where it had one, ``overlays/``,
    ``index.html``) into ``out`` (default ``<model's folder>/predictions/<UTC time>``; new or empty). Returns
    ``out``."""
    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    exported = ExportedModel(model)
    meta = exported.metadata
    files, ids = collect_images(inputs)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = claim_output(Path(out) if out else Path(model).parent / "predictions" / stamp)
    files, ids, unreadable, dataset = readable_dataset(files, ids, meta["image_size"], meta["crop_size"])
    scored, scores, maps = score_dataset(exported, dataset, batch_size)
    write_prediction(
        out,
        files,
        scored,
        scores,
        maps,
        unreadable,
        image_size=meta["image_size"],
        crop_size=meta["crop_size"],
        threshold=meta.get("threshold_holdout"),
        source=f"{Path(model).name} ({meta.get('display_name', meta['method'])}, exported from {meta.get('run')})",
    )
    return out


def score_dataset(
    exported: ExportedModel, dataset, batch_size: int = 16, progress: bool | int = False
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, scores, maps)`` of every image of ``dataset`` (the suite's items) scored by ``exported`` in batches
    of ``batch_size``; a VAE's draws are made as its checkpoint makes them: one stream seeded by the run's seed,
    batch after batch (so the same batch size gives the checkpoint's scores)."""
    import torch
    from torch.utils.data import DataLoader

    from medrecontrast.progress import tracked

    noise = exported.noise
    stream = torch.Generator().manual_seed(int(noise["seed"])) if noise else None
    ids, scores, maps = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size)
    what = "scoring with the exported file"
    for batch in tracked(loader, len(dataset), what, progress, count=lambda b: len(b["image"])):
        images = batch["image"].float().numpy()
        eps = None if stream is None else torch.randn((len(images), *noise["shape"][1:]), generator=stream).numpy()
        batch_scores, batch_maps = exported(images, eps)
        scores.append(batch_scores)
        maps.append(batch_maps)
        ids.extend(batch.get("id", [str(len(ids) + i) for i in range(len(images))]))
    return list(ids), np.concatenate(scores), np.concatenate(maps)
