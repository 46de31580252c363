"""The item vocabulary every task yields and every dataset reads, and the loaded items of a task.

A task turns a dataset's layout into two MONAI-style lists of dicts, ``{"image": path, "label":
NORMAL | ABNORMAL, "mask": path | None, "id": str, "category": str}`` (plus ``group`` for a unified
task's member, and ``patient`` where the task knows who an image belongs to: any unit of analysis, a
patient, an eye, a volume), one for the normal training images and one for the test images. An item
without ``patient`` is its own unit (:func:`unit_of`). They live here, in
``data``, so that the data layer never imports ``tasks`` (which imports it).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field

NORMAL, ABNORMAL = 0, 1
ONE_IMAGE = "one image = one unit"  # a task whose files name no patient: every image is its own unit


@dataclass
class TaskData:
    """The items a task's protocol yields, ready for MONAI transforms."""

    task: object  # the medrecontrast.tasks.Task that yielded them
    train: list[dict]
    test: list[dict]
    fundus_crop: bool = False  # APTOS photos not yet prepared by `medrecontrast data prepare aptos`
    notes: list = field(default_factory=list)  # what the task's loader must tell (files of a split left out, ...)
    # normals of the benchmark's own validation split (BMAD's valid/good): a run's held-out normals where it holds
    # any out (run.split.holdout_split), in place of training normals
    validation: list = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        """Pixel masks exist for abnormal test images, so pixel-level metrics can be computed (on the
        images that have one: see :attr:`missing_masks`)."""
        return any(it.get("mask") is not None for it in self.test if it["label"] == ABNORMAL)

    def labelling_notes(self) -> list[str]:
        """How labels were given where the files do not say them: slices of abnormal volumes without a mask (every
        slice abnormal, the lesion's or not: ``data check``, the run's ``data.json`` and the report say so)."""
        unmasked = [it for it in self.test if it.get("unmasked_volume")]
        if not unmasked:
            return list(self.notes)
        volumes = len({it["image"] for it in unmasked})
        return [
            f"{self.task.name}: {volumes} abnormal test volume(s) have no mask, so all {len(unmasked)} of their slices "
            "are labelled abnormal, those without the lesion too (image AUROC then also measures how a method scores "
            'healthy slices of a diseased volume); add masks, or unmasked_volumes = "refuse" to be stopped',
            *self.notes,
        ]

    @property
    def has_patients(self) -> bool:
        """Some item of the task names its patient: intervals and tests then resample patients."""
        return has_patients(self.train) or has_patients(self.test)

    @property
    def missing_masks(self) -> list[str]:
        """Ids of abnormal test images without a mask in a task that has masks (they are left out of
        the pixel metrics, with a warning)."""
        if not self.has_masks:
            return []
        return [it["id"] for it in self.test if it["label"] == ABNORMAL and it.get("mask") is None]

    def fingerprint(self) -> dict:
        """A digest of every file this task's train and test items read (path, size, modification
        time), so that a run records on which data it was trained and evaluated, and a table never
        mixes runs of different data. Cheap: ``stat`` only, no file is read."""
        digest = hashlib.sha256()
        files = 0
        for split, items in (("train", self.train), ("test", self.test)):
            for item in sorted(items, key=lambda it: str(it["id"])):
                for key in ("image", "mask"):
                    path = item.get(key)
                    if path is None or not isinstance(path, (str, os.PathLike)):
                        continue
                    try:
                        info = os.stat(path)
                        entry = f"{split}|{item['id']}|{key}|{os.fspath(path)}|{info.st_size}|{info.st_mtime_ns}"
                    except OSError:
                        entry = f"{split}|{item['id']}|{key}|{os.fspath(path)}|missing"
                    digest.update(entry.encode())
                    files += 1
        return {"sha256": digest.hexdigest(), "files": files}

    def manifest(self) -> dict:
        """Every file the task reads, by split and item id: ``[size, modification time in ns]`` (``None`` where it
        cannot be stat'ed); what :func:`manifest_changes` compares, to say which files were added, removed or
        changed since a run trained."""
        out: dict = {}
        splits = (
            ("train", self.train),
            ("test", self.test),
            *((("validation", self.validation),) if self.validation else ()),
        )
        for split, items in splits:
            entries = {}
            for item in items:
                path = item.get("image")
                try:
                    info = os.stat(path)
                    entries[str(item["id"])] = [info.st_size, info.st_mtime_ns]
                except (OSError, TypeError):
                    entries[str(item["id"])] = None
            out[split] = entries
        return out

    def counts(self) -> dict:
        """Counts per split and label, and per source category, as `data check --json` prints them."""
        summary: dict = {"task": self.task.name}
        for split, items in (("train", self.train), ("test", self.test)):
            labels = Counter(_label(it) for it in items)
            summary[split] = {k: labels[k] for k in ("normal", "abnormal") if labels[k]}
        summary["categories"] = {
            split: dict(sorted(Counter(it.get("category", "") for it in items).items()))
            for split, items in (("train", self.train), ("test", self.test))
        }
        summary["categories_by_label"] = {  # each label's classes, so a table lists them under their label
            split: {
                label: dict(sorted(Counter(it.get("category", "") for it in items if _label(it) == label).items()))
                for label in summary[split]
            }
            for split, items in (("train", self.train), ("test", self.test))
        }
        summary["patients"] = (
            {split: patient_counts(items) for split, items in (("train", self.train), ("test", self.test))}
            if self.has_patients
            else None
        )
        summary["unit"] = getattr(self.task, "patients", "") or ONE_IMAGE
        summary["labelling"] = self.labelling_notes()
        summary["masks"] = sum(it.get("mask") is not None for it in self.test)
        summary["masks_missing"] = len(self.missing_masks)
        return summary


def manifest_changes(before: dict, after: dict) -> dict:
    r"""``{split: {"added": [...], "removed": [...], "changed": [...]}}`` (item ids, sorted) between two
    :meth:`TaskData.manifest`\ s; splits without a change are left out."""
    changes = {}
    for split in ("train", "test", "validation"):
        old, new = before.get(split, {}), after.get(split, {})
        found = {
            "added": sorted(set(new) - set(old)),
            "removed": sorted(set(old) - set(new)),
            "changed": sorted(k for k in set(old) & set(new) if old[k] != new[k]),
        }
        if any(found.values()):
            changes[split] = found
    return changes


def describe_changes(changes: dict, limit: int = 3) -> str:
    """``training: 1 added (x), 2 changed (a, b); test: 1 removed (y)`` for :func:`manifest_changes`."""
    parts = []
    for split, found in changes.items():
        kinds = [
            f"{len(ids)} {kind} ({', '.join(ids[:limit])}{' ...' if len(ids) > limit else ''})"
            for kind, ids in found.items()
            if ids
        ]
        parts.append(f"{'training' if split == 'train' else 'test'}: {', '.join(kinds)}")
    return "; ".join(parts)


def unit_of(item: dict) -> str:
    """The unit of analysis of an item: its patient, else the image itself (``image:<id>``, which no patient
    name can equal by accident)."""
    patient = item.get("patient")
    return str(patient) if patient is not None else f"image:{item['id']}"


def has_patients(items: list[dict]) -> bool:
    """Whether any item names its patient (else every image is its own unit, and nothing is guessed)."""
    return any(it.get("patient") is not None for it in items)


def patient_counts(items: list[dict]) -> dict:
    """Distinct patients per label of ``items`` and in all (a patient with normal and abnormal images counts under
    both labels, once in ``all``), and images per patient (``max``, and how many patients have one image)."""
    by_label: dict[str, set] = {}
    images: Counter = Counter()
    for it in items:
        unit = unit_of(it)
        by_label.setdefault(_label(it), set()).add(unit)
        images[unit] += 1
    out: dict = {k: len(by_label[k]) for k in ("normal", "abnormal") if k in by_label}
    out["all"] = len(images)
    out["images_per_patient_max"] = max(images.values(), default=0)
    out["with_one_image"] = sum(1 for n in images.values() if n == 1)
    return out


def _label(item: dict) -> str:
    return "abnormal" if item["label"] == ABNORMAL else "normal"
