"""Class-per-folder layouts: the user's own data, MVTec AD, OCT2017 and the built-in synthetic tasks.

All of them are ``train/<normal>/``, ``test/<normal>/``, ``test/<other class>/`` and optionally
``ground_truth/<other class>/<stem>_mask.<ext>``; they differ only in the name of the normal class
(``NORMAL``, ``good``). Images may be PNG/JPEG, DICOM or NIfTI. A 3-D NIfTI volume (or a multi-frame
DICOM) gives one item per slice along ``slice_axis``; with a mask volume, a slice of an abnormal
volume is labelled abnormal only where its mask slice has a positive pixel.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from medrecontrast.data.readers import (
    ROBUST_PERCENTILES,
    check_nifti_mask,
    image_format,
    read_header,
    read_image,
    resolve_window,
    robust_range,
    strip_image_suffix,
)
from medrecontrast.errors import DataLayoutError, UnreadableImageError, UserInputError
from medrecontrast.paths import cache_dir, read_json, write_json
from medrecontrast.tasks.base import (
    ABNORMAL,
    NORMAL,
    Protocol,
    Task,
    TaskFamily,
    item,
    require_dir,
)


def list_image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder``, sorted by their path (hidden files and folders and other types ignored).

    ``recursive`` reads sub-folders too (a user's ``test/ABN/patient7/*.png``); otherwise images in
    sub-folders are not read, and a warning names the sub-folders that hold any.
    """
    visible = [p for p in folder.rglob("*") if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    images = [p for p in visible if p.is_file() and image_format(p)]
    _say_skipped([p for p in visible if p.is_file() and not image_format(p)], folder)
    if recursive:
        return sorted(images)
    nested = sorted({p.relative_to(folder).parts[0] for p in images if p.parent != folder})
    if nested:
        count = sum(1 for p in images if p.parent != folder)
        warnings.warn(
            f"{folder}: {count} image(s) in sub-folder(s) {', '.join(nested[:5])}{' ...' if len(nested) > 5 else ''} "
            "are not read (this layout takes the images directly in the class folder)",
            stacklevel=2,
        )
    return sorted(p for p in images if p.parent == folder)


VOLUME_FORMATS_NOT_READ = (".mha", ".mhd", ".nrrd", ".nhdr")  # medical volumes no reader of the suite decodes


def _say_skipped(files: list[Path], folder: Path) -> None:
    """Files of a class folder that are no image the suite reads: a medical volume format it cannot decode is
    refused by name (a folder of .mha files said "no normal training images found"); anything else is listed per
    extension in a warning (`data check` and planning show it), never skipped without a word."""
    if not files:
        return
    from medrecontrast.data.readers import IMAGE_SUFFIXES

    volumes = [p for p in files if p.name.lower().endswith(VOLUME_FORMATS_NOT_READ)]
    if volumes:
        raise DataLayoutError(
            f"{folder}: {len(volumes)} {volumes[0].suffix} file(s) (e.g. {volumes[0].name}) are volumes the suite does "
            "not read; convert them to NIfTI (e.g. SimpleITK: sitk.WriteImage(sitk.ReadImage(path), 'x.nii.gz')) and "
            f"remove the originals. It reads {', '.join(IMAGE_SUFFIXES)}."
        )
    by_extension = Counter(path.suffix.lower() or "(no extension)" for path in files)
    listed = ", ".join(f"{ext} {count}" for ext, count in sorted(by_extension.items()))
    warnings.warn(
        f"{folder}: {len(files)} file(s) not read ({listed}); the suite reads {', '.join(IMAGE_SUFFIXES)}",
        stacklevel=3,
    )


def find_subdir(parent: Path, name: str) -> Path | None:
    """``parent/name`` matched case-insensitively (``NORMAL``, ``normal``, ``Normal``); two folders that
    differ only in case are refused (reading one of them would silently drop the other)."""
    if not parent.is_dir():
        return None
    matches = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() == name.lower())
    if len(matches) > 1:
        raise DataLayoutError(
            f"{parent} holds folders that differ only in case: {', '.join(m.name for m in matches)}; merge them into "
            "one."
        )
    return matches[0] if matches else None


def _refuse_case_twins(parent: Path) -> None:
    names = [p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for name in names:
        twins = sorted(n for n in names if n.lower() == name.lower())
        if len(twins) > 1:
            raise DataLayoutError(
                f"{parent} holds folders that differ only in case: {', '.join(twins)}; merge them into one."
            )


def mask_index(mask_dir: Path | None, suffix: str = "_mask", recursive: bool = False) -> dict[str, Path]:
    """Image stem -> mask file, for every ``<stem>_mask.<any image extension>`` in ``mask_dir`` (with
    ``recursive``, keyed by the path below ``mask_dir``: ``patient7/img1``).

    Built once per class folder, so finding the masks of N images reads the folder once, not N times.
    """
    if mask_dir is None or not mask_dir.is_dir():
        return {}
    index: dict[str, Path] = {}
    candidates = sorted(mask_dir.rglob("*")) if recursive else sorted(mask_dir.iterdir())
    for candidate in candidates:
        stem = strip_image_suffix(candidate.name)
        if candidate.is_file() and image_format(candidate) and stem.endswith(suffix):
            key = _relative_stem(candidate, mask_dir)[: -len(suffix)]
            index.setdefault(key, candidate)
    return index


def _relative_stem(path: Path, folder: Path) -> str:
    """``patient7/img1`` for ``folder/patient7/img1.png``; ``img1`` for ``folder/img1.png``."""
    return str(path.relative_to(folder).parent / strip_image_suffix(path.name)).removeprefix("./")


def list_class_folders(
    task: Task, root: Path, normal: str, recursive: bool = False, patient_of=None
) -> tuple[list[dict], list[dict]]:
    """Items of a ``train/<normal>``, ``test/<class>``, ``ground_truth/<class>`` layout; with ``recursive``,
    images in sub-folders of each class folder too, each item's ``subfolder`` naming its sub-folder (e.g. a
    patient, for patient-level analysis).

    ``patient_of(path, below, header_patient, unit)`` names each item's patient (``below``: the path under its
    class folder, ``header_patient``: a DICOM file's PatientID/StudyInstanceUID or None, ``unit``: the file's own
    name as a unit, given for volumes and the ``"file"`` rule), or returns None for an image that is its own unit;
    None (the default) is :func:`patient_rule` of the task's ``patient`` option."""
    slice_axis = int(task.options.get("slice_axis", 2))
    unmasked = task.options.get("unmasked_volumes", "all")
    patient_option = task.options.get("patient")
    patient_of = patient_of or patient_rule(patient_option, task.name)
    for parent in (root / "train", root / "test", root / "ground_truth"):
        if parent.is_dir():
            _refuse_case_twins(parent)
    train_dir = find_subdir(root / "train", normal)
    if train_dir is None:
        raise DataLayoutError(
            f"task '{task.name}': missing folder {root / 'train' / normal} (normal training images). "
            f"{task.layout_hint()}"
        )
    test_root = require_dir(root / "test", "test images, one sub-folder per class", task)

    def records(path: Path, folder: Path, label: int, category: str, mask: Path | None, prefix: str) -> list[dict]:
        stem = _relative_stem(path, folder)
        found, header_patient = _records(path, label, category, mask, f"{prefix}/{stem}", slice_axis)
        if len(found) > 1 and label == ABNORMAL and mask is None:  # every slice takes the volume's label
            if unmasked == "refuse":
                raise DataLayoutError(
                    f"task '{task.name}': {path} is an abnormal volume without a mask, so which of its {len(found)} "
                    "slices hold the lesion is unknown; add its mask under ground_truth/, or set the task's option "
                    'unmasked_volumes = "all" to label every slice abnormal.'
                )
            found = [{**r, "unmasked_volume": True} for r in found]
        if recursive:
            subfolder = str(path.parent.relative_to(folder)).removeprefix(".")
            found = [{**r, "subfolder": subfolder} for r in found]
        unit = f"{prefix}/{stem}" if len(found) > 1 or patient_option == "file" else None  # the file as its own unit
        patient = patient_of(path, path.relative_to(folder).as_posix(), header_patient, unit)
        return found if patient is None else [{**r, "patient": patient} for r in found]

    train = [
        r
        for path in list_image_files(train_dir, recursive)
        for r in records(path, train_dir, NORMAL, normal, None, "train")
    ]
    test = []
    for class_dir in sorted(p for p in test_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        is_normal = class_dir.name.lower() == normal.lower()
        masks = {} if is_normal else mask_index(find_subdir(root / "ground_truth", class_dir.name), recursive=recursive)
        for path in list_image_files(class_dir, recursive):
            mask = masks.get(_relative_stem(path, class_dir))
            label = NORMAL if is_normal else ABNORMAL
            test.extend(records(path, class_dir, label, class_dir.name, mask, class_dir.name))
    return with_intensity_rule(task, train, test)


PATIENT_RULES = ("subfolder", "file")  # besides a regular expression with one group
FOLDER_PATIENTS = (
    "the sub-folder of the class folder, else a DICOM file's PatientID (then StudyInstanceUID), else a volume's "
    'file, else the image itself; the option patient = "subfolder" | "file" | a regular expression chooses'
)


def check_patient_option(value, task: str) -> None:
    """A ``patient`` option is ``"subfolder"``, ``"file"`` or a regular expression with exactly one group."""
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise UserInputError(
            f'task \'{task}\': patient must be "subfolder", "file" or a regular expression with one group, '
            f"got {value!r}"
        )
    if value in PATIENT_RULES:
        return
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise UserInputError(f"patient {value!r} is not a regular expression ({exc}; task '{task}')") from None
    if pattern.groups != 1:
        raise UserInputError(
            f"patient {value!r} has {pattern.groups} groups (task '{task}'); it needs exactly one, the patient "
            "(e.g. '^(\\w+)_\\d+' for p7_12.png)"
        )


def patient_rule(value, task: str):
    """``patient_of(path, below, header_patient, is_volume)`` for a folder task's ``patient`` option.

    * None (auto): the sub-folder of the class folder the image is in (``test/ABN/patient7/img.png`` ->
      ``patient7``: the user grouped them); else a DICOM file's PatientID (else StudyInstanceUID); else a volume's
      file (all its slices are one unit); else None: the image is its own unit.
    * ``"subfolder"``: the first folder below the class folder; an image directly in the class folder is refused.
    * ``"file"``: every file is its own unit (a volume's slices are one).
    * a regular expression with one group, searched in the path below the class folder (``patient7/img.png``,
      ``p7_12.png``); a file it does not match is refused, named.
    """
    check_patient_option(value, task)
    pattern = re.compile(value) if value not in (None, *PATIENT_RULES) else None

    def patient_of(path: Path, below: str, header_patient: str | None, unit: str | None) -> str | None:
        parts = below.split("/")
        if value is None:
            if len(parts) > 1:
                return parts[0]
            if header_patient:
                return header_patient
            return unit
        if value == "subfolder":
            if len(parts) == 1:
                raise DataLayoutError(
                    f"task '{task}': patient = \"subfolder\" but {path} lies directly in its class folder; put each "
                    'patient\'s images in a sub-folder, or choose patient = "file" or a regular expression.'
                )
            return parts[0]
        if value == "file":
            return unit
        found = pattern.search(below)
        if found is None or not found.group(1):
            raise DataLayoutError(
                f"task '{task}': patient {value!r} does not match {below!r} ({path}); every file needs a patient. "
                "Change the expression (it is searched in the path below the class folder)."
            )
        return found.group(1)

    return patient_of


def with_intensity_rule(task: Task, train: list[dict], test: list[dict]) -> tuple[list[dict], list[dict]]:
    """Give every DICOM and NIfTI item the task's one intensity rule (readers module docstring): the
    task's ``window`` option when set; else, for NIfTI, the robust range of the training normals' voxels
    (the same for every volume of the task); DICOM without a window keeps each file's own VOI."""
    window = resolve_window(task.options.get("window"))
    if window is not None:
        rule = {"window": list(window)}
        return [_ruled(it, rule, ("dicom", "nifti")) for it in train], [
            _ruled(it, rule, ("dicom", "nifti")) for it in test
        ]
    volumes = list(dict.fromkeys(it["image"] for it in train if image_format(it["image"]) == "nifti"))
    if not volumes:
        return train, test
    rule = {"range": _remembered_range(volumes)}
    if rule["range"] is None:
        return train, test  # no training volume can be read: `data check` lists them, planning refuses
    return [_ruled(it, rule, ("nifti",)) for it in train], [_ruled(it, rule, ("nifti",)) for it in test]


def _remembered_range(volumes: list[str]) -> list[float] | None:
    """:func:`robust_range` of the training volumes, remembered in the cache folder under the volumes'
    paths, sizes and modification times: every load of the task (each run, each check) would otherwise
    decode every training volume again."""
    try:
        stamps = [(v, os.stat(v).st_size, os.stat(v).st_mtime_ns) for v in volumes]
    except OSError:
        return robust_range(volumes)  # a missing file: `data check` names it
    key = hashlib.sha256(json.dumps([ROBUST_PERCENTILES, stamps]).encode()).hexdigest()
    memo = cache_dir() / "intensity" / f"{key}.json"
    if memo.is_file():
        try:
            return read_json(memo)["range"]
        except (UserInputError, KeyError, TypeError):
            pass  # a damaged memo is recomputed
    value = robust_range(volumes)
    if value is not None:
        write_json(memo, {"range": value, "volumes": len(volumes), "percentiles": list(ROBUST_PERCENTILES)})
    return value


def _ruled(record: dict, rule: dict, formats: tuple[str, ...]) -> dict:
    return {**record, "intensity": rule} if image_format(record["image"]) in formats else record


def _records(
    path: Path, label: int, category: str, mask: Path | None, id: str, slice_axis: int
) -> tuple[list[dict], str | None]:
    """One record per 2-D image, or one per slice of a volume; and the file's patient where its header names one
    (DICOM)."""
    if image_format(path) == "pil":
        return [item(path, label, category, mask, id=id)], None
    try:
        header = read_header(path, slice_axis)
    except UnreadableImageError:  # listed as one item, so that `data check` reports it with the others
        return [item(path, label, category, mask, id=id)], None
    if mask is not None and image_format(path) == "nifti" and image_format(mask) == "nifti":
        check_nifti_mask(path, mask)  # a mask of another shape or orientation would relabel or misalign slices
    if header.num_slices is None:
        return [item(path, label, category, mask, id=id)], header.patient
    slice_labels = [label] * header.num_slices
    if mask is not None and label == ABNORMAL:
        slice_labels = [
            ABNORMAL if _slice_has_lesion(mask, k, slice_axis) else NORMAL for k in range(header.num_slices)
        ]
    return [
        item(path, slice_label, category, mask, id=f"{id}#{k}", slice=k, slice_axis=slice_axis)
        for k, slice_label in enumerate(slice_labels)
    ], header.patient


def _slice_has_lesion(mask: Path, index: int, axis: int) -> bool:
    return bool(np.any(read_image(mask, index, axis) > 0))


def load_folder(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    """The user's own data: ``train/NORMAL``, ``test/NORMAL``, ``test/<anything else>`` abnormal, sub-folders
    of each class folder read too (their names recorded as each item's ``subfolder``)."""
    return list_class_folders(task, root, normal="NORMAL", recursive=True)


FOLDER_LAYOUT = (
    "<path>/train/NORMAL/*, <path>/test/NORMAL/*, <path>/test/<CLASS>/* (abnormal; sub-folders read too), optional "
    "<path>/ground_truth/<CLASS>/<stem>_mask.<ext>; PNG, JPEG, BMP, TIFF, DICOM (.dcm) or NIfTI (.nii, .nii.gz)"
)


UNMASKED_VOLUMES = ("all", "refuse")  # slices of an abnormal volume without a mask: all abnormal, or refused


def folder_task(
    path: str,
    slice_axis: int = 2,
    window: str | list | None = None,
    patient: str | None = None,
    unmasked_volumes: str = "all",
) -> Task:
    """The user's own images under ``path`` (``folder:<path>``); 3-D volumes slice along ``slice_axis``;
    DICOM and NIfTI intensities through ``window`` (``[center, width]`` or a preset such as ``"brain"``)
    when given (readers module docstring); each image's patient by ``patient`` (:func:`patient_rule`)."""
    if not path:
        raise UserInputError("task 'folder:' needs a path, e.g. folder:/data/my_xrays")
    resolve_window(window)  # a bad window is refused now, naming the option
    check_patient_option(patient, f"folder:{path}")
    if unmasked_volumes not in UNMASKED_VOLUMES:
        raise UserInputError(
            f"unmasked_volumes must be one of {', '.join(UNMASKED_VOLUMES)} (task 'folder:{path}'), got "
            f"{unmasked_volumes!r}"
        )
    resolved = Path(path).expanduser().resolve()
    return Task(
        name=f"folder:{path}",
        modality="any",
        protocol=Protocol("folder", "train/NORMAL", "test/NORMAL + test/<other classes>", has_masks=None),
        image_size=256,
        crop_size=None,
        list_items=load_folder,
        layout=FOLDER_LAYOUT,
        locate=lambda task, _: Path(task.options["path"]),
        options={
            "path": str(resolved),
            "slice_axis": slice_axis,
            "window": window,
            "patient": patient,
            "unmasked_volumes": unmasked_volumes,
        },
        patients=FOLDER_PATIENTS if patient is None else f"patient = {patient!r} (the task's option)",
    )


FAMILIES = (
    TaskFamily(
        "folder", folder_task, listed=("folder:<path>",), examples=lambda: [("folder:<path>", folder_task("<path>"))]
    ),
)
