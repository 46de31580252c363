"""One interface for every method: configure, ``fit`` on normals, ``predict``, ``save``/``load``.

A method is one module: a configuration dataclass (checked when it is built), a :class:`Detector`
subclass registered with :func:`register_detector` that holds the algorithm (what it needs to run: whether it
trains, the input-size multiple, its networks built in :meth:`Detector.construct`), and its :class:`MethodCard`
(``Detector.card``, as torchvision's ``Weights.meta``): what the sweep, the tables, the figures, the report and
the CLI say about it (display name, order, reference, published results, default sweep, caveats, options and
sizes per profile). None of those hold a list of methods: adding one is a new file plus one import line in
``models/__init__.py``.
Notebooks build detectors with ``build_detector("recontrast", backbone="resnet18", pretrained=False)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medrecontrast.compute import (
    atomic_torch_save,
    batch_to_device,
    load_versioned,
    loader_options,
    own_random_streams,
    resolve_device,
)
from medrecontrast.errors import UserInputError
from medrecontrast.progress import tracked

DETECTOR_FORMAT = 1
DETECTORS: dict[str, type["Detector"]] = {}


def register_detector(name: str):
    """Class decorator: make a detector buildable by ``name``; a name already taken is refused (as
    torchvision's model registry does), so one method can never silently replace another. The
    class's signature becomes its ``Config``'s keyword-only fields, so ``help()`` and an IDE show
    every option with its type and default."""

    def decorate(cls):
        if name in DETECTORS and DETECTORS[name] is not cls:
            raise ValueError(
                f"a detector named '{name}' is already registered "
                f"({DETECTORS[name].__module__}.{DETECTORS[name].__qualname__})"
            )
        cls.name = name
        options = inspect.signature(cls.Config).parameters.values()
        cls.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in options])
        DETECTORS[name] = cls
        return cls

    return decorate


def detector_class(name: str) -> type["Detector"]:
    """The detector class registered as ``name``; an unknown name is a user error listing the known ones."""
    if name not in DETECTORS:
        from medrecontrast.catalog import unknown_method_message

        raise UserInputError(unknown_method_message(name, registered_methods()))
    return DETECTORS[name]


def registered_methods() -> list[str]:
    """Every registered method, in the order tables, legends and colours use (its card's ``order``, then name)."""
    return sorted(DETECTORS, key=lambda name: (DETECTORS[name].card.order, name))


def state_bytes(build, *, optimizer_moments: int = 2) -> dict:
    """``{"model", "checkpoint"}`` bytes of the network ``build()`` returns, built on PyTorch's meta device (no
    memory, no weights read): the model file holds every tensor of its state dict; a checkpoint holds them
    again plus ``optimizer_moments`` tensors per trainable parameter (Adam: 2, AMSGrad: 3)."""
    with torch.device("meta"):
        network = build()
    model = sum(t.numel() * t.element_size() for t in network.state_dict().values())
    trainable = sum(p.numel() * p.element_size() for p in network.parameters() if p.requires_grad)
    return {"model": model, "checkpoint": model + optimizer_moments * trainable}


def default_methods() -> list[str]:
    """The methods of a sweep that names none: every registered method whose card says ``default_sweep``."""
    return [name for name in registered_methods() if DETECTORS[name].card.default_sweep]


def backbone_of(method: str, options: dict) -> str:
    """The network of a run of ``method`` with detector ``options`` (a sweep's variant, not registered, and a
    method registered no more: its ``backbone`` option)."""
    return DETECTORS[method].backbone_of(options) if method in DETECTORS else str(options.get("backbone"))


def display_name(method: str) -> str:
    """How tables and figures name ``method``; a sweep's variant (not registered) keeps its own name."""
    return DETECTORS[method].card.display_name if method in DETECTORS else method


# the source of BMAD's published numbers, which PatchCore's and RD4AD's ``paper_results`` hold for the bmad: tasks
# BMAD published its Table 2 twice: imgs/table.png (146a04c, 2023-06-07; these numbers, the ones the BMAD issue quotes)
# and a revision, imgs/new-table.JPG (ed83d5f, 2024-04-28, the one its README now shows), whose PatchCore and RD4AD
# numbers differ by 0.02-0.97 points (e.g. PatchCore RSNA 75.17 -> 76.14, BraTS 91.55 -> 91.65); docs/data.md
BMAD_TABLE2 = "BMAD's Table 2, first version (DorisBao/BMAD imgs/table.png, 146a04c; revised in imgs/new-table.JPG)"
# ADer's benchmark table (zhangzjn/ADer configs/benchmark/README.md, ac5f4fc), Uni-Medical, 100 epochs: ADer's own
# re-implementations, one model for BMAD's brain, liver and retinal sets at 256 px, the mean of the three classes
ADER_UNI_MEDICAL = (
    "ADer's benchmark (zhangzjn/ADer configs/benchmark/README.md, ac5f4fc), Uni-Medical, 100 epochs, 256 px"
)

PIXEL_TOLERANCE = 1e-3  # float16 pixels may round a hair outside [0, 1]


def _frozen(value):
    """A read-only view of nested mappings (a card's published numbers cannot be changed by a caller)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


@dataclass(frozen=True)
class MethodCard:
    """What the benchmark says about a method, apart from its algorithm (as torchvision's ``Weights.meta``):
    read by the sweep, the tables, the figures, the report and ``medrecontrast methods``. Frozen; a subclass's
    card is its parent's with changes (:meth:`but`)."""

    display_name: str  # in tables, legends and the report
    order: int = 100  # position in tables and figures, and so its colour
    reference: bool = False  # the suite's reference method: compared against every other one
    citation: str = ""  # the paper and released code the method follows
    requires: str = ""  # what the method needs beyond the core install
    # the method's own published numbers, in percent, by task (or task family: "mvtec" holds the class mean),
    # metric name -> value; the report sets its runs beside them
    paper_results: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # where a ``paper_results`` entry comes from when not from the method's own paper (BMAD's table), by its key
    paper_sources: Mapping[str, str] = field(default_factory=dict)
    random_weights_caveat: str = ""  # what the report says of its runs from random (not pretrained) weights
    # part of a sweep that names no methods (the ReContrast paper's comparison); a method that needs weights most
    # users must fetch first (Dinomaly's DINOv2) is run by naming it
    default_sweep: bool = True
    profile_options: Mapping[str, Mapping] = field(default_factory=dict)  # options a run profile sets (demo: short)
    profile_sizes: Mapping[str, Mapping] = field(default_factory=dict)  # input sizes a profile uses, not the task's

    def __post_init__(self):
        for name in ("paper_results", "paper_sources", "profile_options", "profile_sizes"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def but(self, **changes) -> "MethodCard":
        """This card with ``changes`` (a subclass's card from its parent's)."""
        return dataclasses.replace(self, **changes)


class NotFittedError(RuntimeError):
    """``predict`` was called on a detector that was neither fitted nor loaded."""


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
    mask_known: np.ndarray | None = None  # (N,) bool: False for an abnormal image whose mask is missing


class Detector:
    """Base class: configuration in a dataclass (checked at construction), learning in ``fit``
    (returns ``self``), learned state in attributes ending in ``_``.

    After ``fit``: ``fitted_`` is True, ``images_seen_`` counts the training images processed (over
    every resumed segment), ``train_seconds_`` is their training time where a method resumes (else None),
    ``iters_`` is the number of training iterations (None for methods that do not iterate),
    ``losses_`` the loss per iteration (None likewise) and ``stats_`` what the fit measured or decided
    (a run records it in ``fit_stats.json``).

    A method builds its networks in :meth:`construct`, which runs on the method's own random streams.
    """

    # --- what a method declares: its card, and what its algorithm needs -------------------------
    name: ClassVar[str]  # the registry key, set by register_detector
    card: ClassVar[MethodCard]  # what the benchmark says about it (MethodCard)
    Config: ClassVar[type]  # dataclass of every option; validates itself in __post_init__
    trains: ClassVar[bool] = False  # learns over iterations: a loss curve, checkpoints, resume
    size_multiple: ClassVar[int] = 1  # the input side must be a multiple of this
    # the option that names the network (tables' "backbone" column, Detector.load's check); Dinomaly: "encoder"
    backbone_option: ClassVar[str] = "backbone"
    # how far an exported file's float32 scores and maps may be from the checkpoint's, relative to the largest
    # checkpoint score (map value) of the images checked (docs/export.md): measured up to 5.4e-6 (AE-U's maps, whose
    # exp(-log_var) weighting amplifies the graph's rounding), 1e-6 elsewhere; a file of another run is off by 1e-2
    export_tolerance: ClassVar[dict[str, float]] = {"score": 1e-4, "map": 1e-4}

    @classmethod
    def backbone_of(cls, options: dict) -> str:
        """The network a run of these detector ``options`` uses (its ``backbone_option``)."""
        return str(options[cls.backbone_option])

    @classmethod
    def require_weights(cls, options: dict) -> None:
        """Make sure the pretrained weights these detector ``options`` ask for can be had (a readable, fitting
        file, or the library's cache, downloading once now if needed); a sweep calls it once per network
        before the first run. By default: the torchvision or timm ``backbone``'s ImageNet weights."""
        from medrecontrast.models.backbones import require_weights

        if options.get("pretrained") or options.get("weights"):
            require_weights(options["backbone"], options.get("weights"))

    @classmethod
    def notes(cls, options: dict) -> list[str]:
        """What a report must say about a run of this method with these detector ``options`` (e.g. that a
        backbone uses a network of this suite's own rather than the authors'); none by default."""
        return []

    @classmethod
    def check_plan(cls, config, *, train_images: int, input_size: int) -> None:
        """Checks that need the run's training-set size, made when a sweep is planned (before anything
        trains): raise :class:`UserInputError` saying what to change. ``config`` is the method's checked
        Config; ``input_size`` the side of the network's input. None by default."""

    @classmethod
    def storage_estimate(cls, config, *, train_images: int, input_size: int) -> dict | None:
        """What a run of this method writes, estimated before it runs: ``{"model": bytes of model.pt,
        "checkpoint": bytes of one training checkpoint (0 for a method that does not train)}``; a sweep's
        plan checks the free disk space with it. None (unknown) by default."""
        return None

    @classmethod
    def task_options(cls, task) -> dict:
        """The method's options for ``task`` (e.g. ReContrast's per-task schedule); none by default."""
        return {}

    @classmethod
    def prepare_options(cls, config: dict) -> dict:
        """The options as given, before they are checked (e.g. a schedule given in epochs replaces the default
        one in iterations: :func:`~medrecontrast.engine.apply_schedule`); as given by default."""
        return config

    def construct(self) -> None:
        """Build the method's networks from ``self.config``. Runs on the method's own random streams
        (:func:`own_random_streams`, seeded by the ``seed`` option): the seed fixes the initial weights, and building
        or loading a detector leaves the caller's Python, NumPy and torch streams and cuDNN's flags as they were.
        Training seeds the global streams once, in ``fit``. Nothing to build by default."""

    def __init__(self, **config):
        config = self.prepare_options(config)
        fields = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(config) - fields)
        if unknown:
            close = {k: difflib.get_close_matches(k, fields, n=1) for k in unknown}
            hints = "".join(f" Did you mean '{c[0]}' for '{k}'?" for k, c in close.items() if c)
            raise UserInputError(
                f"unknown option(s) {', '.join(unknown)} for method '{self.name}'.{hints} Known: "
                f"{', '.join(sorted(fields))}"
            )
        self.config = self.Config(**config)
        self.device = resolve_device(self.config.device)
        self.fitted_ = False
        self.images_seen_ = 0
        self.iters_: int | None = None
        self.losses_: list[float] | None = None
        self.train_seconds_: float | None = None  # training wall time over resumed segments (None: what fit took)
        self.stats_: dict = {}  # what the fit measured and decided (e.g. PatchCore's memory-bank plan), JSON-able
        with own_random_streams(getattr(self.config, "seed", 0)):
            self.construct()

    # --- to implement ---------------------------------------------------------------------------
    def fit(
        self,
        train: Dataset,
        *,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> "Detector":
        """Learn from the normal images of ``train``. ``checkpoint``/``resume``: where a method that
        trains over iterations keeps its state and whether to continue from it (others refit)."""
        raise NotImplementedError

    def score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores (B,), maps (B, H, W))`` for a batch of pixels in [0, 1] on ``self.device``.

        Refused, as scikit-learn's estimators refuse, on a detector that was neither fitted nor loaded
        (:class:`NotFittedError`), and on pixels that are not finite or not in [0, 1] (a 0–255 image scored as it
        is gave scores of 5.9e8; the suite's datasets give [0, 1] and the encoder normalises). A method implements
        :meth:`_score_batch`."""
        if not self.fitted_:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted: call fit(train) or Detector.load(path) before scoring."
            )
        low, high = torch.aminmax(images.detach().float())
        low, high = float(low), float(high)
        if not (np.isfinite(low) and np.isfinite(high)):
            raise UserInputError(f"{type(self).__name__}.score_batch: the images hold NaN or infinite pixels.")
        if low < -PIXEL_TOLERANCE or high > 1 + PIXEL_TOLERANCE:
            hint = " (0-255 values: divide by 255)" if high > 2 else ""
            raise UserInputError(
                f"{type(self).__name__}.score_batch takes pixels in [0, 1], got values in [{low:g}, {high:g}]{hint}."
            )
        return self._score_batch(images)

    def _score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What :meth:`score_batch` computes once the input is checked; each method's own."""
        raise NotImplementedError

    def scoring_module(self, amp: bool | str = False) -> torch.nn.Module:
        """The detector's scoring as one module, ``forward(images[, eps]) -> (scores (B,), maps (B, H, W))`` of pixels
        in [0, 1], which :meth:`export` writes; a method that cannot be exported does not implement it."""
        raise UserInputError(f"method '{self.name}' cannot be exported (it has no scoring module)")

    def noise_shape(self, batch: int) -> tuple[int, ...] | None:
        """The shape of the random draws ``eps`` that a batch's scores take (a VAE's), None where scoring is not
        random."""
        return None

    def export(
        self, path: str | os.PathLike, format: str = "onnx", *, input_size: int, metadata: dict | None = None
    ) -> "os.PathLike":
        """Write the fitted detector's scoring (:meth:`scoring_module`, float32) as ``format`` (``onnx`` or
        ``torchscript``) to ``path``: a graph from ``(batch, 3, input_size, input_size)`` pixels in [0, 1] to image
        scores and anomaly maps (:mod:`medrecontrast.deploy.formats` has the contract). ``metadata`` is added to
        what the file records. No parity check here: ``medrecontrast.run.export_run`` checks a run's export."""
        from medrecontrast.deploy.formats import check_format, write_exported

        check_format(format)
        if not self.fitted_:
            raise NotFittedError(f"this {type(self).__name__} is not fitted: call fit(train) before export(path).")
        if input_size % self.size_multiple:
            raise UserInputError(f"{self.name} needs an input side that is a multiple of {self.size_multiple}")
        module = self.scoring_module().cpu().float()
        inputs = {"images": torch.rand(2, 3, input_size, input_size)}
        noise = self.noise_shape(2)
        if noise is not None:
            inputs["eps"] = torch.randn(noise)
        record = {
            "method": self.name,
            "display_name": self.card.display_name,
            "config": dataclasses.asdict(self.config),
            "input_side": input_size,
            **(metadata or {}),
        }
        try:
            return write_exported(module, inputs, path, format, record)
        finally:
            self.to_device()

    def to_device(self) -> None:
        """Put the detector's state back on ``self.device`` (export moves it to the CPU)."""
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(self.device)

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------
    def _record_training(self, result, batch_size: int) -> None:
        """After ``train_loop``: its ``TrainingResult`` as this detector's fitted state (losses, images seen over
        every resumed segment, training time), and fitted. The one bookkeeping of every trainable method."""
        self.training_ = result
        self.losses_ = result.losses
        self.images_seen_ = (result.resumed_from + result.iterations_run) * batch_size
        self.train_seconds_ = result.total_seconds
        self.fitted_ = True

    @torch.no_grad()
    def predict(
        self, test: Dataset, batch_size: int = 16, num_workers: int | None = None, progress: bool | int = False
    ) -> Predictions:
        """Scores and maps of every image of ``test``; a detector must be fitted (or loaded) first. ``progress``:
        a bar (True, on a terminal) or plain lines (elsewhere, or an integer) while it scores."""
        if not self.fitted_:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted: call fit(train) or Detector.load(path) before predict."
            )
        ids, labels, scores, maps, masks, categories, known = [], [], [], [], [], [], []
        loader = DataLoader(test, batch_size=batch_size, **loader_options(self.device, num_workers))
        for batch in tracked(loader, len(test), "scoring images", progress, count=lambda b: len(b["image"])):
            batch_scores, batch_maps = self.score_batch(batch_to_device(batch["image"], self.device))
            scores.append(batch_scores.float().cpu())
            maps.append(batch_maps.float().cpu())
            ids.extend(batch.get("id", [str(len(ids) + i) for i in range(len(batch_scores))]))
            labels.append(torch.as_tensor(batch["label"]) if "label" in batch else torch.full((len(batch_scores),), -1))
            if "mask" in batch:
                masks.append(batch["mask"][:, 0].to(torch.uint8))
                known.append(
                    torch.as_tensor(batch["mask_known"]).bool()
                    if "mask_known" in batch
                    else torch.ones(len(batch_scores), dtype=torch.bool)
                )
            categories.extend(batch.get("category", []))
        return Predictions(
            ids=list(ids),
            labels=torch.cat(labels).numpy(),
            scores=torch.cat(scores).numpy(),
            maps=torch.cat(maps).numpy(),
            masks=torch.cat(masks).numpy() if masks else None,
            categories=[str(c) for c in categories] if len(categories) == len(ids) else None,
            mask_known=torch.cat(known).numpy() if known else None,
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write configuration and learned state to one file (atomically); refused before ``fit`` (the file would
        load as a fitted detector of untrained weights)."""
        if not self.fitted_:
            raise NotFittedError(f"this {type(self).__name__} is not fitted: call fit(train) before save(path).")
        atomic_torch_save(
            {
                "format": DETECTOR_FORMAT,
                "method": self.name,
                "config": dataclasses.asdict(self.config),
                "state": self.state_dict(),
            },
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
        config = dict(saved["config"])
        for key, value in (("pretrained", False), ("weights", None)):  # the saved state holds every weight
            if key in config:
                config[key] = value
        if device is not None:
            config["device"] = device
        detector = build_detector(method, **config)
        detector.load_state_dict(saved["state"])
        detector.fitted_ = True
        return detector
