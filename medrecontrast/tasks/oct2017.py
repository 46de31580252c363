"""OCT2017 (Kermany et al.): ``oct2017/{train,test}/{NORMAL,CNV,DME,DRUSEN}``.

Paper protocol: ``train/NORMAL`` (26,315 B-scans) for training, the whole official ``test/`` folder
(250 per class) for testing; the abnormal classes of ``train/`` are never used.
"""

from __future__ import annotations

from pathlib import Path

from medrecontrast.errors import UserInputError
from medrecontrast.tasks.base import Protocol, Task, TaskFamily
from medrecontrast.tasks.folder import list_class_folders

OCT_LAYOUT = (
    "<data root>/oct2017/train/NORMAL/*.jpeg and <data root>/oct2017/test/{NORMAL,CNV,DME,DRUSEN}/*.jpeg "
    "(the train/ and test/ folders of the OCT2017 download)"
)


def load_oct2017(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    return list_class_folders(task, root, normal="NORMAL")


def oct_task(variant: str = "") -> Task:
    if variant:
        raise UserInputError(f"task 'oct' has no variants (got 'oct:{variant}')")
    return Task(
        name="oct",
        modality="OCT",
        protocol=Protocol("paper", "train/NORMAL", "the whole official test/ folder", has_masks=False),
        image_size=256,
        crop_size=None,
        list_items=load_oct2017,
        folder="oct2017",
        layout=OCT_LAYOUT,
    )


FAMILIES = (
    TaskFamily(
        "oct", oct_task, listed=("oct",), aliases=("oct2017",), examples=lambda: [("oct (oct2017)", oct_task())]
    ),
)
