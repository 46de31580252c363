"""APTOS 2019 blindness detection (Kaggle): ``aptos/train.csv`` + ``aptos/train_images/<id_code>.png``.

Paper protocol, exactly as guojiajeremy/ReContrast ``prepare_data/prepare_aptos.py`` draws it:
diagnosis 0 is normal; the grade-0 ``id_code``s in the CSV's row order are shuffled with Python's
``random.seed(1); random.shuffle(...)`` and the first 1,000 train; the remaining normals and every
image of grades 1-4 form the test set (805 + 1,857 = 2,662 with the official CSV). The draw
depends only on the CSV and ``split_seed``, never on the training seed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import track

from medrecontrast.data.readers import read_image
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.paths import atomic_path
from medrecontrast.tasks.base import (
    ABNORMAL,
    NORMAL,
    Protocol,
    Task,
    TaskFamily,
    item,
    read_label_csv,
    require_dir,
    resolve_data_root,
)

APTOS_TRAIN_NORMALS = 1000
APTOS_SPLIT_SEED = 1  # prepare_aptos.py: random.seed(1)
APTOS_PREPARED_DIR = "prepared_512"  # written by `medrecontrast data prepare aptos`

APTOS_LAYOUT = (
    "<data root>/aptos/train.csv (columns id_code, diagnosis) and <data root>/aptos/train_images/<id_code>.png "
    "(the Kaggle 'train' files unpacked as is)"
)


def aptos_task(variant: str = "", n_train: int = APTOS_TRAIN_NORMALS, split_seed: int = APTOS_SPLIT_SEED) -> Task:
    """The paper's APTOS task; ``n_train`` and ``split_seed`` change the draw (recorded per run)."""
    if variant:
        raise UserInputError(f"task 'aptos' has no variants (got 'aptos:{variant}')")
    return Task(
        name="aptos",
        modality="fundus",
        protocol=Protocol(
            "paper",
            "1000 grade-0 images drawn as prepare_aptos.py (random.seed(1))",
            "remaining grade-0 + all grades 1-4",
            has_masks=False,
        ),
        image_size=256,
        crop_size=None,
        list_items=load_aptos,
        folder="aptos",
        layout=APTOS_LAYOUT,
        fundus_crop=True,
        options={"n_train": n_train, "split_seed": split_seed},
    )


def split_aptos(
    id_codes, diagnoses, n_train: int = APTOS_TRAIN_NORMALS, seed: int = APTOS_SPLIT_SEED
) -> tuple[list[int], list[int]]:
    """Row indices of the training normals (in the shuffled order the authors' script takes them)
    and of the test images (in CSV order).

    The authors shuffle the list of grade-0 paths; a shuffle's permutation depends only on the
    list's length and the generator's state, so shuffling the row indices gives the same order.
    """
    diagnoses = np.asarray(diagnoses)
    normal_rows = np.flatnonzero(diagnoses == 0).tolist()
    if len(normal_rows) < n_train:
        raise DataLayoutError(
            f"APTOS protocol needs {n_train} normal images (diagnosis 0); the CSV has {len(normal_rows)}."
        )
    shuffled = list(normal_rows)
    random.Random(seed).shuffle(shuffled)  # a private generator: same draws as random.seed(seed); random.shuffle
    train_rows = shuffled[:n_train]
    chosen = set(train_rows)
    test_rows = [row for row in range(len(diagnoses)) if row not in chosen]
    return train_rows, test_rows


def load_aptos(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    import pandas as pd

    frame = read_label_csv(root / "train.csv", ("id_code", "diagnosis"), task, ids="id_code")
    diagnosis = pd.to_numeric(frame["diagnosis"], errors="coerce")  # a blank or text grade is an error below
    bad = ~diagnosis.isin([0, 1, 2, 3, 4])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataLayoutError(
            f"task '{task.name}': {root / 'train.csv'} row {row + 2}: "
            f"diagnosis {diagnosis.iloc[row]} is not a grade 0-4."
        )
    ids = frame["id_code"].astype(str).tolist()
    prepared_dir = root / APTOS_PREPARED_DIR
    prepared = prepared_dir.is_dir() and all((prepared_dir / f"{i}.png").is_file() for i in ids)
    image_dir = prepared_dir if prepared else root / "train_images"
    if not prepared and not image_dir.is_dir():
        raise DataLayoutError(
            f"task '{task.name}': missing folder {image_dir} (the Kaggle train images). Expected layout: {task.layout}"
        )

    def record(row: int) -> dict:
        grade = int(diagnosis.iloc[row])
        return item(
            image_dir / f"{ids[row]}.png",
            NORMAL if grade == 0 else ABNORMAL,
            f"grade{grade}",
            id=ids[row],
            prepared=prepared,
        )

    train_rows, test_rows = split_aptos(ids, diagnosis.to_numpy(), task.options["n_train"], task.options["split_seed"])
    return [record(r) for r in train_rows], [record(r) for r in test_rows]


def prepare_aptos(data_root: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Crop the black border of every APTOS photo once and save it as a 512x512 PNG.

    Writes ``<data root>/aptos/prepared_512/<id_code>.png`` (each file atomically, so an
    interrupted run resumes where it stopped); afterwards the ``aptos`` task reads these files and
    skips the crop. Returns counts of written and already present files.
    """
    from medrecontrast.data.fundus import (
        FUNDUS_SIZE,
        crop_fundus,
    )  # torch behind it: imported when cropping, not with the task list

    task = aptos_task()
    root = resolve_data_root(data_root, task) / task.folder
    frame = read_label_csv(root / "train.csv", ("id_code", "diagnosis"), task, ids="id_code")
    source = require_dir(root / "train_images", "the Kaggle train images", task)
    out = root / APTOS_PREPARED_DIR
    out.mkdir(exist_ok=True)
    ids = frame["id_code"].astype(str).tolist()
    missing = [i for i in ids if not (source / f"{i}.png").is_file()]
    if missing:
        raise DataLayoutError(
            f"{len(missing)} image(s) listed in {root / 'train.csv'} are missing from {source}, e.g. {missing[0]}.png"
        )
    written = 0
    for image_id in track(
        ids, description="cropping APTOS fundus photos", console=Console(stderr=True), disable=not progress
    ):
        target = out / f"{image_id}.png"
        if target.is_file():
            continue
        cropped = crop_fundus(read_image(source / f"{image_id}.png"), FUNDUS_SIZE)
        _save_png_atomically(cropped, target)
        written += 1
    return {"written": written, "already_present": len(ids) - written, "folder": str(out)}


def _save_png_atomically(image: np.ndarray, target: Path) -> None:
    pixels = np.round(np.moveaxis(image, 0, -1) * 255).astype(np.uint8)
    with atomic_path(target) as partial:
        Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(partial, format="PNG")


FAMILIES = (TaskFamily("aptos", aptos_task, listed=("aptos",), examples=lambda: [("aptos", aptos_task())]),)
