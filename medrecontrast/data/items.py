"""The item vocabulary every task yields and every dataset reads, and the loaded items of a task.

A task turns a dataset's layout into two MONAI-style lists of dicts, ``{"image": path, "label":
NORMAL | ABNORMAL, "mask": path | None, "id": str, "category": str}`` (plus ``group`` for a unified
task's member), one for the normal training images and one for the test images. They live here, in
``data``, so that the data layer never imports ``tasks`` (which imports it).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass

NORMAL, ABNORMAL = 0, 1


@dataclass
class TaskData:
    """The items a task's protocol yields, ready for MONAI transforms."""

    task: object  # the medrecontrast.tasks.Task that yielded them
    train: list[dict]
    test: list[dict]
    fundus_crop: bool = False  # APTOS photos not yet prepared by `medrecontrast data prepare aptos`

    @property
    def has_masks(self) -> bool:
        """Pixel masks exist for abnormal test images, so pixel-level metrics can be computed (on the
        images that have one: see :attr:`missing_masks`)."""
        return any(it.get("mask") is not None for it in self.test if it["label"] == ABNORMAL)

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
        summary["masks"] = sum(it.get("mask") is not None for it in self.test)
        summary["masks_missing"] = len(self.missing_masks)
        return summary


def _label(item: dict) -> str:
    return "abnormal" if item["label"] == ABNORMAL else "normal"
