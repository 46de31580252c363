"""anomalib's image models run inside the suite: ``anomalib:<model>`` methods.

Each method is anomalib's own model (``anomalib.models.<Model>``), trained by anomalib's ``Engine`` and scored by
its torch module after its own pre-processor, exactly as ``Engine.predict`` scores (the tests check that the scores
are equal); nothing of a model is re-implemented here. What the suite adds is its data (every task, DICOM/NIfTI,
patients, the field's splits), seeds, run folders and its evaluation, statistics and report.

* Backbones: the suite's names (``resnet18``, ``wide_resnet50_2``, ``timm:<name>``) and weights. anomalib would
  download ImageNet weights at construction; here it builds its networks without weights and the suite loads its own
  (torchvision's cache, a ``weights`` file, or the ``lite`` extra's EfficientNet-Lite0) into the parts anomalib
  makes pretrained (:data:`PRETRAINED_PARTS`), so the ``lite`` profile runs offline. ``pretrained = false`` leaves
  every part random. The pre-processor resizes to the run's input side (a no-op: the suite's data is already at
  it) and normalises with the backbone's own mean and std (ImageNet's, 0.5 for the TF EfficientNet-Lite weights).
* Scores: anomalib's raw ``pred_score`` and ``anomaly_map`` (no post-processor: its min-max normalisation needs
  anomalib's validation split and changes no ranking; the suite's threshold comes from its held-out normals).
* Resume: anomalib's Engine has no bit-wise resume, so a resumed run refits from the start.
* Models that download something at construction (EfficientAD's teacher, DRAEM's textures, ...) are refused when a
  sweep is planned, naming what they need (:data:`NEEDS_DOWNLOAD`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import logging
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medrecontrast.catalog import NEEDS_DOWNLOAD
from medrecontrast.compute import loader_options, own_random_streams, seed_everything
from medrecontrast.errors import UserInputError, check_field_types, require_positive_ints, require_seed
from medrecontrast.models.base import Detector, MethodCard, register_detector

ANOMALIB_INSTALL = "pip install 'medrecontrast[anomalib]'"
PREFIX = "anomalib:"


@dataclass(frozen=True)
class ModelSpec:
    """What the bridge knows of one anomalib model: its class, which of its parts anomalib makes pretrained (they
    get the suite's weights), the feature strides its ``layers`` take by default (a ResNet's layer1-3 are strides
    4, 8, 16), whether it trains over epochs, its paper, and the method's name as the paper spells it (``title``: the
    tables and figures say "anomalib PaDiM", not anomalib's class name)."""

    cls: str
    title: str
    parts: tuple[str, ...]
    strides: tuple[int, ...] | None  # None: the model takes no ``layers`` (it chooses its own)
    trains: bool = False  # over epochs (else one pass that fits statistics or a memory bank)
    epochs: int = 1  # the default schedule (anomalib's example configs)
    backbones: tuple[str, ...] | None = None  # the only backbones anomalib's model supports
    paper: str = ""


MODELS = {
    "padim": ModelSpec(
        "Padim", "PaDiM", ("model.feature_extractor",), (4, 8, 16), paper="Defard et al., PaDiM, ICPR 2020"
    ),
    "patchcore": ModelSpec(
        "Patchcore", "PatchCore", ("model.feature_extractor",), (8, 16), paper="Roth et al., PatchCore, CVPR 2022"
    ),
    "stfpm": ModelSpec(
        "Stfpm",
        "STFPM",
        ("model.teacher_model",),
        (4, 8, 16),
        trains=True,
        epochs=100,
        paper="Wang et al., STFPM, BMVC 2021",
    ),
    "fastflow": ModelSpec(
        "Fastflow",
        "FastFlow",
        ("model.feature_extractor",),
        None,
        trains=True,
        epochs=500,
        backbones=("resnet18", "wide_resnet50_2"),
        paper="Yu et al., FastFlow, 2021",
    ),
    "reverse_distillation": ModelSpec(
        "ReverseDistillation",
        "Reverse Distillation",
        ("model.encoder",),
        (4, 8, 16),
        trains=True,
        epochs=200,
        backbones=("resnet18", "wide_resnet50_2"),  # its decoder mirrors a ResNet
        paper="Deng & Li, CVPR 2022",
    ),
}


@dataclass(kw_only=True)
class AnomalibConfig:
    """Options of an ``anomalib:<model>`` run; ``options`` holds any other keyword argument of anomalib's model
    (checked against its signature when a sweep is planned)."""

    backbone: str = "resnet18"  # the suite's name: resnet18, wide_resnet50_2, timm:<name>
    pretrained: bool = True
    weights: str | None = None  # a local weights file (or package:<module>/<path>) for the backbone
    layers: list | None = None  # feature layers by the backbone's module names; None: the model's default strides
    options: dict = field(default_factory=dict)
    # Lightning's max_epochs for the models that train (None: anomalib's example schedule, ModelSpec.epochs); the
    # one-pass models (PaDiM, PatchCore, DFM) fix one epoch themselves and refuse another number
    max_epochs: int | None = None
    batch_size: int = 32
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None

    def __post_init__(self):
        check_field_types(self)
        require_seed(self.seed)
        require_positive_ints(self, "batch_size")
        if self.max_epochs is not None:
            require_positive_ints(self, "max_epochs")
        if not isinstance(self.options, dict):
            raise UserInputError(f"options must be a table of anomalib's model arguments, got {self.options!r}")
        if self.layers is not None and not (
            isinstance(self.layers, (list, tuple)) and all(isinstance(x, str) for x in self.layers)
        ):
            raise UserInputError(f"layers must be a list of the backbone's module names, got {self.layers!r}")
        reserved = {"backbone", "pre_trained", "layers", "layer", "pre_processor", "post_processor"}
        if reserved & set(self.options):
            raise UserInputError(
                f"options may not set {', '.join(sorted(reserved & set(self.options)))}: use the run's own options "
                "(backbone, pretrained, weights, layers)"
            )


def anomalib_available() -> bool:
    return importlib.util.find_spec("anomalib") is not None


def _require_anomalib(method: str) -> None:
    if not anomalib_available():
        raise UserInputError(f"{method} runs anomalib's model: {ANOMALIB_INSTALL}")


class AnomalibDetector(Detector):
    """One anomalib image model behind the suite's interface (subclassed per model by :func:`_register`)."""

    Config = AnomalibConfig
    model_name: ClassVar[str]
    spec: ClassVar[ModelSpec]
    size_multiple = 32
    card = MethodCard(
        display_name="anomalib",  # each model's card names it (anomalib PaDiM, ...)
        default_sweep=False,
        requires=ANOMALIB_INSTALL,
        profile_options={p: {"max_epochs": 1, "batch_size": 8} for p in ("demo", "tiny")},
        random_weights_caveat=(
            "**anomalib's feature-based models from random weights say nothing about the methods:** they model "
            "pretrained features; run the lite or paper profile."
        ),
    )

    @classmethod
    def backbone_of(cls, options: dict) -> str:
        return str(options.get("backbone", "resnet18"))

    @classmethod
    def notes(cls, options: dict) -> list[str]:
        """The report's "not the authors' network" line: anomalib's implementation, not the paper's code."""
        return [
            f"{cls.card.display_name} is anomalib's implementation of the method (not its authors' code), trained by "
            "anomalib's Engine and scored by its torch module after its pre-processor (raw scores, no "
            "post-processor); the backbone weights are the suite's."
        ]

    @classmethod
    def check_plan(cls, config: AnomalibConfig, *, train_images: int, input_size: int) -> None:
        """anomalib installed, the backbone supported by the model, its layers found, every ``options`` key an
        argument of anomalib's model."""
        _require_anomalib(cls.name)
        spec = cls.spec
        if spec.backbones and config.backbone not in spec.backbones:
            raise UserInputError(
                f"{cls.name}: anomalib's {spec.cls} supports the backbones {', '.join(spec.backbones)} only, "
                f"got {config.backbone!r}"
            )
        if not spec.trains and config.max_epochs not in (None, 1):
            raise UserInputError(
                f"{cls.name}: anomalib's {spec.cls} fits in one pass over the training images; max_epochs must be 1 "
                f"or unset, got {config.max_epochs}"
            )
        model_cls = _model_class(spec)
        accepted = set(inspect.signature(model_cls.__init__).parameters) - {"self"}
        unknown = sorted(set(config.options) - accepted)
        if unknown:
            raise UserInputError(
                f"{cls.name}: anomalib's {spec.cls} takes no argument {', '.join(unknown)}; it takes "
                f"{', '.join(sorted(accepted - {'pre_processor', 'post_processor', 'evaluator', 'visualizer'}))}"
            )
        _layers(config, spec)

    @classmethod
    def require_weights(cls, options: dict) -> None:
        from medrecontrast.models.backbones import require_weights

        if options.get("pretrained") or options.get("weights"):
            require_weights(options["backbone"], options.get("weights"))

    def construct(self) -> None:
        self.module_ = None  # anomalib's Lightning module, built at fit or load (it needs the input side)
        self.input_size_: int | None = None

    # --- building anomalib's model ---------------------------------------------------------------------
    def _build(self, side: int, load_weights: bool) -> None:
        _require_anomalib(self.name)
        c, spec = self.config, self.spec
        from anomalib.pre_processing import PreProcessor
        from torchvision.transforms import v2

        model_cls = _model_class(spec)
        signature = inspect.signature(model_cls.__init__).parameters
        arguments = dict(c.options)
        if "backbone" in signature:
            arguments["backbone"] = _anomalib_backbone(c.backbone)
        if "pre_trained" in signature:
            arguments["pre_trained"] = False  # the suite loads the weights itself (no download)
        layers = _layers(c, spec)
        if layers is not None:
            arguments["layers"] = list(layers)
        if spec.cls == "Padim" and "n_features" not in arguments and arguments["backbone"] not in PADIM_FEATURES:
            arguments["n_features"] = None  # set below from the layers' channels
        mean, std = _normalisation(c.backbone)
        transform = v2.Compose([v2.Resize((side, side), antialias=True), v2.Normalize(mean=mean, std=std)])
        with _no_downloads():
            if spec.cls == "Padim" and arguments.get("n_features", 0) is None:
                arguments["n_features"] = _padim_features(arguments["backbone"], layers)
            module = model_cls(
                **arguments,
                pre_processor=PreProcessor(transform=transform),
                post_processor=False,
                evaluator=False,
                visualizer=False,
            )
        if load_weights and (c.pretrained or c.weights):
            source = _network_state(c)
            for part in spec.parts:
                _load_part(module.get_submodule(part), source, f"{self.name} {part}", c.backbone)
        self.module_ = module.to(self.device)
        self.input_size_ = side

    def fit(
        self, train: Dataset, *, checkpoint=None, resume: bool = False, progress: bool = True
    ) -> "AnomalibDetector":
        """Train anomalib's model on ``train`` with anomalib's Engine (Lightning), on the detector's device. A
        resumed run refits from the start (anomalib's Engine has no bit-wise resume)."""
        from anomalib.engine import Engine

        c = self.config
        if len(train) == 0:
            raise UserInputError("cannot train on an empty dataset")
        side = int(train[0]["image"].shape[-1])
        with own_random_streams(c.seed):
            self._build(side, load_weights=True)
        seed_everything(c.seed)
        epochs = c.max_epochs or self.spec.epochs
        loader = DataLoader(
            train,
            batch_size=c.batch_size,
            shuffle=True,
            collate_fn=to_image_batch,
            generator=torch.Generator().manual_seed(c.seed),
            **loader_options(self.device, c.num_workers),
        )
        scratch = Path(tempfile.mkdtemp(prefix="anomalib-"))  # Lightning's checkpoints: not kept (model.pt is)
        try:
            with _quiet_lightning(), _interrupts_stay_interrupts():
                engine = Engine(
                    default_root_dir=scratch,
                    logger=False,
                    accelerator="gpu" if self.device.type == "cuda" else "cpu",
                    devices=[self.device.index or 0] if self.device.type == "cuda" else 1,
                    max_epochs=epochs,
                    enable_progress_bar=bool(progress),
                    enable_model_summary=False,
                )
                engine.fit(self.module_, train_dataloaders=loader)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.module_.to(self.device).eval()
        self.images_seen_ = len(train) * (epochs if self.spec.trains else 1)
        self.stats_ = {"anomalib": _anomalib_version(), "epochs": epochs}
        self.fitted_ = True
        return self

    def scoring_module(self, amp: bool | str = False) -> "AnomalibScorer":
        if self.module_ is None:
            raise RuntimeError(f"{self.name}: fit or load the detector before scoring")
        return AnomalibScorer(self.module_.eval())

    @torch.no_grad()
    def _score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scoring_module()(images)

    def state_dict(self) -> dict:
        return {"model": self.module_.state_dict(), "input_size": self.input_size_}

    def load_state_dict(self, state: dict) -> None:
        with own_random_streams(self.config.seed):
            self._build(int(state["input_size"]), load_weights=False)
        _resize_buffers(self.module_, state["model"])
        self.module_.load_state_dict(state["model"])
        self.module_.to(self.device).eval()


class AnomalibScorer(nn.Module):
    """``forward(images) -> (scores, maps)``: anomalib's pre-processor transform, then its torch model in eval mode
    (``InferenceBatch.pred_score`` and ``anomaly_map``), as ``Engine.predict`` runs them without a post-processor."""

    def __init__(self, module):
        super().__init__()
        self.transform = module.pre_processor.transform
        self.model = module.model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(self.transform(images.float()))
        maps = out.anomaly_map
        maps = maps[:, 0] if maps.dim() == 4 else maps
        return out.pred_score.reshape(-1).float(), maps.float()


def to_image_batch(items: list[dict]):
    """The suite's dataset items as anomalib's ``ImageBatch`` (images as float32 pixels in [0, 1], labels)."""
    from anomalib.data import ImageBatch

    return ImageBatch(
        image=torch.stack([torch.as_tensor(it["image"]).float() for it in items]),
        gt_label=torch.tensor([int(it.get("label", 0)) for it in items]),
    )


@functools.lru_cache(maxsize=8)
def _feature_info(name: str) -> dict:
    """What anomalib's extractors will see of the timm network ``name``: its feature modules, their strides and
    channels, and the mean and std of its weights (``pretrained_cfg``), from one unweighted construction."""
    import timm

    from medrecontrast.models.backbones import IMAGENET_MEAN, IMAGENET_STD

    try:
        # on streams of its own: the construction is cached, so drawing from the caller's streams (a seeded build)
        # would make a method's initial weights depend on whether another build came first
        with own_random_streams(0):
            net = timm.create_model(name, pretrained=False, features_only=True)
    except Exception as exc:
        raise UserInputError(f"backbone {name!r}: timm cannot build it with features_only ({exc})") from None
    config = getattr(net, "pretrained_cfg", None) or {}
    return {
        "modules": [info["module"] for info in net.feature_info.info],
        "strides": list(net.feature_info.reduction()),
        "channels": list(net.feature_info.channels()),
        "mean": list(config.get("mean", IMAGENET_MEAN)),
        "std": list(config.get("std", IMAGENET_STD)),
    }


def _normalisation(backbone: str) -> tuple[list[float], list[float]]:
    """The mean and std the backbone's weights were trained with (timm's ``pretrained_cfg``; ImageNet's for
    torchvision's ResNets), as the suite's own encoders normalise."""
    from medrecontrast.models.backbones import IMAGENET_MEAN, IMAGENET_STD, is_timm

    if is_timm(backbone):
        info = _feature_info(_anomalib_backbone(backbone))
        return info["mean"], info["std"]
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


PADIM_FEATURES = {"resnet18": 100, "wide_resnet50_2": 550}  # anomalib's own table (padim/torch_model.py)


def _padim_features(backbone: str, layers) -> int:
    """PaDiM's random channel selection for a backbone anomalib has no number for: the same share of the layers'
    channels as anomalib's resnet18 (100 of 448)."""
    info = _feature_info(backbone)
    total = sum(info["channels"][info["modules"].index(layer)] for layer in layers)
    return max(1, round(total * 100 / 448))


def _model_class(spec: ModelSpec):
    import anomalib.models

    return getattr(anomalib.models, spec.cls)


def _anomalib_backbone(backbone: str) -> str:
    """anomalib's timm name for the suite's backbone name (timm's ResNets take torchvision's weights by name)."""
    from medrecontrast.models.backbones import TIMM_PREFIX

    return backbone[len(TIMM_PREFIX) :] if backbone.startswith(TIMM_PREFIX) else backbone


def _layers(config: AnomalibConfig, spec: ModelSpec) -> tuple[str, ...] | None:
    """The feature layers: the configured ones, checked against the backbone's, or the modules at the model's
    default strides."""
    if spec.strides is None:
        if config.layers is not None:
            raise UserInputError(f"anomalib's {spec.cls} chooses its own layers; remove layers")
        return None
    info = _feature_info(_anomalib_backbone(config.backbone))
    modules = info["modules"]
    if config.layers is not None:
        unknown = [layer for layer in config.layers if layer not in modules]
        if unknown:
            raise UserInputError(f"layers {unknown} are not feature layers of {config.backbone}: {', '.join(modules)}")
        return tuple(config.layers)
    strides = info["strides"]
    missing = [s for s in spec.strides if s not in strides]
    if missing:
        raise UserInputError(
            f"{config.backbone} has feature levels at strides {strides}; anomalib's {spec.cls} takes {spec.strides}"
        )
    return tuple(modules[strides.index(s)] for s in spec.strides)


def _network_state(config: AnomalibConfig) -> dict:
    """The backbone's weights by the names timm and torchvision give them (``conv1.weight``, ``layer1.0...``,
    ``layer4...`` for a ResNet, whose timm version takes torchvision's names; the timm network's own for a timm CNN),
    loaded the suite's way (a local file, torchvision's cache, the lite extra's file)."""
    from medrecontrast.models.backbones import build_encoder, is_timm, resnet_network

    if is_timm(config.backbone):  # TimmEncoder keeps timm's whole features_only network
        return build_encoder(config.backbone, pretrained=config.pretrained, weights=config.weights).body.state_dict()
    return resnet_network(config.backbone, config.pretrained, config.weights).state_dict()


def _load_part(part: nn.Module, source: dict, what: str, backbone: str) -> None:
    """Load the suite's backbone weights into one of anomalib's networks (every tensor of it must be found, of the
    same shape: a ResNet's layer4, which the suite's encoder does not keep, is refused)."""
    target = part.feature_extractor if hasattr(part, "feature_extractor") and hasattr(part, "layers") else part
    own = target.state_dict()
    missing = [k for k in own if k not in source or tuple(source[k].shape) != tuple(own[k].shape)]
    if missing:
        raise UserInputError(
            f"{what}: the suite's {backbone} weights do not fit {len(missing)} of its {len(own)} tensors "
            f"(e.g. {missing[0]}); give a weights file of this backbone, or pretrained = false"
        )
    target.load_state_dict({k: source[k] for k in own})


def _resize_buffers(module: nn.Module, state: dict) -> None:
    """Buffers that anomalib sizes at fit (PaDiM's mean and covariance, PatchCore's memory bank) take the saved
    shape before ``load_state_dict``."""
    for name, value in state.items():
        owner_name, _, attribute = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        current = owner._buffers.get(attribute) if hasattr(owner, "_buffers") else None
        if current is not None and current.shape != value.shape:
            owner._buffers[attribute] = torch.empty_like(value)


@contextlib.contextmanager
def _no_downloads():
    """Build anomalib's model with every timm network unweighted: anomalib asks timm for ImageNet weights (a
    download); the suite loads its own into the parts that need them (:meth:`AnomalibDetector._build`)."""
    import timm

    original = timm.create_model

    def create_model(*args, **kwargs):
        kwargs["pretrained"] = False
        return original(*args, **kwargs)

    timm.create_model = create_model
    try:
        yield
    finally:
        timm.create_model = original


@contextlib.contextmanager
def _interrupts_stay_interrupts():
    """Lightning answers a KeyboardInterrupt inside ``fit`` (Ctrl-C, or the SIGTERM that the suite raises as one,
    ``medrecontrast.signals``) with its own shutdown and ``sys.exit(1)``, leaving SIGINT ignored
    (lightning/pytorch/trainer/call.py, ``_call_and_handle_interrupt``): the run was left marked ``running`` and the
    sweep ended without its "interrupted ... --resume" line. The interrupt is raised again as it was, and the SIGINT
    handler put back, so that the run is recorded ``interrupted`` like every other method's."""
    sigint = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit as exit_:
        if not isinstance(exit_.__context__, KeyboardInterrupt):
            raise
        signal.signal(signal.SIGINT, sigint)
        raise exit_.__context__ from None


@contextlib.contextmanager
def _quiet_lightning():
    """Lightning's banners (GPU available, model summary, tips) are not a run's output: warnings and errors only."""
    import warnings

    names = [
        n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("lightning", "pytorch_lightning", "anomalib")
    ]
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric", "anomalib", *names)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning")
            warnings.filterwarnings("ignore", message=".*(litlogger|LitLogger|val_check_interval).*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _anomalib_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("anomalib")
    except metadata.PackageNotFoundError:
        return None


def _register(name: str, spec: ModelSpec, order: int) -> type[AnomalibDetector]:
    cls = type(
        f"Anomalib{spec.cls}",
        (AnomalibDetector,),
        {
            "__module__": __name__,
            "__doc__": f"anomalib's {spec.cls} ({spec.paper}) as the suite's method ``{PREFIX}{name}``.",
            "model_name": name,
            "spec": spec,
            "trains": spec.trains,  # over epochs, by anomalib's Engine (no loss curve, no bit-wise resume)
            "card": AnomalibDetector.card.but(
                display_name=f"anomalib {spec.title}",
                order=order,
                citation=f"{spec.paper}; anomalib's implementation (github.com/open-edge-platform/anomalib)",
            ),
        },
    )
    return register_detector(f"{PREFIX}{name}")(cls)


for _order, (_name, _spec) in enumerate(MODELS.items(), start=60):
    _register(_name, _spec, _order)
del _order, _name, _spec

__all__ = ["MODELS", "NEEDS_DOWNLOAD", "AnomalibConfig", "AnomalibDetector", "anomalib_available"]
