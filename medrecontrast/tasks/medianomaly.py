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
benchmarks (ISIC2018, Camelyon16, BraTS2021) are folder layouts, not loaded here.

The file names carry no patient (RSNA and VinCXR names are one image each; BrainTumor's are Kaggle image names;
LAG's numbers): one image = one unit. BrainTumor's abnormal names say the tumour (``Te-gl``/``Tr-gl`` glioma,
``-me`` meningioma, ``-pi`` pituitary), its subtypes.
"""

from __future__ import annotations

import json
from pathlib import Path

from medrecontrast.data.readers import strip_image_suffix
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks.base import ABNORMAL, NORMAL, Protocol, Task, TaskFamily, item, require_dir, require_file

# variant -> (the release's folder name, modality)
BENCHMARKS = {
    "rsna": ("RSNA", "chest X-ray"),
    "vincxr": ("VinCXR", "chest X-ray"),
    "brain-tumor": ("BrainTumor", "brain MRI"),
    "lag": ("LAG", "fundus"),
}
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


def medianomaly_task(variant: str = "", missing: str = "refuse") -> Task:
    """``medianomaly:<name>``; ``missing`` = refuse (default) or skip files the split lists but the folder lacks."""
    if variant not in BENCHMARKS:
        raise UserInputError(
            f"task 'medianomaly' needs one of its benchmarks, e.g. medianomaly:brain-tumor; known: "
            f"{', '.join(BENCHMARKS)}" + (f" (got '{variant}')" if variant else "")
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
    )


FAMILIES = (
    TaskFamily(
        "medianomaly",
        medianomaly_task,
        listed=tuple(f"medianomaly:{v}" for v in BENCHMARKS),
        examples=lambda: [(f"medianomaly:{v}", medianomaly_task(v)) for v in BENCHMARKS],
    ),
)
