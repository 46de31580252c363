"""Export a finished run's detector (ONNX or TorchScript) and prove the file scores as the checkpoint does.

Parity is checked, not hoped for (anomalib's exported PatchCore scored image AUROC 0.47 where its checkpoint scored
0.66, anomalib #3726): the run's own test images (all, or ``check`` of them spread over the set) are scored by the
checkpoint (float32 on the CPU) and by the written file, and the file is kept only when every image's score and
every map value is within the method's ``export_tolerance`` of the checkpoint's, relative to the largest
checkpoint score (map value) checked. The numbers go into ``export.json`` beside the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from medrecontrast.deploy.formats import OPSET, ExportedModel
from medrecontrast.errors import UserInputError
from medrecontrast.paths import write_json
from medrecontrast.run.folder import EXPORT_RECORD, RunFolder


class ExportParityError(UserInputError):
    """The exported file does not score as the checkpoint does (beyond the method's tolerance)."""


def export_run(
    run: str | os.PathLike,
    format: str = "onnx",
    out: str | os.PathLike | None = None,
    *,
    check: int | None = None,
    data_root: str | os.PathLike | None = None,
    batch_size: int = 16,
    force: bool = False,
    progress: bool | int = False,
) -> dict:
    """Export the detector of the finished ``run`` as ``format`` to ``out`` (default ``<run>/export/model.onnx`` or
    ``model.torchscript.pt``), check parity on ``check`` of the run's test images (None: all) and return the
    ``export.json`` entry. A file that fails the check is not written (:class:`ExportParityError` with the
    numbers); an existing ``out`` is refused unless ``force``."""
    from medrecontrast.deploy.formats import FORMATS, check_format

    check_format(format)
    run = _finished(run)
    out = Path(out) if out else run.export_folder / f"model{FORMATS[format]}"
    if out.exists() and not force:
        raise UserInputError(f"{out} exists; choose another --out or pass --force to replace it.")
    _read_record(out.parent / EXPORT_RECORD)  # a foreign export.json is refused before anything is computed
    detector, config = _checkpoint(run)
    metrics = run.metrics()
    record = {
        "run": str(run),
        "run_name": config.name,
        "model_sha256": _sha256(run.model_path),
        "image_size": config.image_size,
        "crop_size": config.crop_size,
        "threshold_holdout": metrics.get("threshold_holdout"),
        "tolerance": dict(type(detector).export_tolerance),
        "noise": _noise(detector),
    }
    began = time.perf_counter()
    partial = out.with_name(f".{out.name}.{os.getpid()}.checking")
    try:
        detector.export(partial, format, input_size=config.input_size, metadata=record)
        seconds = time.perf_counter() - began
        parity = _verify(
            ExportedModel(partial), run, detector, config, check, data_root, batch_size, progress, written=False
        )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    entry = {
        "file": out.name,
        "format": format,
        "opset": OPSET if format == "onnx" else None,
        "method": detector.name,
        **record,
        **parity,
        "export_seconds": round(seconds, 2),
        "versions": _versions(format),
    }
    _record(out.parent / EXPORT_RECORD, entry)
    return entry


def verify_export(
    run: str | os.PathLike,
    file: str | os.PathLike,
    *,
    check: int | None = None,
    data_root: str | os.PathLike | None = None,
    batch_size: int = 16,
    progress: bool | int = False,
) -> dict:
    """Check that the exported ``file`` scores ``check`` of the finished ``run``'s test images (None: all) as the
    run's checkpoint does; returns the differences, or raises :class:`ExportParityError` with them (e.g. a file
    exported from another run)."""
    run = _finished(run)
    model = ExportedModel(file)  # a file that is not an exported one is refused before anything is scored
    meta = model.metadata
    origin = "" if meta.get("model_sha256") == _sha256(run.model_path) else f" (it was exported from {meta.get('run')})"
    detector, config = _checkpoint(run)
    return _verify(model, run, detector, config, check, data_root, batch_size, progress, written=True, note=origin)


def _finished(run) -> RunFolder:
    run = RunFolder(run)
    run.require_trained()
    return run


def _checkpoint(run: RunFolder):
    """The run's detector on the CPU in float32 (the exported graph's precision), and its configuration."""
    from medrecontrast.models.base import Detector
    from medrecontrast.run.config import expected_network

    config = run.config()
    detector = Detector.load(run.model_path, device="cpu", **expected_network(config))
    if getattr(detector.config, "amp", False):
        detector.config.amp = False
    return detector, config


def _verify(
    model, run: Path, detector, config, check, data_root, batch_size, progress, *, written, note: str = ""
) -> dict:
    """Score ``check`` of the run's test images with the checkpoint and the exported ``model``
    (:class:`~medrecontrast.deploy.formats.ExportedModel`); the parity numbers, or :class:`ExportParityError`."""
    from torch.utils.data import Subset

    from medrecontrast.run.split import run_datasets
    from medrecontrast.tasks import get_task

    if check is not None and check < 1:
        raise UserInputError(f"check must be at least 1 (test images to compare), got {check}")
    test = run_datasets(get_task(config.task, **config.task_options).load(data_root), config)[1]
    indices = _spread(len(test), check)
    checked = Subset(test, indices)
    reference = detector.predict(checked, batch_size=batch_size, progress=progress)
    parity = {
        "checked_images": len(indices),
        "test_images": len(test),
        **compare_with_file(model, checked, reference, batch_size, progress),
    }
    tolerance = type(detector).export_tolerance
    failed = [
        f"{what} differs by {parity[f'max_{what}_difference_relative']:.3g} of the largest (tolerance {limit:g})"
        for what, limit in tolerance.items()
        if not parity[f"max_{what}_difference_relative"] <= limit
    ]
    if failed:
        raise ExportParityError(
            f"the exported file{note} {'' if written else '(not written) '}does not score as {run.model_path} does: "
            f"{'; '.join(failed)} over {len(indices)} test image(s) (max score difference "
            f"{parity['max_score_difference']:.4g}, image AUROC {parity['image_auroc_checkpoint']} checkpoint vs "
            f"{parity['image_auroc_exported']} exported)."
        )
    return parity


def compare_with_file(model, dataset, reference, batch_size: int = 16, progress=False) -> dict:
    """Score ``dataset`` with the exported ``model`` (:class:`~medrecontrast.deploy.formats.ExportedModel`) and
    compare with the checkpoint's ``reference`` predictions: the largest absolute and relative (to the largest
    checkpoint value) score and map differences, and the image AUROC both ways (None where the images checked are
    of one class)."""
    from medrecontrast.deploy.predict import score_dataset

    _, scores, maps = score_dataset(model, dataset, batch_size, progress)
    score_diff = float(np.abs(scores - reference.scores).max())
    map_diff = float(np.abs(maps - reference.maps).max())
    labels = reference.labels
    return {
        "max_score_difference": score_diff,
        "max_score_difference_relative": score_diff / max(float(np.abs(reference.scores).max()), 1e-12),
        "max_map_difference": map_diff,
        "max_map_difference_relative": map_diff / max(float(np.abs(reference.maps).max()), 1e-12),
        "image_auroc_checkpoint": _auroc(labels, reference.scores),
        "image_auroc_exported": _auroc(labels, scores),
    }


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Image AUROC in percent of the labelled images (None where they are of one class)."""
    from medrecontrast.metrics import image_metrics

    known = labels >= 0
    if len(np.unique(labels[known])) < 2:
        return None
    return round(100 * image_metrics(labels[known], scores[known])["image_auroc"], 4)


def _spread(total: int, count: int | None) -> list[int]:
    """``count`` indices spread evenly over ``total`` test images (every image where None or more)."""
    if count is None or count >= total:
        return list(range(total))
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})


def _noise(detector) -> dict | None:
    shape = detector.noise_shape(1)
    if shape is None:
        return None
    return {
        "input": "eps",
        "shape": ["batch", *shape[1:]],
        "seed": int(detector.config.seed),
        "draw": "standard normal, torch.randn((batch, *shape[1:]), generator=torch.Generator().manual_seed(seed)), "
        "batch after batch in the order the images are scored (as the checkpoint draws them)",
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions(format: str) -> dict:
    from medrecontrast.run.environment import package_version

    names = ["medrecontrast", "torch"] + (["onnx", "onnxscript", "onnxruntime"] if format == "onnx" else [])
    return {name: package_version(name) for name in names}


def _record(path: Path, entry: dict) -> None:
    """Add ``entry`` to ``export.json`` (by file name), keeping the other files' entries."""
    entries = _read_record(path)
    entries[entry["file"]] = entry
    write_json(path, entries)


def _read_record(path: Path) -> dict:
    """The entries of an ``export.json`` (none where it does not exist); refused where it is not one of ours."""
    entries = {}
    if path.is_file():
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise UserInputError(f"{path} is not an export record of medrecontrast; move it away first.") from None
        if not isinstance(entries, dict) or any(not isinstance(v, dict) or "file" not in v for v in entries.values()):
            raise UserInputError(f"{path} is not an export record of medrecontrast; move it away first.")
    return entries


def describe_export(entry: dict, run, out=None) -> str:
    """One line on what :func:`export_run` wrote (its ``entry``): the file, the largest differences from the checkpoint
    against the method's tolerance, the AUROC both ways and where the record is."""
    folder = Path(out).parent if out else RunFolder(run).export_folder
    return (
        f"{folder / entry['file']}: {entry['checked_images']} test image(s) checked; largest difference from the "
        f"checkpoint: score {entry['max_score_difference_relative']:.2g}, map "
        f"{entry['max_map_difference_relative']:.2g} of the largest (tolerance {entry['tolerance']['score']:g}, "
        f"{entry['tolerance']['map']:g}); image AUROC {entry['image_auroc_checkpoint']} checkpoint, "
        f"{entry['image_auroc_exported']} exported. Record: {folder / EXPORT_RECORD}"
    )


def describe_verification(found: dict, file, run) -> str:
    """One line on what :func:`verify_export` found."""
    return (
        f"{file} scores {found['checked_images']} test image(s) of {run} as its checkpoint does: largest "
        f"difference score {found['max_score_difference_relative']:.2g}, map "
        f"{found['max_map_difference_relative']:.2g} of the largest."
    )
