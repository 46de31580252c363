"""Paediatric chest X-rays (Kermany et al., Cell 2018; the ZhangLab "chest_xray" download):
``chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}``.

Protocol of the UAD literature on this set (e.g. SQUID, CVPR 2023): every normal of the official
training split trains (``train/NORMAL``, 1,341 images, plus the 8 of ``val/NORMAL`` when that folder
exists: the official validation split is all-normal-or-pneumonia and too small to be a test set),
the whole official ``test/`` folder tests (234 normal, 390 pneumonia). The pneumonia images' file
names say ``bacteria`` or ``virus`` (``person1_bacteria_1.jpeg``): those are the subtypes, so the
subtype table and forest plot show which kind a method misses. ``train/PNEUMONIA`` is never used.

Patients: a pneumonia file is named by its child (``person1_bacteria_1.jpeg``: ``person1``; the 390 test images
come from 202 children); a normal file by its study (``IM-0011-0001.jpeg``, ``IM-0011-0001-0002.jpeg``:
``IM-0011``; ``NORMAL2-IM-0374-0001.jpeg``: ``NORMAL2-IM-0374``, a second numbering). Checked on the real files:
the study numbers of ``train/NORMAL`` and ``test/NORMAL`` do not overlap (test IM-0001 to IM-0111 and
NORMAL2-IM-0007 to -0381; train from IM-0115 and NORMAL2-IM-0384), so the names support the study as the unit of
the normals; whether a study is one child or a child's several visits the names do not say.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from medrecontrast.data.readers import strip_image_suffix
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks.base import ABNORMAL, NORMAL, Protocol, Task, TaskFamily, item, require_dir
from medrecontrast.tasks.folder import find_subdir, list_image_files

CHEST_LAYOUT = (
    "<data root>/chest_xray/train/NORMAL/*.jpeg, optional <data root>/chest_xray/val/NORMAL/*.jpeg and "
    "<data root>/chest_xray/test/{NORMAL,PNEUMONIA}/*.jpeg (the chest_xray folder of the download)"
)
SUBTYPES = ("bacteria", "virus")
PATIENT_NAMES = re.compile(r"^(person\d+)_|^((?:NORMAL2-)?IM-\d+)-", re.IGNORECASE)
CHEST_PATIENTS = "child of a pneumonia file (person<N>_...); study of a normal file (IM-<N>-..., NORMAL2-IM-<N>-...)"


def chest_patient(name: str) -> str | None:
    """``person12`` for ``person12_virus_6.jpeg``, ``IM-0011`` for ``IM-0011-0001-0002.jpeg``; None for a name of
    neither form."""
    found = PATIENT_NAMES.match(name)
    return None if found is None else (found.group(1) or found.group(2))


def pneumonia_subtype(name: str) -> str:
    """``bacteria`` or ``virus`` from a pneumonia file name (``person1_virus_6.jpeg``), else ``PNEUMONIA``."""
    words = name.lower().replace("-", "_").split("_")
    found = [s for s in SUBTYPES if s in words]
    return found[0] if len(found) == 1 else "PNEUMONIA"


def load_chest_xray(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    train = []
    for split in ("train", "val"):
        folder = find_subdir(root / split, "NORMAL")
        if folder is None:
            if split == "train":
                raise DataLayoutError(
                    f"task '{task.name}': missing folder {root / 'train' / 'NORMAL'}. {task.layout_hint()}"
                )
            continue
        train += [
            item(p, NORMAL, "NORMAL", id=f"{split}/{strip_image_suffix(p.name)}", **_patient(p))
            for p in list_image_files(folder)
        ]
    test_root = require_dir(root / "test", "the official test split", task)
    test = []
    for name, label in (("NORMAL", NORMAL), ("PNEUMONIA", ABNORMAL)):
        folder = find_subdir(test_root, name)
        if folder is None:
            raise DataLayoutError(f"task '{task.name}': missing folder {test_root / name}. {task.layout_hint()}")
        for path in list_image_files(folder):
            category = "NORMAL" if label == NORMAL else pneumonia_subtype(path.name)
            test.append(item(path, label, category, id=f"{name}/{strip_image_suffix(path.name)}", **_patient(path)))
    unnamed = [it["image"] for it in train + test if "patient" not in it]
    if unnamed:
        warnings.warn(
            f"task '{task.name}': {len(unnamed)} file name(s) name no child or study (e.g. {unnamed[0]}); each of them "
            "is its own unit in the patient-level statistics",
            stacklevel=2,
        )
    return train, test


def _patient(path: Path) -> dict:
    patient = chest_patient(path.name)
    return {} if patient is None else {"patient": patient}


def chest_xray_task(variant: str = "") -> Task:
    if variant:
        raise UserInputError(f"task 'chest-xray' has no variants (got 'chest-xray:{variant}')")
    return Task(
        name="chest-xray",
        modality="chest X-ray",
        protocol=Protocol(
            "uad",
            "train/NORMAL (+ val/NORMAL where present)",
            "the whole official test/ folder (NORMAL; PNEUMONIA as bacteria/virus)",
            has_masks=False,
        ),
        image_size=256,
        crop_size=None,
        list_items=load_chest_xray,
        folder="chest_xray",
        layout=CHEST_LAYOUT,
        patients=CHEST_PATIENTS,
    )


FAMILIES = (
    TaskFamily(
        "chest-xray",
        chest_xray_task,
        listed=("chest-xray",),
        aliases=("chest_xray", "pneumonia"),
        examples=lambda: [("chest-xray", chest_xray_task())],
    ),
)
