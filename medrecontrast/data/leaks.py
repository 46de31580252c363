"""Leaks between a task's training and test images, found before training: the same patient on both sides,
and the same picture twice (byte-identical files; with ``near``, re-encoded or resized copies too).

A test image whose patient (or whose very pixels) the model saw in training measures memory, not detection.
For a user's own folders (:data:`USER_PROTOCOLS`) a shared patient is refused before training; an official
split that has one (BMAD's BraTS2021 validation and test share tumour patients) is the benchmark as
published, so it is run with a warning that the run records (``data.json``) and the report repeats.

Byte-identical files are found by size first, then SHA-256 of the files that share a size (two different
sizes cannot be the same bytes), so the check reads only those files. Near-duplicates use a perceptual hash
(``imagehash.phash`` with ``hash_size=16``: the sign of the 16x16 low-frequency DCT of a 64x64 grey copy,
256 bits) at Hamming distance <= :data:`NEAR_DISTANCE`; 2-D images only (a volume's slices are one patient
already). Measured on the real chest X-rays (1,324 images): a copy resized to 80 % and re-encoded as JPEG at
quality 60 differs by at most 6 bits, two different children's radiographs by more than 24; the common
64-bit hash at distance 4 called 43 pairs of different children duplicates (chest films look alike at 8x8).
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from medrecontrast.data.items import TaskData, has_patients, unit_of
from medrecontrast.errors import DataLayoutError

USER_PROTOCOLS = ("folder",)  # protocols whose split the user made: a shared patient is refused, not warned
HASH_SIZE = 16  # phash of 16 x 16 = 256 bits
NEAR_DISTANCE = 12  # bits of 256 that may differ between the perceptual hashes of near-duplicates
SHOWN = 5  # names listed in one line before "and N more"


@dataclass
class DataLeaks:
    """What :func:`find_leaks` found. ``patients``: one entry per patient with images in training and test
    (``{"patient", "train", "test"}``: a file of each side); ``identical`` and ``near``: pairs of files
    (``{"first", "second", "where"}``, ``where`` = ``train/test``, ``train/train`` or ``test/test``; ``near``
    with the Hamming ``distance``, None unless asked for)."""

    task: str
    patients: list[dict] = field(default_factory=list)
    identical: list[dict] = field(default_factory=list)
    near: list[dict] | None = None
    root: str = ""  # the folder holding every file of the task: the lines name files below it

    def short(self, path: str) -> str:
        """``path`` below :attr:`root` (``test/NORMAL/x.jpeg``), as the lines name it."""
        return os.path.relpath(path, self.root) if self.root else path

    def lines(self) -> list[str]:
        """One sentence per kind of leak found, for `data check`, the planning warning and the report; the shared
        patients' first, where there are any."""
        out = []
        if self.patients:
            names = ", ".join(p["patient"] for p in self.patients[:SHOWN]) + _more(self.patients)
            first = self.patients[0]
            out.append(
                f"{self.task}: {len(self.patients)} patient(s) have images in both training and test ({names}; e.g. "
                f"{self.short(first['train'])} and {self.short(first['test'])}): the test scores of their images may "
                "be optimistic"
            )
        for where, label in (
            ("train/test", "in both training and test"),
            ("train/train", "twice in training"),
            ("test/test", "twice in the test set"),
        ):
            pairs = [p for p in self.identical if p["where"] == where]
            if pairs:
                shown = "; ".join(f"{self.short(p['first'])} = {self.short(p['second'])}" for p in pairs[:SHOWN])
                shown += _more(pairs)
                out.append(f"{self.task}: {len(pairs)} byte-identical file pair(s) {label}: {shown}")
        if self.near:
            shown = "; ".join(
                f"{self.short(p['first'])} ~ {self.short(p['second'])} ({p['where']})" for p in self.near[:SHOWN]
            )
            out.append(
                f"{self.task}: {len(self.near)} near-duplicate pair(s) (perceptual hash, Hamming distance <= "
                f"{NEAR_DISTANCE} of {HASH_SIZE**2} bits): {shown}{_more(self.near)}"
            )
        return out

    def to_dict(self) -> dict:
        return {
            "patients_in_train_and_test": self.patients,
            "identical_files": self.identical,
            "near_duplicates": self.near,
            "near_distance": NEAR_DISTANCE if self.near is not None else None,
            "near_bits": HASH_SIZE**2 if self.near is not None else None,
            "warnings": self.lines(),
            "root": self.root,
        }


def _more(items: list) -> str:
    return f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""


def find_leaks(data: TaskData, near: bool = False) -> DataLeaks:
    """Patients in training and test, byte-identical files across the splits and within each, and (``near``)
    near-duplicate 2-D images, of one loaded task."""
    paths = {str(it["image"]) for it in data.train + data.test}
    root = os.path.commonpath([os.path.abspath(p) for p in paths]) if paths else ""
    root = os.path.dirname(root) if len(paths) == 1 else root
    found = DataLeaks(task=data.task.name, patients=patient_leaks(data), identical=identical_files(data), root=root)
    if near:
        found.near = near_duplicates(data, exclude=found.identical)
    return found


def patient_leaks(data: TaskData) -> list[dict]:
    """Every patient with images in both training and test, with a file of each side (by name order)."""
    if not (has_patients(data.train) and has_patients(data.test)):
        return []
    train: dict[str, str] = {}
    for it in data.train:
        if it.get("patient") is not None:
            train.setdefault(unit_of(it), it["image"])
    shared: dict[str, dict] = {}
    for it in data.test:
        unit = unit_of(it)
        if it.get("patient") is not None and unit in train and unit not in shared:
            shared[unit] = {"patient": unit, "train": train[unit], "test": it["image"]}
    return sorted(shared.values(), key=lambda p: p["patient"])


def identical_files(data: TaskData) -> list[dict]:
    """Pairs of byte-identical image files (each file once, however many slices it gives), within and across
    the splits; files that cannot be read are left to the broken-file check."""
    splits: dict[str, str] = {}
    for split, items in (("train", data.train), ("test", data.test)):
        for it in items:
            splits.setdefault(str(it["image"]), split)
    by_size: dict[int, list[str]] = defaultdict(list)
    for path in splits:
        try:
            by_size[os.stat(path).st_size].append(path)
        except OSError:
            continue
    pairs = []
    for paths in by_size.values():
        if len(paths) < 2:
            continue
        by_digest: dict[str, list[str]] = defaultdict(list)
        for path in paths:
            try:
                with open(path, "rb") as handle:
                    by_digest[hashlib.file_digest(handle, "sha256").hexdigest()].append(path)
            except OSError:
                continue
        for same in by_digest.values():
            for i, first in enumerate(same):
                for second in same[i + 1 :]:
                    pairs.append(_pair(first, second, splits))
    return sorted(pairs, key=lambda p: (p["where"], p["first"], p["second"]))


def _pair(first: str, second: str, splits: dict[str, str]) -> dict:
    a, b = sorted((first, second), key=lambda p: (splits[p] != "train", p))  # a training file first
    return {"first": a, "second": b, "where": f"{splits[a]}/{splits[b]}"}


def near_duplicates(data: TaskData, exclude: list[dict] = ()) -> list[dict]:
    """Pairs of 2-D images whose perceptual hashes differ in at most :data:`NEAR_DISTANCE` of 64 bits (the
    byte-identical pairs in ``exclude`` are not repeated)."""
    import imagehash
    from PIL import Image

    from medrecontrast.data.readers import read_image

    splits: dict[str, str] = {}
    records: dict[str, dict] = {}
    for split, items in (("train", data.train), ("test", data.test)):
        for it in items:
            if it.get("slice") is None and str(it["image"]) not in records:
                splits[str(it["image"])], records[str(it["image"])] = split, it
    paths, bits = [], []
    for path, it in records.items():
        try:
            array = read_image(path, None, 2, it.get("intensity"))
        except Exception:  # noqa: BLE001 - a broken file is the broken-file check's to report
            continue
        grey = np.clip(np.asarray(array, dtype=np.float32).mean(axis=0) * 255, 0, 255).round().astype(np.uint8)
        paths.append(path)
        bits.append(imagehash.phash(Image.fromarray(grey), hash_size=HASH_SIZE).hash.ravel())
    if len(paths) < 2:
        return []
    packed = np.packbits(np.array(bits, dtype=bool), axis=1).view(np.uint64)  # (n, 4) words of 64 bits
    known = {frozenset((p["first"], p["second"])) for p in exclude}
    pairs = []
    for i in range(len(paths) - 1):  # row by row: n^2/2 popcounts, no n x n matrix in memory
        distance = np.bitwise_count(packed[i] ^ packed[i + 1 :]).sum(axis=1)
        for j in np.flatnonzero(distance <= NEAR_DISTANCE):
            first, second = paths[i], paths[i + 1 + int(j)]
            if frozenset((first, second)) not in known:
                pairs.append({**_pair(first, second, splits), "distance": int(distance[j])})
    return sorted(pairs, key=lambda p: (p["distance"], p["where"], p["first"]))


def enforce(data: TaskData, leaks: DataLeaks) -> list[str]:
    """Refuse a user's own split whose training and test share a patient (naming the patients and a file of
    each); return the warnings to show and record otherwise."""
    if leaks.patients and data.task.protocol.name in USER_PROTOCOLS:
        shown = "; ".join(
            f"{p['patient']} ({leaks.short(p['train'])} and {leaks.short(p['test'])})" for p in leaks.patients[:SHOWN]
        )
        raise DataLayoutError(
            f"task '{data.task.name}': {len(leaks.patients)} patient(s) have images in both training and test "
            f"(files below {leaks.root}): "
            f"{shown}{_more(leaks.patients)}. A test image of a patient the model trained on measures memory; move "
            "each patient's images to one side, or set the task's patient option if these are not one patient "
            '(e.g. patient = "file").'
        )
    return leaks.lines()
