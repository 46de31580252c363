"""MVTec AD (Bergmann et al.): ``mvtec/<class>/{train/good, test/<defect>, ground_truth/<defect>}``."""

from __future__ import annotations

from pathlib import Path

from medrecontrast.errors import UserInputError
from medrecontrast.tasks.base import Hyperparameters, Protocol, Task, TaskFamily
from medrecontrast.tasks.folder import list_class_folders
from medrecontrast.tasks.unified import unified_task

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
MVTEC_BN_EVAL = frozenset({"toothbrush", "leather", "grid", "tile", "wood", "screw"})

MVTEC_LAYOUT = (
    "<data root>/mvtec/<class>/train/good/*.png, test/good/*.png, test/<defect>/*.png, "
    "ground_truth/<defect>/<stem>_mask.png (the official archive unpacked as is)"
)


def load_mvtec(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    return list_class_folders(task, root, normal="good")


def check_class(cls: str, classes: tuple[str, ...], dataset: str, family: str) -> str:
    """``cls`` if it is one of ``classes``; else a user error listing them."""
    if not cls:
        raise UserInputError(f"task '{family}' needs a class, e.g. {family}:{classes[0]} ('{family}' alone, in a sweep, stands for all {len(classes)} classes)")
    if cls in classes:
        return cls
    raise UserInputError(f"'{cls}' is not a {dataset} class; known classes: {', '.join(classes)}")


def mvtec_task(variant: str = "") -> Task:
    cls = check_class(variant, MVTEC_CLASSES, "MVTec AD", "mvtec")
    return Task(
        name=f"mvtec:{cls}",
        modality="industrial",
        protocol=Protocol("official", "train/good", "test/* with pixel masks", has_masks=True),
        image_size=256,
        crop_size=None,
        hparams=Hyperparameters(iters=2000, batch_size=16, encoder_bn_train=cls not in MVTEC_BN_EVAL),
        list_items=load_mvtec,
        folder=f"mvtec/{cls}",
        layout=MVTEC_LAYOUT,
    )


def mvtec_unified_task(variant: str = "") -> Task:
    if variant:
        raise UserInputError(f"task 'mvtec-unified' has no variants (got 'mvtec-unified:{variant}')")
    return unified_task("mvtec-unified", [mvtec_task(c) for c in MVTEC_CLASSES], f"all {len(MVTEC_CLASSES)} MVTec AD classes")


FAMILIES = (
    TaskFamily(
        "mvtec",
        mvtec_task,
        listed=("mvtec", "mvtec:<class>"),
        examples=lambda: [("mvtec | mvtec:<class>", mvtec_task("bottle"))],
        members=lambda: [f"mvtec:{c}" for c in MVTEC_CLASSES],
        row_notes={"enc. BN": "train*"},
        footnote=f"* encoder BatchNorm in eval mode for MVTec {', '.join(sorted(MVTEC_BN_EVAL))}.",
    ),
    TaskFamily("mvtec-unified", mvtec_unified_task, listed=("mvtec-unified",), examples=lambda: [("mvtec-unified", mvtec_unified_task())]),
)
