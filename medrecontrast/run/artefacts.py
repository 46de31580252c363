"""What a run computes besides its configuration: scores, metrics, examples and pixel statistics.

The scores per test image and per held-out normal, every metric and the timings, a few images with their maps
(for the qualitative figures) and what the report needs for intervals of the pixel metrics; the files they go
into are :class:`~medrecontrast.run.folder.RunFolder`'s.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import numpy as np
import pandas as pd

from medrecontrast.metrics import THRESHOLD_QUANTILE, aupro_image_values, evaluate
from medrecontrast.resources import peak_memory
from medrecontrast.run.folder import RunFolder
from medrecontrast.stats import pixel_statistics

EXAMPLES = 4  # test images whose maps are kept for the qualitative figure


def evaluate_detector(
    detector,
    test,
    holdout,
    out: RunFolder | str | os.PathLike,
    quantile: float = THRESHOLD_QUANTILE,
    groups: list[str] | None = None,
    progress: bool | int = False,
    patients: list[str] | None = None,
    holdout_patients: list[str] | None = None,
) -> dict:
    """Score the test set, write its scores, pixel statistics and examples into the run folder ``out``, return
    every metric.

    Each evaluation has an id, written in every row of the scores and in the metrics (``evaluation``),
    so that results of two evaluations are never read as one (:func:`check_evaluation`).

    ``holdout`` (normal training images the detector never saw, or None) fixes the label-free threshold.
    ``groups`` (a unified task's member of each test image) gives metrics per member under
    ``per_class`` and their mean at the top level, as the unified scripts report the class mean.
    ``patients`` and ``holdout_patients`` (each test and held-out image's patient, where the task knows them)
    are written beside the scores, for the patient-level statistics of the report.
    """
    out = RunFolder(out)
    with peak_memory(detector.device) as memory:
        began = time.perf_counter()
        predictions = detector.predict(test, progress=progress)
        seconds = time.perf_counter() - began
    evaluation = uuid.uuid4().hex  # shared by scores.csv and metrics.json: the report checks they belong together
    frame = {"id": predictions.ids, "label": predictions.labels, "score": predictions.scores, "evaluation": evaluation}
    if groups is not None:
        frame["group"] = groups
    if patients is not None:
        frame["patient"] = patients
    if predictions.categories is not None:
        frame["category"] = predictions.categories  # the subtype (e.g. CNV, MEL) for per-subtype AUROC
    out.write_scores(pd.DataFrame(frame))
    _save_pixel_statistics(predictions, out)
    held_scores = None
    if holdout is not None:
        held_scores = detector.predict(holdout, progress=progress).scores
        held = {"score": held_scores}
        if holdout_patients is not None:
            held["patient"] = holdout_patients
        out.write_holdout_scores(pd.DataFrame(held))
    metrics = evaluate(predictions, held_scores, quantile, groups)
    _save_examples(test, predictions, out)
    metrics["evaluation"] = evaluation
    metrics["timings"] = {
        "inference_s": seconds,
        "images_per_s": len(predictions.ids) / seconds if seconds else None,
        "inference_peak_memory_mb": memory["peak_memory_mb"],
    }
    return metrics


def _save_pixel_statistics(predictions, out: RunFolder) -> None:
    """Per-image sufficient statistics of the pixel metrics (``stats.pixel_statistics``), so that the
    report can resample test images for pixel AUROC and AUPRO intervals without the full maps; the
    per-image AUPRO of each abnormal image rides along. Nothing is written for a task without masks."""
    if predictions.masks is None or not np.asarray(predictions.masks).any():
        return
    known = (
        np.ones(len(predictions.ids), bool)
        if predictions.mask_known is None
        else np.asarray(predictions.mask_known, bool)
    )
    statistics = pixel_statistics(predictions.masks, predictions.maps)
    for key in ("normal_above", "abnormal_above", "region_overlap", "normal_pixels", "abnormal_pixels", "regions"):
        statistics[key][~known] = 0  # an image without its mask takes no part in the pixel metrics
    per_image = np.full(len(known), np.nan)
    counted = known & (np.asarray(predictions.labels) == 1)
    per_image[counted] = aupro_image_values(predictions.masks[counted], predictions.maps[counted])
    out.write_pixel_statistics(ids=np.array(predictions.ids), aupro_per_image=per_image, **statistics)


def example_indices(labels: np.ndarray, categories: list[str], count: int = EXAMPLES) -> list[int]:
    """One normal test image, then abnormal ones taking each abnormality class in turn.

    A pure function of the test set, so every method and seed of a task shows the same images.
    """
    normal = [int(i) for i in np.flatnonzero(labels == 0)[:1]]
    by_class: dict[str, list[int]] = {}
    for i in np.flatnonzero(labels == 1):
        by_class.setdefault(categories[i], []).append(int(i))
    abnormal: list[int] = []
    while len(abnormal) < count - len(normal) and any(by_class.values()):
        for queue in by_class.values():
            if queue and len(abnormal) < count - len(normal):
                abnormal.append(queue.pop(0))
    return normal + sorted(abnormal)


# the cases each run keeps beside the shared examples: its own best and worst scored normal and abnormal images
CASES = (
    ("abnormal, highest score", 1, -1),
    ("abnormal, lowest score (missed first)", 1, 0),
    ("normal, highest score (false alarm first)", 0, -1),
    ("normal, lowest score", 0, 0),
)


def case_indices(labels: np.ndarray, scores: np.ndarray) -> list[tuple[str, int]]:
    """``(case, index)`` of the run's own best and worst scored abnormal and normal test images (:data:`CASES`);
    ties go to the first image in test order, so the choice is a function of the scores."""
    chosen = []
    for case, label, end in CASES:
        members = np.flatnonzero(labels == label)
        if len(members):
            order = members[np.argsort(scores[members], kind="stable")]
            chosen.append((case, int(order[end])))
    return chosen


def _save_examples(test, predictions, out: RunFolder) -> None:
    """Test images (uint8 RGB), their masks and anomaly maps, for the qualitative figures: a few images shared by
    every method and seed of the task (``case`` empty), then the run's own best and worst scored normal and abnormal
    images (:func:`case_indices`, ``case`` says which)."""
    shared = example_indices(predictions.labels, predictions.categories or [""] * len(predictions.ids))
    cases = case_indices(predictions.labels, predictions.scores)
    chosen = shared + [index for _, index in cases]
    images = np.stack([display_image(test[i]["image"]) for i in chosen])
    masks = (
        predictions.masks[chosen]
        if predictions.masks is not None
        else np.zeros((len(chosen), *images.shape[1:3]), np.uint8)
    )
    out.write_examples(
        ids=np.array([predictions.ids[i] for i in chosen]),
        case=np.array([""] * len(shared) + [case for case, _ in cases]),
        labels=predictions.labels[chosen],
        images=images,
        masks=masks,
        maps=predictions.maps[chosen].astype(np.float16),
        scores=predictions.scores[chosen],
    )


def display_image(image) -> np.ndarray:
    """A dataset's (3, H, W) image (pixels in [0, 1]) as (H, W, 3) uint8 for display."""
    array = np.asarray(image, dtype=np.float32)
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def data_record(data, data_root) -> dict:
    """What the run's data record (and each entry of its evaluations) says about the files a run read, with the
    intensity rule(s) its DICOM and NIfTI files were read with (``data.readers``)."""
    from medrecontrast.data.readers import image_format

    items = data.train + data.test
    rules = {json.dumps(it["intensity"], sort_keys=True) for it in items if it.get("intensity")}
    intensity = [json.loads(rule) for rule in sorted(rules)]
    if any(image_format(it["image"]) == "dicom" and not it.get("intensity") for it in items):
        intensity.append("dicom: each file's VOI LUT or window, else the range of its stored bits")
    from medrecontrast.data.items import patient_counts
    from medrecontrast.data.leaks import find_leaks

    record = {**data.fingerprint(), "data_root": None if data_root is None else str(data_root)}
    if data.has_patients:  # who the images belong to, and what they share across the splits (the report says it)
        record["patients"] = {"train": patient_counts(data.train), "test": patient_counts(data.test)}
    leaks = find_leaks(data).lines() + data.labelling_notes()  # what the report must say before the numbers
    if leaks:
        record["leaks"] = leaks
    return {**record, "intensity": intensity} if intensity else record


def check_evaluation(run, scores: pd.DataFrame, metrics: dict) -> None:
    """The scores and metrics of ``run`` come from the same evaluation (runs written before evaluation ids existed
    have none and pass); else a user error saying how to repair it."""
    from medrecontrast.errors import UserInputError

    stored = metrics.get("evaluation")
    ids = set(scores["evaluation"].astype(str)) if "evaluation" in scores else set()
    if stored is None and not ids:
        return
    if ids != {str(stored)}:
        raise UserInputError(
            f"{run}: {RunFolder.SCORES} and {RunFolder.METRICS} come from different evaluations (a re-evaluation was "
            "interrupted or a file was replaced); re-evaluate the run with `medrecontrast evaluate --force` "
            "before reporting it."
        )
