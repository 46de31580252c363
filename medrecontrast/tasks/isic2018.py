"""ISIC 2018 Task 3 (skin lesion classification) as anomaly detection: NV (melanocytic nevus) is normal.

Protocols: ``val`` (the paper's) trains on the NV images of the Training set (6,705) and tests on
the whole Validation set (193); ``test`` (MedIAnomaly's) tests on the whole Test set (1,512) instead.
Each set is its ``ISIC2018_Task3_<Set>_Input/`` folder plus its one-hot ground-truth CSV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks.base import (
    ABNORMAL,
    NORMAL,
    Protocol,
    Task,
    TaskFamily,
    item,
    read_label_csv,
)

ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
ISIC_NORMAL = "NV"
ISIC_PROTOCOLS = {"val": "Validation", "test": "Test"}

ISIC_LAYOUT = (
    "<data root>/isic2018/ISIC2018_Task3_{Training,Validation,Test}_Input/*.jpg and "
    "<data root>/isic2018/ISIC2018_Task3_<Set>_GroundTruth/ISIC2018_Task3_<Set>_GroundTruth.csv "
    "(columns image, MEL, NV, BCC, AKIEC, BKL, DF, VASC; the CSV may also sit directly in isic2018/)"
)


def ground_truth_csv(root: Path, subset: str) -> Path:
    """The official CSV inside its GroundTruth folder, or next to it."""
    name = f"ISIC2018_Task3_{subset}_GroundTruth"
    nested = root / name / f"{name}.csv"
    return nested if nested.is_file() or not (root / f"{name}.csv").is_file() else root / f"{name}.csv"


def subset_items(task: Task, root: Path, subset: str, normals_only: bool) -> list[dict]:
    csv = ground_truth_csv(root, subset)
    frame = read_label_csv(csv, ("image", *ISIC_CLASSES), task, ids="image")
    one_hot = frame[list(ISIC_CLASSES)].to_numpy(dtype=float)
    bad_rows = np.flatnonzero(one_hot.sum(axis=1) != 1)
    if len(bad_rows):
        raise DataLayoutError(
            f"task '{task.name}': {csv} row {bad_rows[0] + 2} is not one-hot over {', '.join(ISIC_CLASSES)}."
        )
    input_dir = root / f"ISIC2018_Task3_{subset}_Input"
    if not input_dir.is_dir():
        raise DataLayoutError(
            f"task '{task.name}': missing folder {input_dir} (the {subset} images). Expected layout: {task.layout}"
        )
    records = []
    for image_id, row in zip(frame["image"].astype(str), one_hot):
        category = ISIC_CLASSES[int(row.argmax())]
        if normals_only and category != ISIC_NORMAL:
            continue
        records.append(
            item(input_dir / f"{image_id}.jpg", NORMAL if category == ISIC_NORMAL else ABNORMAL, category, id=image_id)
        )
    return records


def load_isic2018(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    test_subset = ISIC_PROTOCOLS[task.options.get("protocol", "val")]
    return subset_items(task, root, "Training", normals_only=True), subset_items(
        task, root, test_subset, normals_only=False
    )


def isic_task(variant: str = "") -> Task:
    """``isic`` (the paper's Validation protocol) or ``isic:test`` (MedIAnomaly's Test protocol)."""
    protocol = variant or "val"
    if protocol not in ISIC_PROTOCOLS:
        raise UserInputError(
            f"unknown ISIC2018 protocol '{protocol}'; use 'isic' (paper: Validation set) or 'isic:test' (Test set)."
        )
    test_set = ISIC_PROTOCOLS[protocol]
    return Task(
        name="isic" if protocol == "val" else f"isic:{protocol}",
        modality="dermoscopy",
        protocol=Protocol(
            "paper" if protocol == "val" else "medianomaly",
            "NV images of the Training set",
            f"the whole {test_set} set",
            has_masks=False,
        ),
        image_size=256,
        crop_size=224,
        list_items=load_isic2018,
        folder="isic2018",
        layout=ISIC_LAYOUT,
        options={"protocol": protocol},
    )


FAMILIES = (
    TaskFamily(
        "isic",
        isic_task,
        listed=("isic", "isic:test"),
        aliases=("isic2018",),
        examples=lambda: [("isic (isic2018)", isic_task()), ("isic:test", isic_task("test"))],
    ),
)
