"""MedMNIST v2 / MedMNIST+ (Yang et al., Scientific Data 2023) as anomaly detection: ``medmnist:<name>``.

The official npz files (``<name>.npz`` at 28 px, ``<name>_<size>.npz`` at 64/128/224 px: keys
``train_images``, ``train_labels``, ``val_*``, ``test_*``) under ``<data root>/medmnist/``. The
``medmnist`` package's own ``INFO`` table (``pip install 'medrecontrast[medmnist]'``; its download does
not run here, so the file is given with the data root) names each label; which label is *normal* is
this module's :data:`NORMAL_LABELS` (e.g. PneumoniaMNIST ``normal``, RetinaMNIST grade ``0``, OCTMNIST
``normal``, DermaMNIST ``melanocytic nevi``), or the task option ``normal`` for any other 2-D set.
Protocol: the train split's normals train, the whole test split tests; every other label is a
subtype (named as ``INFO`` names it). The validation split is not used.

The pixels are written once as PNG files into the cache folder (one per image, named by split,
label and index, their modification time set to the npz file's), so that they go through the same
reader, cache and checks as every other task's files.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.paths import cache_dir
from medrecontrast.tasks.base import ABNORMAL, NORMAL, Protocol, Task, TaskFamily, item

SIZES = (28, 64, 128, 224)
# which INFO label is normal (by its name), where the dataset has one
NORMAL_LABELS = {
    "pneumoniamnist": "normal",
    "octmnist": "normal",
    "retinamnist": "0",
    "dermamnist": "melanocytic nevi",
    "breastmnist": "normal, benign",
}
MEDMNIST_INSTALL = "pip install 'medrecontrast[medmnist]'"
WRITER_VERSION = 1  # part of the cache key of the PNG files


@functools.cache  # read once per process: every get_task and every load of a medmnist task asks for it
def medmnist_info() -> dict:
    """The ``medmnist`` package's ``INFO`` table, read from its ``info.py`` without importing the package
    (whose ``__init__`` creates ``~/.medmnist``)."""
    spec = importlib.util.find_spec("medmnist")
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"medmnist tasks read their label names from the medmnist package: {MEDMNIST_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "info.py"
    module_spec = importlib.util.spec_from_file_location("medrecontrast_medmnist_info", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.INFO


def _dataset_info(name: str) -> dict:
    info = medmnist_info()
    if name not in info:
        two_d = sorted(k for k in info if not k.endswith("3d"))
        raise UserInputError(f"'{name}' is not a MedMNIST dataset; known 2-D ones: {', '.join(two_d)}")
    if name.endswith("3d"):
        raise UserInputError(f"'{name}' is a 3-D MedMNIST set; medmnist tasks take the 2-D sets (e.g. pneumoniamnist)")
    if info[name]["task"].startswith("multi-label"):
        raise UserInputError(f"'{name}' is multi-label ({info[name]['task']}); medmnist tasks need one label per image")
    return info[name]


def _normal_index(name: str, labels: dict, normal) -> int:
    """The label index that is normal: the task option ``normal`` (index or name), else :data:`NORMAL_LABELS`."""
    wanted = NORMAL_LABELS.get(name) if normal is None else str(normal)
    if wanted is None:
        raise UserInputError(
            f"task 'medmnist:{name}' has no normal class by default; name one as the task option normal "
            f"(one of {', '.join(f'{k} = {v!r}' for k, v in labels.items())})"
        )
    for index, label in labels.items():
        if wanted in (index, label):
            return int(index)
    raise UserInputError(
        f"normal = {normal!r} is not a label of {name}; its labels: "
        f"{', '.join(f'{k} = {v!r}' for k, v in labels.items())}"
    )


def npz_name(name: str, size: int) -> str:
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def load_medmnist(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    name, size = task.options["dataset"], task.options["size"]
    path = root / npz_name(name, size)
    if not path.is_file():
        raise DataLayoutError(f"task '{task.name}': missing file {path}. {task.layout_hint()}")
    labels = _dataset_info(name)["label"]
    normal = _normal_index(name, labels, task.options.get("normal"))
    folder = _png_folder(path, task)
    train, test = [], []
    for split, items in (("train", train), ("test", test)):
        for png in sorted((folder / split).glob("*.png")):
            index, label = png.stem.split("-")
            category = labels[label]
            is_normal = int(label) == normal
            if split == "train" and not is_normal:
                continue
            items.append(item(png, NORMAL if is_normal else ABNORMAL, category, id=f"{split}/{index}"))
    return train, test


def _png_folder(path: Path, task: Task) -> Path:
    """The npz's train and test images as PNG files in the cache, written once (atomically, by a
    staging folder renamed into place); keyed by the file's size and modification time."""
    info = os.stat(path)
    key = hashlib.sha256(f"{path.resolve()}|{info.st_size}|{info.st_mtime_ns}|v{WRITER_VERSION}".encode()).hexdigest()[
        :16
    ]
    folder = cache_dir() / "medmnist" / f"{path.stem}-{key}"
    if folder.is_dir():
        return folder
    from PIL import Image

    try:
        arrays = np.load(path)
        splits = {split: (arrays[f"{split}_images"], arrays[f"{split}_labels"]) for split in ("train", "test")}
    except Exception as exc:
        raise DataLayoutError(
            f"task '{task.name}': cannot read {path} as a MedMNIST npz ({type(exc).__name__}: {exc})."
        ) from exc
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        for split, (images, labels) in splits.items():
            (staging / split).mkdir()
            width = len(str(len(images)))
            for index, (image, label) in enumerate(zip(images, np.asarray(labels).reshape(len(labels), -1)[:, 0])):
                target = staging / split / f"{index:0{width}d}-{int(label)}.png"
                Image.fromarray(np.asarray(image, dtype=np.uint8)).save(target)
                os.utime(target, ns=(info.st_mtime_ns, info.st_mtime_ns))  # the same fingerprint when written again
        try:
            staging.rename(folder)
        except OSError:  # another process wrote it first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


MEDMNIST_LAYOUT = (
    "<data root>/medmnist/<name>.npz (28 px) or <name>_<size>.npz (64, 128, 224 px), the official MedMNIST "
    "files (keys train_images, train_labels, test_images, test_labels)"
)


def medmnist_task(variant: str = "", size: int = 28, normal: str | int | None = None) -> Task:
    """``medmnist:<name>`` (e.g. ``medmnist:pneumoniamnist``), ``medmnist:<name>_<size>`` or the option ``size``."""
    if not variant:
        raise UserInputError(
            "task 'medmnist' needs a dataset, e.g. medmnist:pneumoniamnist or medmnist:retinamnist_224"
        )
    name, _, suffix = variant.lower().partition("_")
    if suffix:
        if not suffix.isdigit():
            raise UserInputError(
                f"task 'medmnist:{variant}': the part after '_' must be a size ({', '.join(map(str, SIZES))})"
            )
        size = int(suffix)
    if size not in SIZES:
        raise UserInputError(f"medmnist size must be one of {', '.join(map(str, SIZES))}, got {size!r}")
    labels = _dataset_info(name)["label"]
    normal_label = labels[str(_normal_index(name, labels, normal))]
    return Task(
        name=f"medmnist:{name}" + ("" if size == 28 else f"_{size}"),
        modality="MedMNIST",
        protocol=Protocol(
            "medmnist",
            f"the train split's normals (label {normal_label!r})",
            "the whole test split; every other label a subtype",
            has_masks=False,
        ),
        image_size=size if size >= 64 else 64,  # 28-px images are upsampled to the smallest input the networks take
        crop_size=None,
        list_items=load_medmnist,
        folder="medmnist",
        layout=MEDMNIST_LAYOUT,
        options={"dataset": name, "size": size, "normal": normal},
    )


def _example() -> list[tuple[str, Task]]:
    try:
        return [("medmnist:<name>", medmnist_task("pneumoniamnist"))]
    except UserInputError:  # the medmnist package is not installed: the row still says what the task is
        return []


FAMILIES = (TaskFamily("medmnist", medmnist_task, listed=("medmnist:<name>",), examples=_example),)
