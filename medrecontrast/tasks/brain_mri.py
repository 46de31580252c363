"""Brain tumour MRI (the Kaggle "Brain Tumor MRI Dataset", Nickparvar 2021, a compilation of figshare,
SARTAJ and Br35H): ``brain_mri/{Training,Testing}/{notumor,glioma,meningioma,pituitary}``.

Protocol: ``Training/notumor`` (1,591 in the full set) trains; the whole ``Testing/`` folder tests
(405 ``notumor`` normal, 906 tumours: glioma 300, meningioma 306, pituitary 300), each tumour class a
subtype. The tumour classes of ``Training/`` are never used.
"""

from __future__ import annotations

from pathlib import Path

from medrecontrast.data.readers import strip_image_suffix
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks.base import ABNORMAL, NORMAL, Protocol, Task, TaskFamily, item, require_dir
from medrecontrast.tasks.folder import find_subdir, list_image_files

NORMAL_CLASS = "notumor"
TUMOURS = ("glioma", "meningioma", "pituitary")
BRAIN_LAYOUT = (
    "<data root>/brain_mri/Training/notumor/*.jpg and <data root>/brain_mri/Testing/{notumor,glioma,meningioma,"
    "pituitary}/*.jpg (the Kaggle download's Training/ and Testing/ folders)"
)


def load_brain_mri(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    training = find_subdir(require_dir(root / "Training", "training images", task), NORMAL_CLASS)
    if training is None:
        raise DataLayoutError(
            f"task '{task.name}': missing folder {root / 'Training' / NORMAL_CLASS}. {task.layout_hint()}"
        )
    train = [
        item(p, NORMAL, NORMAL_CLASS, id=f"train/{strip_image_suffix(p.name)}") for p in list_image_files(training)
    ]
    testing = require_dir(root / "Testing", "test images, one folder per class", task)
    test, missing = [], []
    for name in (NORMAL_CLASS, *TUMOURS):
        folder = find_subdir(testing, name)
        if folder is None:
            missing.append(name)
            continue
        label = NORMAL if name == NORMAL_CLASS else ABNORMAL
        test += [item(p, label, name, id=f"{name}/{strip_image_suffix(p.name)}") for p in list_image_files(folder)]
    if missing:  # a test set without a class would silently change what the numbers mean
        raise DataLayoutError(
            f"task '{task.name}': missing folder(s) {', '.join(str(testing / m) for m in missing)}. "
            f"{task.layout_hint()}"
        )
    return train, test


def brain_mri_task(variant: str = "") -> Task:
    if variant:
        raise UserInputError(f"task 'brain-mri' has no variants (got 'brain-mri:{variant}')")
    return Task(
        name="brain-mri",
        modality="brain MRI",
        protocol=Protocol(
            "uad",
            "Training/notumor",
            "the whole Testing/ folder (glioma, meningioma, pituitary abnormal)",
            has_masks=False,
        ),
        image_size=256,
        crop_size=None,
        list_items=load_brain_mri,
        folder="brain_mri",
        layout=BRAIN_LAYOUT,
    )


FAMILIES = (
    TaskFamily(
        "brain-mri",
        brain_mri_task,
        listed=("brain-mri",),
        aliases=("brain_mri", "brain-tumor-mri"),
        examples=lambda: [("brain-mri", brain_mri_task())],
    ),
)
