"""MedIAnomaly's benchmarks with their released splits (Cai et al., Medical Image Analysis 2025;
caiyu6666/MedIAnomaly, Zenodo record 12677223): the four it ships as ``<Name>/images/*`` plus
``<Name>/data.json`` = ``{"train": {"0": [...], "unlabeled": {...}}, "test": {"0": [...], "1": [...]}}``,
under ``<data root>/MedIAnomaly-Data/`` as released.

Protocol, as the released code runs it: the names of ``train/0`` train (normals only; the ``unlabeled`` lists
belong to another method and are never read), ``test/0`` (normal) and ``test/1`` (abnormal) test. Counts of the
released files (checked against ``../shared/data`` in the tests): RSNA 3,851 / 1,000 + 1,000, VinCXR 4,000 /
1,000 + 1,000, BrainTumor 1,000 / 600 + 600, LAG 1,500 / 811 + 811. A file the split lists but the folder lacks is
refused at load, naming the first few and the count; the task option ``missing = "skip"`` proceeds without them,
and the run and the report say how many of which split are absent. The suite's methods keep their own input sizes
(MedIAnomaly's own methods read 64 px grey images; this suite's read the task's 256 px). MedIAnomaly's other
benchmarks are folder layouts, read as its ``dataload.py`` reads them: ``isic2018`` (the official ISIC 2018 Task 3
folders: the Training set's NV images train, the whole Test set tests, 909 NV + 603 others), ``camelyon16``
(``train/good``; ``test/{good,Ungood}``) and ``brats2021`` (``train/``; ``test/{normal,tumor}`` with each tumour
slice's mask in ``test/annotation`` under its name with ``flair`` -> ``seg``).

The file names carry no patient (RSNA and VinCXR names are one image each; BrainTumor's are Kaggle image names;
LAG's numbers): one image = one unit. BrainTumor's abnormal names say the tumour (``Te-gl``/``Tr-gl`` glioma,
``-me`` meningioma, ``-pi`` pituitary), its subtypes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from medrecontrast.data.readers import PIL_SUFFIXES, strip_image_suffix
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks.base import ABNORMAL, NORMAL, Protocol, Task, TaskFamily, item, require_dir, require_file

# variant -> (the release's folder name, modality)
BENCHMARKS = {
    "rsna": ("RSNA", "chest X-ray"),
    "vincxr": ("VinCXR", "chest X-ray"),
    "brain-tumor": ("BrainTumor", "brain MRI"),
    "lag": ("LAG", "fundus"),
}
# MedIAnomaly's folder benchmarks (dataloaders/dataload.py): variant -> (folder, modality, layout in words)
FOLDER_BENCHMARKS = {
    "isic2018": (
        "ISIC2018_Task3",
        "dermoscopy",
        "ISIC2018_Task3_{Training,Test}_Input/*.jpg and ISIC2018_Task3_{Training,Test}_GroundTruth/*.csv (the official "
        "Task 3 folders; NV normal)",
    ),
    "camelyon16": ("Camelyon16", "histopathology", "{train/good, test/good, test/Ungood}/*.png"),
    "brats2021": (
        "BraTS2021",
        "brain MRI",
        "train/*.png, test/{normal,tumor}/*.png, test/annotation/* (the tumour slice's name with flair -> seg)",
    ),
}
BRATS_SUBJECT = re.compile(r"(BraTS\d*_\d+)")
MISSING = ("refuse", "skip")
SHOWN = 5
TUMOUR_PREFIXES = {"gl": "glioma", "me": "meningioma", "pi": "pituitary"}
RELEASE = "MedIAnomaly-Data"


def _subtype(variant: str, name: str) -> str:
    """BrainTumor's tumour from its name (``Te-glTr_0009.jpg`` -> glioma); ``abnormal`` elsewhere."""
    if variant == "brain-tumor":
        code = name.split("-", 1)[1][:2].lower() if "-" in name else ""
        return TUMOUR_PREFIXES.get(code, "abnormal")
    return "abnormal"


def read_split(task: Task, root: Path) -> dict:
    """``data.json`` of a release, checked: train/0, test/0 and test/1 are lists of file names."""
    path = require_file(root / "data.json", "the released split file", task)
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
        lists = {key: split[part][label] for key, (part, label) in SPLIT_KEYS.items()}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataLayoutError(
            f"task '{task.name}': {path} is not MedIAnomaly's split file ({type(exc).__name__}: {exc}); expected "
            '{"train": {"0": [...]}, "test": {"0": [...], "1": [...]}}.'
        ) from None
    for key, names in lists.items():
        if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n for n in names):
            raise DataLayoutError(f"task '{task.name}': {path}: {key} must be a list of file names.")
    return lists


SPLIT_KEYS = {"train/0": ("train", "0"), "test/0": ("test", "0"), "test/1": ("test", "1")}


def load_medianomaly(task: Task, root: Path) -> tuple[list[dict], list[dict], list[str]]:
    variant = task.options["variant"]
    lists = read_split(task, root)
    images = require_dir(root / "images", "the released images", task)
    present = {p.name for p in images.iterdir() if p.is_file()}
    absent = {key: [n for n in names if n not in present] for key, names in lists.items()}
    total = sum(len(v) for v in absent.values())
    what = {"train/0": "training images", "test/0": "test normals", "test/1": "test abnormals"}
    if total and task.options["missing"] == "refuse":
        named = [f"{n} ({key})" for key, names in absent.items() for n in names]
        raise DataLayoutError(
            f"task '{task.name}': {total} file(s) listed by {root / 'data.json'} are not in {images}: "
            f"{', '.join(named[:SHOWN])}{' ...' if total > SHOWN else ''}. Restore them, or set the task's option "
            'missing = "skip" to run without them (the run and the report say so).'
        )
    notes = []
    if total:
        counts = " and ".join(
            f"{len(names)} of {len(lists[key]):,} {what[key]}" for key, names in absent.items() if names
        )
        listed = ", ".join(n for names in absent.values() for n in names[:SHOWN])
        notes.append(f'{task.name}: {counts} absent, left out (missing = "skip"): {listed}')

    def records(key: str, label: int) -> list[dict]:
        return [
            item(images / n, label, "NORMAL" if label == NORMAL else _subtype(variant, n), id=strip_image_suffix(n))
            for n in lists[key]
            if n in present
        ]

    return records("train/0", NORMAL), records("test/0", NORMAL) + records("test/1", ABNORMAL), notes


def _pngs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PIL_SUFFIXES)


def load_isic(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    """``ISICDataset``: the Training set's NV images train; the whole Test set tests (NV normal, 909 + 603)."""
    from medrecontrast.tasks.isic2018 import subset_items

    return subset_items(task, root, "Training", normals_only=True), subset_items(task, root, "Test", normals_only=False)


def load_camelyon(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    """``Camelyon16AD``: ``train/good`` trains, ``test/good`` and ``test/Ungood`` test (RGB, in_c = 3)."""

    def records(folder: str, label: int) -> list[dict]:
        directory = require_dir(root / folder, f"{folder} images", task)
        return [
            item(p, label, folder.rsplit("/", 1)[1], id=f"{folder}/{strip_image_suffix(p.name)}")
            for p in _pngs(directory)
        ]

    return records("train/good", NORMAL), records("test/good", NORMAL) + records("test/Ungood", ABNORMAL)


def load_brats(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    """``BraTSAD``: ``train/`` trains; ``test/normal`` and ``test/tumor`` test, each tumour slice's mask in
    ``test/annotation`` under its name with ``flair`` replaced by ``seg`` (a missing mask is refused: the released
    loader stops there too). Patients: the BraTS subject (``BraTS2021_00000``) where the name holds one."""
    masks = require_dir(root / "test" / "annotation", "tumour masks", task)

    def records(folder: str, label: int) -> list[dict]:
        out = []
        for p in _pngs(require_dir(root / folder, f"{folder} images", task)):
            mask = None
            if label == ABNORMAL:
                mask = masks / p.name.replace("flair", "seg")
                if not mask.is_file():
                    raise DataLayoutError(
                        f"task '{task.name}': {p} has no mask {mask} (its name with flair -> seg, as the release "
                        "names them)."
                    )
            subject = BRATS_SUBJECT.search(p.name)
            extra = {"patient": subject.group(1)} if subject else {}
            category = folder.rsplit("/", 1)[-1]
            out.append(item(p, label, category, mask, id=f"{folder}/{strip_image_suffix(p.name)}", **extra))
        return out

    return records("train", NORMAL), records("test/normal", NORMAL) + records("test/tumor", ABNORMAL)


FOLDER_LOADERS = {"isic2018": load_isic, "camelyon16": load_camelyon, "brats2021": load_brats}


# what the report says of the published numbers on MedIAnomaly's benchmarks
PUBLISHED = (
    "MedIAnomaly's own results table (Cai et al., MedIA 2025) could not be read by this suite, so no MedIAnomaly "
    "number is shown; AE, VAE and MemAE carry AE4AD's Table 2 (MICCAI 2024: the same code, data and split) for RSNA, "
    "VinDr-CXR and Brain Tumor. A run whose encoder or input size is not the authors' (e.g. the lite profile's "
    "EfficientNet-Lite0 at 224 px) is not their setting, whichever numbers it is set beside."
)


def medianomaly_task(variant: str = "", missing: str = "refuse") -> Task:
    """``medianomaly:<name>``; ``missing`` = refuse (default) or skip files the split lists but the folder lacks."""
    if variant not in BENCHMARKS and variant not in FOLDER_BENCHMARKS:
        raise UserInputError(
            f"task 'medianomaly' needs one of its benchmarks, e.g. medianomaly:brain-tumor; known: "
            f"{', '.join([*BENCHMARKS, *FOLDER_BENCHMARKS])}" + (f" (got '{variant}')" if variant else "")
        )
    if variant in FOLDER_BENCHMARKS:
        if missing != "refuse":
            raise UserInputError(
                f"task 'medianomaly:{variant}' is a folder layout with no split file: it takes no missing option"
            )
        folder, modality, layout = FOLDER_BENCHMARKS[variant]
        return Task(
            name=f"medianomaly:{variant}",
            modality=modality,
            protocol=Protocol(
                "medianomaly",
                "the normal training images (dataload.py)",
                "the normal and abnormal test images (dataload.py)",
                has_masks=variant == "brats2021",
            ),
            image_size=256,
            crop_size=None,
            list_items=FOLDER_LOADERS[variant],
            folder=f"{RELEASE}/{folder}",
            layout=f"<data root>/{RELEASE}/{folder}/" + layout,
            options={"variant": variant},
            patients="the BraTS subject of BraTS2021_<id>_... names" if variant == "brats2021" else "",
            published=PUBLISHED,
        )
    if missing not in MISSING:
        raise UserInputError(
            f"missing must be one of {', '.join(MISSING)} (task 'medianomaly:{variant}'), got {missing!r}"
        )
    folder, modality = BENCHMARKS[variant]
    return Task(
        name=f"medianomaly:{variant}",
        modality=modality,
        protocol=Protocol(
            "medianomaly", "data.json train/0 (normals)", "data.json test/0 (normal) + test/1 (abnormal)", False
        ),
        image_size=256,
        crop_size=None,
        list_items=load_medianomaly,
        folder=f"{RELEASE}/{folder}",
        layout=f"<data root>/{RELEASE}/{folder}/images/* and <data root>/{RELEASE}/{folder}/data.json (as released)",
        options={"variant": variant, "missing": missing},
        published=PUBLISHED,
    )


FAMILIES = (
    TaskFamily(
        "medianomaly",
        medianomaly_task,
        listed=tuple(f"medianomaly:{v}" for v in [*BENCHMARKS, *FOLDER_BENCHMARKS]),
        examples=lambda: [(f"medianomaly:{v}", medianomaly_task(v)) for v in [*BENCHMARKS, *FOLDER_BENCHMARKS]],
    ),
)
