"""A new dataset as a contributor would add one: this module (its own Task and ``FAMILIES``), plus
one entry in ``medrecontrast.tasks.registry.MODULES`` (the test adds it there).

``rings``: grey images of one bright ring (normal) or a ring with a dark gap (abnormal, with a
mask), in the class-per-folder layout under the folder given by ``$TOY_RINGS``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from medrecontrast.errors import UserInputError
from medrecontrast.tasks.base import Protocol, Task, TaskFamily
from medrecontrast.tasks.folder import list_class_folders

RINGS_LAYOUT = "$TOY_RINGS/train/NORMAL/*.png, test/{NORMAL,GAP}/*.png, ground_truth/GAP/<stem>_mask.png"


def write_rings(root: Path, n_train: int = 12, n_test: int = 6, size: int = 64) -> Path:
    yy, xx = np.mgrid[:size, :size] - size / 2
    radius = np.hypot(yy, xx)
    rng = np.random.default_rng(0)
    for split, cls, count in (("train", "NORMAL", n_train), ("test", "NORMAL", n_test), ("test", "GAP", n_test)):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            ring = (np.abs(radius - rng.uniform(14, 20)) < 3) * 200 + rng.normal(30, 5, (size, size))
            if cls == "GAP":
                gap = (xx > 0) & (np.abs(yy) < 6) & (np.abs(radius - 17) < 6)
                ring[gap] = 30
                (root / "ground_truth" / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray((gap * 255).astype(np.uint8)).save(root / "ground_truth" / cls / f"{i:03d}_mask.png")
            Image.fromarray(np.clip(ring, 0, 255).astype(np.uint8)).save(root / split / cls / f"{i:03d}.png")
    return root


def rings_task(variant: str = "") -> Task:
    if variant:
        raise UserInputError(f"task 'rings' has no variants (got 'rings:{variant}')")
    return Task(
        name="rings",
        modality="toy",
        protocol=Protocol("toy", "train/NORMAL", "test/NORMAL + test/GAP", has_masks=True),
        image_size=64,
        crop_size=None,
        list_items=lambda task, root: list_class_folders(task, root, normal="NORMAL"),
        layout=RINGS_LAYOUT,
        locate=lambda task, _: Path(os.environ["TOY_RINGS"]),
    )


FAMILIES = (TaskFamily("rings", rings_task, listed=("rings",), examples=lambda: [("rings", rings_task())]),)
