"""APTOS 2019 blindness detection (Kaggle): ``aptos/train.csv`` + ``aptos/train_images/<id_code>.png``.

Paper protocol: diagnosis 0 is normal. 1,000 normals are drawn for training with
``numpy.random.default_rng(APTOS_SPLIT_SEED).permutation`` over the grade-0 rows in the CSV's order;
the remaining normals and every image of grades 1-4 form the test set (805 + 1,857 = 2,662 with the
official CSV). The draw depends only on the CSV and the seed, never on the training seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medrecontrast.errors import DataLayoutError
from medrecontrast.tasks.base import ABNORMAL, NORMAL, Task, item, read_label_csv

APTOS_TRAIN_NORMALS = 1000
APTOS_SPLIT_SEED = 0
APTOS_PREPARED_DIR = "prepared_512"  # written by `medrecontrast data prepare aptos`

APTOS_LAYOUT = (
    "<data root>/aptos/train.csv (columns id_code, diagnosis) and <data root>/aptos/train_images/<id_code>.png "
    "(the Kaggle 'train' files unpacked as is)"
)


def split_aptos(id_codes, diagnoses, n_train: int = APTOS_TRAIN_NORMALS, seed: int = APTOS_SPLIT_SEED) -> tuple[list[int], list[int]]:
    """Row indices of the training normals and of the test images, both in CSV order."""
    diagnoses = np.asarray(diagnoses)
    normal_rows = np.flatnonzero(diagnoses == 0)
    if len(normal_rows) < n_train:
        raise DataLayoutError(f"APTOS protocol needs {n_train} normal images (diagnosis 0); the CSV has {len(normal_rows)}.")
    chosen = set(normal_rows[np.random.default_rng(seed).permutation(len(normal_rows))[:n_train]].tolist())
    train_rows = sorted(chosen)
    test_rows = [row for row in range(len(diagnoses)) if row not in chosen]
    return train_rows, test_rows


def load_aptos(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    frame = read_label_csv(root / "train.csv", ("id_code", "diagnosis"), task)
    diagnosis = frame["diagnosis"]
    bad = ~diagnosis.isin([0, 1, 2, 3, 4])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataLayoutError(f"task '{task.name}': {root / 'train.csv'} row {row + 2}: diagnosis {diagnosis.iloc[row]!r} is not a grade 0-4.")
    ids = frame["id_code"].astype(str).tolist()
    prepared_dir = root / APTOS_PREPARED_DIR
    prepared = prepared_dir.is_dir() and all((prepared_dir / f"{i}.png").is_file() for i in ids)
    image_dir = prepared_dir if prepared else root / "train_images"
    if not prepared and not image_dir.is_dir():
        raise DataLayoutError(f"task '{task.name}': missing folder {image_dir} (the Kaggle train images). Expected layout: {task.layout}")

    def record(row: int) -> dict:
        grade = int(diagnosis.iloc[row])
        return item(image_dir / f"{ids[row]}.png", NORMAL if grade == 0 else ABNORMAL, f"grade{grade}", id=ids[row], prepared=prepared)

    train_rows, test_rows = split_aptos(ids, diagnosis.to_numpy(), task.options.get("n_train", APTOS_TRAIN_NORMALS), task.options.get("split_seed", APTOS_SPLIT_SEED))
    return [record(r) for r in train_rows], [record(r) for r in test_rows]
