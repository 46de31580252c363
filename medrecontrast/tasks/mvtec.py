"""MVTec AD (Bergmann et al.): ``mvtec/<class>/{train/good, test/<defect>, ground_truth/<defect>}``."""

from __future__ import annotations

from pathlib import Path

from medrecontrast.tasks.base import Task
from medrecontrast.tasks.folder import list_class_folders

MVTEC_CLASSES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)
# ReContrast keeps the trainable encoder's BatchNorm in eval mode on these classes (DESIGN.md §1).
MVTEC_BN_EVAL = frozenset({"toothbrush", "leather", "grid", "tile", "wood", "screw"})

MVTEC_LAYOUT = (
    "<data root>/mvtec/<class>/train/good/*.png, test/good/*.png, test/<defect>/*.png, "
    "ground_truth/<defect>/<stem>_mask.png (the official archive unpacked as is)"
)


def load_mvtec(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    return list_class_folders(task, root, normal="good")
