"""Class-per-folder layouts: the user's own data, MVTec AD, OCT2017 and the built-in synthetic tasks.

All of them are ``train/<normal>/``, ``test/<normal>/``, ``test/<other class>/`` and optionally
``ground_truth/<other class>/<stem>_mask.<ext>``; they differ only in the name of the normal class
(``NORMAL``, ``good``). Images may be PNG/JPEG, DICOM or NIfTI. A 3-D NIfTI volume (or a multi-frame
DICOM) gives one item per slice along ``slice_axis``; with a mask volume, a slice of an abnormal
volume is labelled abnormal only where its mask slice has a positive pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecontrast.data.readers import (
    check_nifti_mask,
    image_format,
    read_header,
    read_image,
    resolve_window,
    robust_range,
    strip_image_suffix,
)
from medrecontrast.errors import DataLayoutError, UnreadableImageError, UserInputError
from medrecontrast.tasks.base import (
    ABNORMAL,
    NORMAL,
    Protocol,
    Task,
    TaskFamily,
    item,
    require_dir,
)


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files and other types ignored)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and image_format(p))


def find_subdir(parent: Path, name: str) -> Path | None:
    """``parent/name`` matched case-insensitively (``NORMAL``, ``normal``, ``Normal``)."""
    if not parent.is_dir():
        return None
    matches = [p for p in parent.iterdir() if p.is_dir() and p.name.lower() == name.lower()]
    return matches[0] if matches else None


def mask_index(mask_dir: Path | None, suffix: str = "_mask") -> dict[str, Path]:
    """Image stem -> mask file, for every ``<stem>_mask.<any image extension>`` in ``mask_dir``.

    Built once per class folder, so finding the masks of N images reads the folder once, not N times.
    """
    if mask_dir is None or not mask_dir.is_dir():
        return {}
    index: dict[str, Path] = {}
    for candidate in sorted(mask_dir.iterdir()):
        stem = strip_image_suffix(candidate.name)
        if candidate.is_file() and image_format(candidate) and stem.endswith(suffix):
            index.setdefault(stem[: -len(suffix)], candidate)
    return index


def list_class_folders(task: Task, root: Path, normal: str) -> tuple[list[dict], list[dict]]:
    """Items of a ``train/<normal>``, ``test/<class>``, ``ground_truth/<class>`` layout."""
    slice_axis = int(task.options.get("slice_axis", 2))
    train_dir = find_subdir(root / "train", normal)
    if train_dir is None:
        raise DataLayoutError(
            f"task '{task.name}': missing folder {root / 'train' / normal} (normal training images). "
            f"{task.layout_hint()}"
        )
    test_root = require_dir(root / "test", "test images, one sub-folder per class", task)

    train = [
        record
        for path in list_image_files(train_dir)
        for record in _records(path, NORMAL, normal, None, f"train/{strip_image_suffix(path.name)}", slice_axis)
    ]
    test = []
    for class_dir in sorted(p for p in test_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        is_normal = class_dir.name.lower() == normal.lower()
        masks = {} if is_normal else mask_index(find_subdir(root / "ground_truth", class_dir.name))
        for path in list_image_files(class_dir):
            mask = masks.get(strip_image_suffix(path.name))
            label = NORMAL if is_normal else ABNORMAL
            test.extend(
                _records(
                    path, label, class_dir.name, mask, f"{class_dir.name}/{strip_image_suffix(path.name)}", slice_axis
                )
            )
    return with_intensity_rule(task, train, test)


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
    rule = {"range": robust_range(volumes)}
    if rule["range"] is None:
        return train, test  # no training volume can be read: `data check` lists them, planning refuses
    return [_ruled(it, rule, ("nifti",)) for it in train], [_ruled(it, rule, ("nifti",)) for it in test]


def _ruled(record: dict, rule: dict, formats: tuple[str, ...]) -> dict:
    return {**record, "intensity": rule} if image_format(record["image"]) in formats else record


def _records(path: Path, label: int, category: str, mask: Path | None, id: str, slice_axis: int) -> list[dict]:
    """One record per 2-D image, or one per slice of a volume."""
    if image_format(path) == "pil":
        return [item(path, label, category, mask, id=id)]
    try:
        header = read_header(path, slice_axis)
    except UnreadableImageError:  # listed as one item, so that `data check` reports it with the others
        return [item(path, label, category, mask, id=id)]
    if mask is not None and image_format(path) == "nifti" and image_format(mask) == "nifti":
        check_nifti_mask(path, mask)  # a mask of another shape or orientation would relabel or misalign slices
    if header.num_slices is None:
        return [item(path, label, category, mask, id=id)]
    slice_labels = [label] * header.num_slices
    if mask is not None and label == ABNORMAL:
        slice_labels = [
            ABNORMAL if _slice_has_lesion(mask, k, slice_axis) else NORMAL for k in range(header.num_slices)
        ]
    return [
        item(path, slice_label, category, mask, id=f"{id}#{k}", slice=k, slice_axis=slice_axis)
        for k, slice_label in enumerate(slice_labels)
    ]


def _slice_has_lesion(mask: Path, index: int, axis: int) -> bool:
    return bool(np.any(read_image(mask, index, axis) > 0))


def load_folder(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    """The user's own data: ``train/NORMAL``, ``test/NORMAL``, ``test/<anything else>`` abnormal."""
    return list_class_folders(task, root, normal="NORMAL")


FOLDER_LAYOUT = (
    "<path>/train/NORMAL/*, <path>/test/NORMAL/*, <path>/test/<CLASS>/* (abnormal), optional "
    "<path>/ground_truth/<CLASS>/<stem>_mask.<ext>; PNG, JPEG, DICOM (.dcm) or NIfTI (.nii, .nii.gz)"
)


def folder_task(path: str, slice_axis: int = 2, window: str | list | None = None) -> Task:
    """The user's own images under ``path`` (``folder:<path>``); 3-D volumes slice along ``slice_axis``;
    DICOM and NIfTI intensities through ``window`` (``[center, width]`` or a preset such as ``"brain"``)
    when given (readers module docstring)."""
    if not path:
        raise UserInputError("task 'folder:' needs a path, e.g. folder:/data/my_xrays")
    resolve_window(window)  # a bad window is refused now, naming the option
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
        options={"path": str(resolved), "slice_axis": slice_axis, "window": window},
    )


FAMILIES = (
    TaskFamily(
        "folder", folder_task, listed=("folder:<path>",), examples=lambda: [("folder:<path>", folder_task("<path>"))]
    ),
)
