"""OCT2017 (Kermany et al.): ``oct2017/{train,test}/{NORMAL,CNV,DME,DRUSEN}``.

Paper protocol: ``train/NORMAL`` (26,315 B-scans) for training, the whole official ``test/`` folder
(250 per class) for testing; the abnormal classes of ``train/`` are never used.

Patients: a B-scan is named ``<CLASS>-<patient>-<k>.jpeg`` (``CNV-1016042-1.jpeg``); the patient is the number,
so one patient's NORMAL and CNV scans are one patient.
"""

from __future__ import annotations

import re
from pathlib import Path

from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks.base import Protocol, Task, TaskFamily
from medrecontrast.tasks.folder import list_class_folders

OCT_LAYOUT = (
    "<data root>/oct2017/train/NORMAL/*.jpeg and <data root>/oct2017/test/{NORMAL,CNV,DME,DRUSEN}/*.jpeg "
    "(the train/ and test/ folders of the OCT2017 download)"
)


OCT_NAME = re.compile(r"^[A-Za-z]+-(\d+)-\d+\.[A-Za-z]+$")
OCT_PATIENTS = "the patient number of <CLASS>-<patient>-<k>.jpeg"


def oct_patient(path: Path, below: str, header_patient, unit) -> str:
    """The patient of an OCT2017 B-scan, from its name; a file named otherwise is refused (the official files all
    follow the rule, so another name means another layout)."""
    found = OCT_NAME.match(Path(below).name)
    if found is None:
        raise DataLayoutError(
            f"task 'oct': {path} is not named <CLASS>-<patient>-<k>.jpeg as the OCT2017 files are, so its patient is "
            "unknown; use folder:<path> (its patient option) for other layouts."
        )
    return found.group(1)


def load_oct2017(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    return list_class_folders(task, root, normal="NORMAL", patient_of=oct_patient)


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
        patients=OCT_PATIENTS,
    )


FAMILIES = (
    TaskFamily(
        "oct", oct_task, listed=("oct",), aliases=("oct2017",), examples=lambda: [("oct (oct2017)", oct_task())]
    ),
)
