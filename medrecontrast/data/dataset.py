"""Datasets over task items: decode once, cache, yield pixels in [0, 1] (the model normalises)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose, Transform

from medrecontrast.data.items import TaskData
from medrecontrast.data.transforms import network_input, preprocessing
from medrecontrast.errors import user_error_cause
from medrecontrast.paths import cache_dir

CACHE_MODES = ("disk", "memory", "none")
# part of every cache key: bump when preprocessing changes its output (2: torch's anti-aliased resize, 3: mask_known,
# 4: DICOM through the modality LUT and VOI, one NIfTI scale per task, entries with their own checksum)
PIPELINE_VERSION = 4


class ImageDataset(Dataset):
    """A MONAI Dataset that lets a user error (a broken file, a mask of the wrong size) surface as
    itself instead of as MONAI's nested "applying transform" RuntimeError."""

    def _transform(self, index: int):
        try:
            return super()._transform(index)
        except RuntimeError as exc:
            cause = user_error_cause(exc)
            if cause is None:
                raise
            raise cause from exc


CHECKSUM = "_checksum"  # key of a cache entry's own checksum


def entry_checksum(entry: dict) -> str:
    """SHA-256 of an entry's pixel tensors (image, mask), the one thing a damaged cache file can change
    unnoticed: torch.load reads a file with a flipped byte without complaint."""
    digest = hashlib.sha256()
    for key in ("image", "mask"):
        value = entry.get(key)
        if isinstance(value, torch.Tensor):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class AddChecksumd(Transform):
    """The last preprocessing step of a disk cache: the entry carries its own checksum (a MONAI Transform,
    so PersistentDataset caches it with the steps before it)."""

    def __call__(self, data: dict) -> dict:
        return {**data, CHECKSUM: entry_checksum(data)}


class VerifiedPersistentDataset(PersistentDataset):
    """MONAI's PersistentDataset whose cache entries are verified when read: an empty, truncated or
    altered entry (checksum) is deleted with a warning naming its source image and recomputed, instead of
    failing every run that reads the image (MONAI recomputes only a few kinds of damage)."""

    def _cachecheck(self, item_transformed):
        hashfile = Path(self.cache_dir) / f"{self.hash_func(item_transformed).decode('utf-8')}{self.transform_hash}.pt"
        if hashfile.is_file():
            try:
                entry = torch.load(hashfile, weights_only=self.weights_only)
                if isinstance(entry, dict) and entry.get(CHECKSUM) == entry_checksum(entry):
                    return _without_checksum(entry)
                problem = "its checksum does not match its contents"
            except PermissionError:
                raise
            except Exception as exc:  # whatever torch.load raises on a damaged file
                problem = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"cache entry {hashfile} of {item_transformed.get('image')} is damaged ({problem}); recomputing it",
                stacklevel=2,
            )
            hashfile.unlink(missing_ok=True)
        return _without_checksum(super()._cachecheck(item_transformed))


def _without_checksum(entry):
    return {k: v for k, v in entry.items() if k != CHECKSUM} if isinstance(entry, dict) else entry


def item_key(signature: str):
    """A PersistentDataset hash function that changes when the file or the pipeline changes.

    MONAI's default key is the pickled item alone, so an edited image or a new image size would
    silently reuse stale tensors; this one adds each file's size and mtime and the pipeline settings.
    """

    def hash_item(item: dict) -> bytes:
        stats = [
            (os.stat(p).st_size, os.stat(p).st_mtime_ns) if p and os.path.exists(p) else None
            for p in (item.get("image"), item.get("mask"))
        ]
        payload = json.dumps([signature, item, stats], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest().encode()

    return hash_item


# item keys the datasets drop (run.lifecycle and the report read them from the task's items)
STATISTICS_ONLY = ("patient", "unmasked_volume")


def image_dataset(
    items: list[dict],
    image_size: int,
    crop_size: int | None = None,
    *,
    masks: bool = True,
    fundus_crop: bool = False,
    cache: str = "disk",
    cache_root: str | os.PathLike | None = None,
    num_workers: int = 0,
) -> Dataset:
    """A MONAI dataset yielding ``{"image": (3, S, S) float16 pixels in [0, 1], "mask": (1, S, S), "label",
    "id", ...}``.

    ``cache="disk"`` (default) keeps decoded, resized images as float16 tensors under
    ``cache_root`` (default: ``<cache folder>/decoded``), so neither a second epoch nor a second run
    decodes a JPEG again; ``"memory"`` holds them in RAM for this process; ``"none"`` decodes every time.
    """
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
    # who an image belongs to is the statistics' business, not the network's: an item may name its patient and the
    # next not (a unified task, a folder with loose files beside patient folders), and a batch must collate
    items = [{k: v for k, v in it.items() if k not in STATISTICS_ONLY} for it in items]
    prep = preprocessing(image_size, crop_size, masks=masks, fundus_crop=fundus_crop)
    if cache == "disk":
        signature = f"v{PIPELINE_VERSION}-{image_size}-{crop_size}-masks{masks}-fundus{fundus_crop}"
        folder = Path(cache_root) if cache_root else cache_dir() / "decoded"
        folder.mkdir(parents=True, exist_ok=True)
        prep = Compose([*prep.transforms, AddChecksumd()])
        decoded = VerifiedPersistentDataset(items, transform=prep, cache_dir=folder, hash_func=item_key(signature))
    elif cache == "memory":
        decoded = CacheDataset(items, transform=prep, num_workers=num_workers or None, progress=False)
    else:
        decoded = Dataset(items, transform=prep)
    return ImageDataset(decoded, transform=network_input(masks))


def task_datasets(
    data: TaskData, image_size: int | None = None, crop_size: int | None = None, **kwargs
) -> tuple[Dataset, Dataset]:
    """Train and test datasets of a loaded task at its own sizes unless overridden."""
    task = data.task
    size = image_size or task.image_size
    crop = crop_size if crop_size is not None else (task.crop_size if image_size is None else None)
    options = dict(masks=data.has_masks, fundus_crop=data.fundus_crop, **kwargs)
    return image_dataset(data.train, size, crop, **options), image_dataset(data.test, size, crop, **options)
