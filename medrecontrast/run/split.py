"""The images of a run: the task's training normals minus a fixed hold-out, and its test set."""

from __future__ import annotations

import dataclasses
import hashlib

from torch.utils.data import Dataset

from medrecontrast.data.dataset import task_datasets
from medrecontrast.data.items import TaskData, has_patients, unit_of
from medrecontrast.errors import UserInputError

HOLDOUT_SEED = 0  # the held-out normals are the same for every method and seed of a task


def holdout_count(total: int, fraction: float) -> int:
    """How many of ``total`` training normals :func:`split_holdout` holds out."""
    return 0 if fraction <= 0 else max(1, round(total * fraction))


def _draw_key(item_id) -> bytes:
    """Where an image stands in the hold-out draw: SHA-256 of ``HOLDOUT_SEED`` and its id (a keyed, stable order;
    Python's ``hash`` is salted per process and numpy's permutation draws by position)."""
    return hashlib.sha256(f"{HOLDOUT_SEED}:{item_id}".encode()).digest()


def split_holdout(items: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """``(train, holdout)``: a fixed random ``fraction`` of the normal training items is held out.

    The draw depends only on the items' ids (``HOLDOUT_SEED``), not on their order or on the other images,
    so every method and seed of a task trains on the same images and calibrates on the same held-out ones,
    and adding or removing an image moves at most the images at the edge of the draw. Where the items name
    their patients, whole patients are held out (each where its first image stands in the draw, until at least
    ``fraction`` of the images are), so that no held-out normal shares a patient with a training image; with
    one image per patient this is the same draw as by image.
    """
    if fraction <= 0:
        return list(items), []
    count = holdout_count(len(items), fraction)
    if count >= len(items):
        raise UserInputError(f"holdout {fraction} would leave no training images out of {len(items)}")
    units = [unit_of(it) for it in items] if has_patients(items) else [f"image:{it['id']}" for it in items]
    # Each image's place in the draw is a keyed hash of its id, not its position: adding, removing or
    # reordering other images leaves it where it was. A unit (patient) comes in at its first image.
    rank = sorted(range(len(items)), key=lambda i: _draw_key(items[i]["id"]))
    distinct = list(dict.fromkeys(units[i] for i in rank))
    sizes = {u: 0 for u in distinct}
    for u in units:
        sizes[u] += 1
    held_units, taken = set(), 0
    for unit in distinct:
        if taken >= count:
            break
        held_units.add(unit)
        taken += sizes[unit]
    if taken >= len(items):
        raise UserInputError(
            f"holdout {fraction} would leave no training images out of {len(items)} (whole patients are held out)"
        )
    held = [u in held_units for u in units]
    return [it for it, h in zip(items, held) if not h], [it for it, h in zip(items, held) if h]


def holdout_split(data: TaskData, fraction: float) -> tuple[list[dict], list[dict]]:
    """``(train, holdout)`` of a run: where the task has a released validation split (BMAD) and the run holds
    normals out (``fraction > 0``), its validation normals are held out and every training normal trains (the
    fraction is not used: the task's notes say so); else :func:`split_holdout` of the training normals."""
    if fraction > 0 and data.validation:
        return list(data.train), list(data.validation)
    return split_holdout(data.train, fraction)


def groups_of_test_images(data: TaskData) -> list[str] | None:
    """The member task of each test image of a unified task (None for other tasks)."""
    return [it["group"] for it in data.test] if data.task.members else None


def patients_of(items: list[dict]) -> list[str] | None:
    """The unit of analysis of each item (its patient, else the image), or None where no item names a patient."""
    return [unit_of(it) for it in items] if has_patients(items) else None


def run_datasets(data: TaskData, config) -> tuple[Dataset, Dataset, Dataset | None]:
    """``(train, test, holdout)`` datasets of a run (a :class:`~medrecontrast.run.RunConfig`): the training
    normals minus the held-out ones, the test set, and the held-out normals (None with ``holdout = 0``),
    at the run's sizes."""
    fit_items, holdout_items = holdout_split(data, config.holdout)

    def datasets(train_items: list[dict]) -> tuple[Dataset, Dataset]:
        return task_datasets(
            dataclasses.replace(data, train=train_items), image_size=config.image_size, crop_size=config.crop_size
        )

    train, test = datasets(fit_items)
    return train, test, datasets(holdout_items)[0] if holdout_items else None
