"""``predict --model``: score images with an exported file (ONNX via onnxruntime, TorchScript via torch.jit), with
none of the suite's training code: the suite's readers decode each file and its data transforms resize it as the
run's test images were (the sizes are in the file's metadata); the graph does the rest."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from medrecontrast.deploy.formats import ExportedModel
from medrecontrast.deploy.outputs import claim_output, collect_images, readable, write_prediction
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
    import torch
    from torch.utils.data import DataLoader

    from medrecontrast.data.dataset import image_dataset

    if batch_size < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    exported = ExportedModel(model)
    meta = exported.metadata
    files, ids = collect_images(inputs)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = claim_output(Path(out) if out else Path(model).parent / "predictions" / stamp)
    files, ids, unreadable = readable(files, ids)
    if not files:
        listed = "; ".join(f"{u['path']}: {u['problem']}" for u in unreadable[:5])
        raise UserInputError(f"none of the {len(unreadable)} input image(s) can be read: {listed}")
    items = [{"image": str(p), "label": 0, "id": i} for p, i in zip(files, ids)]
    dataset = image_dataset(items, meta["image_size"], meta["crop_size"], masks=False, cache="none")
    # a VAE's draws, made as its checkpoint makes them: one seeded stream, batch after batch
    stream = torch.Generator().manual_seed(int(exported.noise["seed"])) if exported.noise else None
    scores, maps, scored = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size):
        images = batch["image"].float().numpy()
        eps = None
        if stream is not None:
            eps = torch.randn((len(images), *exported.noise["shape"][1:]), generator=stream).numpy()
        batch_scores, batch_maps = exported(images, eps)
        scores.append(batch_scores)
        maps.append(batch_maps)
        scored.extend(batch["id"])
    write_prediction(
        out,
        files,
        list(scored),
        np.concatenate(scores),
        np.concatenate(maps),
        unreadable,
        image_size=meta["image_size"],
        crop_size=meta["crop_size"],
        threshold=meta.get("threshold_holdout"),
        source=f"{Path(model).name} ({meta.get('display_name', meta['method'])}, exported from {meta.get('run')})",
    )
    return out
