"""BMAD's benchmarks as released (Bao et al., CVPR-W 2024; DorisBao/BMAD, its Google Drive folders): one folder
per benchmark under ``<data root>/bmad/``, each ``train/good``, ``valid/{good,Ungood}``, ``test/{good,Ungood}``.

The three sets with pixel masks (BraTS2021 brain MRI, BTCV + LiTS liver CT, RESC retinal OCT) keep each split's
images in ``img/`` beside a mask folder, ``label/`` in the release and ``anomaly_mask/`` in BMAD's README: both are
read (a split holding both is refused: which is meant is unknown); a mask has its image's file name. The other
three (OCT2017, RSNA chest X-ray, Camelyon16) hold the images in the class folders directly. The folder names are
those of BMAD's configs (``config/*.yaml``: ``Brain``, ``Liver``, ``RESC``, ``OCT2017``, ``Chest-RSNA``,
``camelyon16_256``), with the other spellings in use accepted (:data:`BENCHMARKS`).

Published counts (BMAD's Table 2): train / valid / test = BraTS2021 7,500 / 83 / 3,715 (640 normal + 3,075
tumour), liver 1,542 / 166 / 1,493 (833 + 660), RESC 4,297 / 115 / 1,805 (1,041 + 764), OCT2017 26,315 / 32 / 968,
RSNA 8,000 / 1,490 / 17,194, Camelyon16 5,088 / 236 / 1,997; the test lists of the first three are checked against
the released lists in the tests. BMAD's configs resize every image to 224 px without a crop (``image_size: 224``,
``center_crop: null``) for every method: the tasks prescribe it to every method (PatchCore's paper profile would
otherwise crop 256 -> 224).

Protocol: ``train/good`` trains; ``test/`` tests. BMAD's labelled validation split is not a test set: its normals
are the held-out normals of a run that asks for a label-free threshold (``holdout > 0``) in place of training
normals (every training normal then trains), and the report says so, with how many of their patients are also in
the test set (BMAD draws the liver's and RESC's valid and test slices from the same volumes).

Patients: BraTS2021 ``<subject>_<slice>``, liver ``<volume>_<slice>``, RESC ``<cube>_<B-scan>`` name their volume;
OCT2017 ``<CLASS>-<patient>-<k>`` its patient; RSNA and Camelyon16 names do not (one image = one unit).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from medrecontrast.data.readers import PIL_SUFFIXES, strip_image_suffix
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks.base import (
    ABNORMAL,
    NORMAL,
    Protocol,
    Task,
    TaskFamily,
    item,
    require_dir,
    resolve_data_root,
)
from medrecontrast.tasks.unified import unified_task

RELEASE = "bmad"
SIZE = 224  # config/*.yaml: image_size 224, center_crop null
VOLUME_SLICE = re.compile(r"^(\d+)_\d+$")
KERMANY = re.compile(r"^[A-Za-z]+-(\d+)-\d+$")
MASK_FOLDERS = ("label", "anomaly_mask")


# variant -> (folder names, first the one BMAD's configs use; modality; masks; patient pattern; the published counts)
BENCHMARKS = {
    "brain": (("Brain", "BraTS2021"), "brain MRI (BraTS2021)", True, VOLUME_SLICE, "7,500 / 83 / 3,715"),
    "liver": (("Liver",), "liver CT (BTCV + LiTS)", True, VOLUME_SLICE, "1,542 / 166 / 1,493"),
    "retina": (("RESC",), "retinal OCT (RESC)", True, VOLUME_SLICE, "4,297 / 115 / 1,805"),
    "oct": (("OCT2017",), "retinal OCT (OCT2017)", False, KERMANY, "26,315 / 32 / 968"),
    "chest": (
        ("Chest-RSNA", "RSNA", "chest-rsna/Chest-RSNA"),
        "chest X-ray (RSNA)",
        False,
        None,
        "8,000 / 1,490 / 17,194",
    ),
    "histopathology": (
        ("camelyon16_256", "camelyon16", "Camelyon16"),
        "histopathology (Camelyon16)",
        False,
        None,
        "5,088 / 236 / 1,997",
    ),
}
PATIENTS = {
    VOLUME_SLICE: "the volume of <volume>_<slice>.png",
    KERMANY: "the patient number of <CLASS>-<patient>-<k>",
}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PIL_SUFFIXES)


def _mask_folder(task: Task, class_dir: Path) -> Path | None:
    found = [class_dir / name for name in MASK_FOLDERS if (class_dir / name).is_dir()]
    if len(found) > 1:
        raise DataLayoutError(
            f"task '{task.name}': {class_dir} holds both {' and '.join(f.name + '/' for f in found)}; keep the one "
            "with the masks (the release names it label/)."
        )
    return found[0] if found else None


def _patient(task: Task, pattern: re.Pattern | None, path: Path) -> str | None:
    if pattern is None:
        return None
    found = pattern.match(strip_image_suffix(path.name))
    if found is None:
        raise DataLayoutError(
            f"task '{task.name}': {path} is not named as BMAD names this benchmark's images "
            f"({PATIENTS[pattern]}), so its patient is unknown; use folder:<path> for other layouts."
        )
    return found.group(1)


def _split(task: Task, root: Path, split: str, label: int, masks: bool, pattern) -> list[dict]:
    """The items of ``<split>/good`` (``label`` NORMAL) or ``<split>/Ungood``, with masks where the set has them."""
    class_dir = require_dir(root / split / ("good" if label == NORMAL else "Ungood"), f"{split} images", task)
    images = require_dir(class_dir / "img", f"{split} images", task) if masks else class_dir
    mask_dir = _mask_folder(task, class_dir) if masks and label == ABNORMAL else None
    records = []
    for path in _images(images):
        mask = None
        if mask_dir is not None and (mask_dir / path.name).is_file():
            mask = mask_dir / path.name
        patient = _patient(task, pattern, path)
        extra = {"patient": patient} if patient is not None else {}
        category = "good" if label == NORMAL else "Ungood"
        records.append(
            item(path, label, category, mask, id=f"{split}/{category}/{strip_image_suffix(path.name)}", **extra)
        )
    return records


def locate_bmad(task: Task, data_root) -> Path:
    """The first of the benchmark's folder names that exists under ``<data root>/bmad/`` (else the first name, which
    the missing-folder message then shows)."""
    base = resolve_data_root(data_root, task) / RELEASE
    names = BENCHMARKS[task.options["variant"]][0]
    return next((base / n for n in names if (base / n).is_dir()), base / names[0])


def load_bmad(task: Task, root: Path) -> tuple[list[dict], list[dict], list[str], list[dict]]:
    _, _, masks, pattern, _ = BENCHMARKS[task.options["variant"]]
    train = _split(task, root, "train", NORMAL, masks, pattern)
    test = _split(task, root, "test", NORMAL, masks, pattern) + _split(task, root, "test", ABNORMAL, masks, pattern)
    valid_dir = root / "valid" / "good"
    validation = _split(task, root, "valid", NORMAL, masks, pattern) if valid_dir.is_dir() else []
    notes = []
    if validation:
        tested = {it.get("patient") for it in test} - {None}
        shared = {it.get("patient") for it in validation} & tested
        notes.append(
            f"{task.name}: with holdout > 0 the label-free threshold is fixed on BMAD's {len(validation)} validation "
            "normals (valid/good), not on held-out training normals (every training normal trains)"
            + (
                f"; {len(shared)} of their {len({it['patient'] for it in validation})} patients (volumes) have images "
                "in the test set too"
                if all(it.get("patient") is not None for it in validation)
                else ""
            )
        )
    return train, test, notes, validation


def bmad_task(variant: str = "") -> Task:
    """``bmad:<benchmark>``: brain, liver, retina, oct, chest, histopathology."""
    if variant not in BENCHMARKS:
        raise UserInputError(
            f"task 'bmad' needs one of its benchmarks, e.g. bmad:brain; known: {', '.join(BENCHMARKS)}"
            + (f" (got '{variant}')" if variant else "")
        )
    names, modality, masks, pattern, counts = BENCHMARKS[variant]
    images = "{img/*.png, label/*.png}" if masks else "*.png"
    return Task(
        name=f"bmad:{variant}",
        modality=modality,
        protocol=Protocol(
            "bmad",
            "train/good (valid/good: the held-out normals)",
            "test/good (normal) + test/Ungood (abnormal)",
            has_masks=masks,
        ),
        image_size=SIZE,
        crop_size=None,
        list_items=load_bmad,
        locate=locate_bmad,
        layout=(
            f"<data root>/{RELEASE}/{names[0]}/{{train/good, valid/{{good,Ungood}}, test/{{good,Ungood}}}}/{images} "
            f"(BMAD's release; train / valid / test {counts})"
        ),
        options={"variant": variant},
        patients=PATIENTS.get(pattern, ""),
        prescribed_sizes={"image_size": SIZE, "crop_size": None},
        published=(
            "BMAD's Table 2 as first released (imgs/table.png, 146a04c) for PatchCore and RD4AD; BMAD revised the "
            "table on 2024-04-28 (imgs/new-table.JPG), moving these two methods' numbers by 0.02-0.97 points."
        ),
    )


UNI_MEDICAL = ("brain", "liver", "retina")  # ADer's Uni-Medical: one model over BMAD's three sets with masks


def uni_medical_task(variant: str = "") -> Task:
    """``uni-medical``: one model trained on the normals of ``bmad:brain``, ``bmad:liver`` and ``bmad:retina``
    together, evaluated on each test set and their mean (ADer's protocol, at BMAD's 224 px)."""
    if variant:
        raise UserInputError(f"task 'uni-medical' has no variants (got 'uni-medical:{variant}')")
    task = unified_task(
        "uni-medical", [bmad_task(v) for v in UNI_MEDICAL], "BMAD's brain MRI, liver CT and retinal OCT sets"
    )
    return dataclasses.replace(
        task,
        published="ADer's benchmark table (configs/benchmark/README.md, Uni-Medical, 100 epochs) for RD4AD: ADer's "
        "re-implementation at 256 px, the mean of the three classes; ADer's table has no PatchCore row for it.",
    )


FAMILIES = (
    TaskFamily(
        "uni-medical", uni_medical_task, listed=("uni-medical",), examples=lambda: [("uni-medical", uni_medical_task())]
    ),
    TaskFamily(
        "bmad",
        bmad_task,
        listed=tuple(f"bmad:{v}" for v in BENCHMARKS),
        examples=lambda: [(f"bmad:{v}", bmad_task(v)) for v in BENCHMARKS],
    ),
)
