"""MVTec AD (Bergmann et al.): ``mvtec/<class>/{train/good, test/<defect>, ground_truth/<defect>}``."""

from __future__ import annotations

from pathlib import Path

from medrecontrast.tasks.base import Protocol, Task, TaskFamily, require_class
from medrecontrast.tasks.folder import list_class_folders
from medrecontrast.tasks.unified import unified_family

MVTEC_CLASSES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
# ReContrast keeps the trainable encoder's BatchNorm in eval mode on these classes (recontrast_mvtec.py).

MVTEC_LAYOUT = (
    "<data root>/mvtec/<class>/train/good/*.png, test/good/*.png, test/<defect>/*.png, "
    "ground_truth/<defect>/<stem>_mask.png (the official archive unpacked as is)"
)


def load_mvtec(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    return list_class_folders(task, root, normal="good")


def mvtec_task(variant: str = "") -> Task:
    cls = require_class(variant, MVTEC_CLASSES, "MVTec AD", "mvtec")
    return Task(
        name=f"mvtec:{cls}",
        modality="industrial",
        protocol=Protocol("official", "train/good", "test/* with pixel masks", has_masks=True),
        image_size=256,
        crop_size=None,
        list_items=load_mvtec,
        folder=f"mvtec/{cls}",
        layout=MVTEC_LAYOUT,
    )


FAMILIES = (
    TaskFamily(
        "mvtec",
        mvtec_task,
        listed=("mvtec", "mvtec:<class>"),
        examples=lambda: [("mvtec | mvtec:<class>", mvtec_task("bottle"))],
        members=lambda: [f"mvtec:{c}" for c in MVTEC_CLASSES],
    ),
    unified_family("mvtec", mvtec_task, MVTEC_CLASSES, "MVTec AD"),
)
