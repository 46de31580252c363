"""One interface for every method: configure, ``fit`` on normals, ``predict``, ``save``/``load``.

Methods register by name, so the runner and the notebooks build them with
``build_detector("recontrast", backbone="resnet18", pretrained=False)`` and new methods plug in
without touching either.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medrecontrast.data.transforms import images_to_device
from medrecontrast.engine import (
    atomic_torch_save,
    load_versioned,
    loader_options,
    resolve_device,
    seed_everything,
)
from medrecontrast.errors import UserInputError

DETECTOR_FORMAT = 1
DETECTORS: dict[str, type["Detector"]] = {}


def register_detector(name: str):
    """Class decorator: make a detector buildable by ``name``."""

    def decorate(cls):
        cls.name = name
        DETECTORS[name] = cls
        return cls

    return decorate


def detector_class(name: str) -> type["Detector"]:
    """The detector class registered as ``name``; an unknown name is a user error listing the known ones."""
    if name not in DETECTORS:
        raise UserInputError(f"unknown method '{name}'; known methods: {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]


def require_positive_ints(config, *names: str) -> None:
    """Each named option of ``config`` is a positive integer (a user error naming it otherwise)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserInputError(f"{name} must be a positive integer, got {value!r}")


def require_choice(name: str, value, choices: tuple) -> None:
    """``value`` is one of ``choices`` (a user error naming the option otherwise)."""
    if value not in choices:
        raise UserInputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def build_detector(name: str, **config) -> "Detector":
    """A detector of method ``name`` configured with ``config`` (unknown keys are refused)."""
    return detector_class(name)(**config)


@dataclass
class Predictions:
    """Per-image scores and per-pixel anomaly maps (at the input resolution) of a test set."""

    ids: list[str]
    labels: np.ndarray  # 0 normal, 1 abnormal (-1 where unknown)
    scores: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray | None = None  # (N, H, W) uint8 ground truth where the data has masks
    categories: list[str] | None = None  # source class of each image (e.g. CNV, DME) where the data has one


class Detector:
    """Base class: configuration in a dataclass, learning in ``fit``, state in attributes."""

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, **config):
        fields = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise UserInputError(f"unknown option(s) {', '.join(unknown)} for method '{self.name}'; known: {', '.join(sorted(fields))}")
        self.config = self.Config(**config)
        self.device = resolve_device(self.config.device)
        seed_everything(self.config.seed)  # the seed fixes the initial weights too

    # --- to implement ---------------------------------------------------------------------------
    def fit(self, train: Dataset, **kwargs) -> "Detector":
        raise NotImplementedError

    def score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (B,), maps (B, H, W))`` for a batch of normalised images on ``self.device``."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, test: Dataset, batch_size: int = 16, num_workers: int | None = None) -> Predictions:
        ids, labels, scores, maps, masks, categories = [], [], [], [], [], []
        for batch in DataLoader(test, batch_size=batch_size, **loader_options(self.device, num_workers)):
            batch_scores, batch_maps = self.score_batch(images_to_device(batch["image"], self.device))
            scores.append(batch_scores.float().cpu())
            maps.append(batch_maps.float().cpu())
            ids.extend(batch.get("id", [str(len(ids) + i) for i in range(len(batch_scores))]))
            labels.append(torch.as_tensor(batch["label"]) if "label" in batch else torch.full((len(batch_scores),), -1))
            if "mask" in batch:
                masks.append(batch["mask"][:, 0].to(torch.uint8))
            categories.extend(batch.get("category", []))
        return Predictions(
            ids=list(ids),
            labels=torch.cat(labels).numpy(),
            scores=torch.cat(scores).numpy(),
            maps=torch.cat(maps).numpy(),
            masks=torch.cat(masks).numpy() if masks else None,
            categories=[str(c) for c in categories] if len(categories) == len(ids) else None,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write configuration and learned state to one file (atomically)."""
        atomic_torch_save(
            {"format": DETECTOR_FORMAT, "method": self.name, "config": dataclasses.asdict(self.config), "state": self.state_dict()},
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None, **expected) -> "Detector":
        """A saved detector; refused if it is of another method or format, or if its configuration
        differs from ``expected`` (e.g. ``backbone="wide_resnet50_2"``)."""
        saved = load_versioned(path, DETECTOR_FORMAT, "detector file")
        method = saved["method"]
        if cls is not Detector and method != cls.name:
            raise UserInputError(f"{path} holds a '{method}' detector, not '{cls.name}'.")
        mismatched = {k: v for k, v in expected.items() if saved["config"].get(k) != v}
        if mismatched:
            details = ", ".join(f"{k} is {saved['config'].get(k)!r}, expected {v!r}" for k, v in mismatched.items())
            raise UserInputError(f"{path} holds a '{method}' detector whose {details}.")
        config = {**saved["config"], "pretrained": False, "weights": None}  # the saved state holds every weight
        if device is not None:
            config["device"] = device
        detector = build_detector(method, **config)
        detector.load_state_dict(saved["state"])
        return detector
