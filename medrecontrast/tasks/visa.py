"""VisA (Zou et al.) from its official one-class split, ``visa/split_csv/1cls.csv``.

Columns ``object, split, label, image, mask``; paths are relative to the VisA root. Masks are stored
with values 0/255 (some with other non-zero values) and are binarised (non-zero -> 1) by the
transforms.
"""

from __future__ import annotations

from pathlib import Path

from medrecontrast.errors import DataLayoutError
from medrecontrast.tasks.base import (
    ABNORMAL,
    NORMAL,
    Protocol,
    Task,
    TaskFamily,
    item,
    read_label_csv,
    require_class,
)
from medrecontrast.tasks.unified import unified_family

VISA_CLASSES = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)

VISA_LAYOUT = (
    "<data root>/visa/split_csv/1cls.csv and <data root>/visa/<object>/Data/{Images,Masks}/... "
    "(the VisA archive unpacked as is)"
)


def load_visa(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    csv = root / "split_csv" / "1cls.csv"
    frame = read_label_csv(
        csv, ("object", "split", "label", "image", "mask"), task, paths=("image", "mask"), unique=("image",)
    )
    rows = frame[frame["object"] == task.options["object"]]
    if rows.empty:
        raise DataLayoutError(f"task '{task.name}': {csv} has no rows for object '{task.options['object']}'.")
    unknown = set(rows["label"]) - {"normal", "anomaly"}
    if unknown:
        raise DataLayoutError(
            f"task '{task.name}': {csv} has labels {sorted(unknown)}; expected 'normal' or 'anomaly'."
        )

    def record(row) -> dict:
        label = NORMAL if row.label == "normal" else ABNORMAL
        mask = root / row.mask if label == ABNORMAL and isinstance(row.mask, str) and row.mask else None
        return item(root / row.image, label, row.label, mask, id=str(Path(row.image).with_suffix("")))

    train = [record(r) for r in rows[rows["split"] == "train"].itertuples() if r.label == "normal"]
    test = [record(r) for r in rows[rows["split"] == "test"].itertuples()]
    return train, test


def visa_task(variant: str = "") -> Task:
    cls = require_class(variant, VISA_CLASSES, "VisA", "visa")
    return Task(
        name=f"visa:{cls}",
        modality="industrial",
        protocol=Protocol("1cls", "split=train", "split=test, masks binarised", has_masks=True),
        image_size=256,
        crop_size=None,
        list_items=load_visa,
        folder="visa",
        layout=VISA_LAYOUT,
        options={"object": cls},
    )


FAMILIES = (
    TaskFamily(
        "visa",
        visa_task,
        listed=("visa", "visa:<class>"),
        examples=lambda: [("visa | visa:<class>", visa_task("candle"))],
        members=lambda: [f"visa:{c}" for c in VISA_CLASSES],
    ),
    unified_family("visa", visa_task, VISA_CLASSES, "VisA"),
)
