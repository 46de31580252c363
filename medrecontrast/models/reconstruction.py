"""What MedIAnomaly's reconstruction methods share: input, schedule, training, scoring (``reconstruction/``).

As released (``options.py``, ``utils/base_worker.py``, ``utils/ae_worker.py``, ``dataloaders/``): grey
images (``convert("L")``) at 64 px scaled to [-1, 1] (``Normalize(0.5, 0.5)``); the network of
:mod:`.autoencoder_nets` with base width 16, a 1,024-wide hidden layer (``--hidden-num``; the network's own
default of 2,048 is never used), latent size 16, one layer per block; Adam (lr 1e-3, no weight decay, no
scheduler) over batches of 64, shuffled, the last incomplete batch kept, for 250 epochs (600 for Brain
Tumor); no augmentation. At test time the network is in eval mode; the anomaly map is the method's loss
map averaged over channels (``criterion(..., anomaly_score=True, keepdim=True)``) and the image score its
mean over pixels (``torch.mean(score_map, dim=[1, 2, 3])``).

Each method (AE, VAE, MemAE, AE-U) is one module that sets its bottleneck and its loss (:meth:`criterion`,
:meth:`score_map`). What differs from the released code is declared in the fidelity table (docs/tasks.md): the grey
value is computed from the suite's resized RGB pixels in float (PIL converts, then resizes, rounding to 8 bits
twice), and a VAE's scores draw its latent sample from the detector's own seeded stream (the released code
draws from torch's global one, so its scores change from one evaluation to the next).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from medrecontrast.compute import own_random_streams
from medrecontrast.engine import TrainingConfig, TrainingResult, apply_schedule, resolve_iterations, train_loop
from medrecontrast.errors import UserInputError, require_choice, require_positive_ints
from medrecontrast.models.autoencoder_nets import AE, SIZE_MULTIPLE
from medrecontrast.models.base import Detector, MethodCard, state_bytes

RELEASED_SIZE = 64  # options.py --input-size
# options.py: self.epochs by dataset (the datasets not listed train 250); keyed here by this suite's task names
RELEASED_EPOCHS = {"medianomaly:brain-tumor": 600}
# options.py: self.in_c (RGB for Camelyon16; grey elsewhere, ISIC2018 included)
RELEASED_CHANNELS = {"medianomaly:camelyon16": 3}
# PIL's convert("L") (ITU-R 601-2 luma), the released grey input
LUMA = (0.299, 0.587, 0.114)
CITATION = (
    "Cai et al., MedIAnomaly: A comparative study of anomaly detection in medical images, Medical Image Analysis "
    "2025 (arXiv:2404.04518); code github.com/caiyu6666/MedIAnomaly (MIT)"
)
# The reference numbers: Cai, Chen & Cheng, "Rethinking autoencoders for medical anomaly detection from a
# theoretical perspective", MICCAI 2024 (arXiv:2403.09303), Table 2 (d = 16, the released defaults; mean of
# repeated runs, their spread ± in the comments), as the authors show it in github.com/caiyu6666/AE4AD
# figs/tab2.png: the same code (merged into MedIAnomaly), data and splits. MedIAnomaly's own tables could not be
# read where this suite is developed; AE-U is not in that table.
AE4AD_SOURCE = "AE4AD (Cai, Chen & Cheng, MICCAI 2024), Table 2 (caiyu6666/AE4AD figs/tab2.png)"
AE4AD_TABLE2 = {
    "ae": {
        "medianomaly:brats2021": {"image_auroc": 82.6, "image_ap": 92.0, "pixel_ap": 33.2},  # ±0.1, ±0.1, ±2.2
        "medianomaly:rsna": {"image_auroc": 67.5, "image_ap": 66.7},  # ±0.9, ±0.5
        "medianomaly:vincxr": {"image_auroc": 56.4, "image_ap": 60.2},  # ±0.4, ±0.5
        "medianomaly:brain-tumor": {"image_auroc": 85.9, "image_ap": 76.9},  # ±0.3, ±0.1
    },
    "vae": {
        "medianomaly:brats2021": {"image_auroc": 80.6, "image_ap": 90.9, "pixel_ap": 44.0},  # ±0.8, ±0.5, ±5.3
        "medianomaly:rsna": {"image_auroc": 67.9, "image_ap": 67.0},  # ±0.8, ±0.8
        "medianomaly:vincxr": {"image_auroc": 56.4, "image_ap": 60.1},  # ±0.4, ±0.5
        "medianomaly:brain-tumor": {"image_auroc": 85.3, "image_ap": 76.5},  # ±0.4, ±0.3
    },
    "memae": {
        "medianomaly:brats2021": {"image_auroc": 63.9, "image_ap": 78.5, "pixel_ap": 22.8},  # ±7.7, ±6.9, ±5.6
        "medianomaly:rsna": {"image_auroc": 69.6, "image_ap": 68.1},  # ±0.4, ±0.4
        "medianomaly:vincxr": {"image_auroc": 56.9, "image_ap": 60.9},  # ±0.9, ±0.9
        "medianomaly:brain-tumor": {"image_auroc": 82.6, "image_ap": 74.3},  # ±0.6, ±0.2
    },
}


@dataclass(kw_only=True)
class ReconstructionConfig(TrainingConfig):
    """The released defaults (``options.py``); the schedule and engineering options come from the engine's
    :class:`TrainingConfig`."""

    iters: int | None = None
    epochs: int | None = 250
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    base_width: int = 16
    expansion: int = 1
    hidden_num: int = 1024
    latent_size: int = 16
    en_depth: int = 1
    de_depth: int = 1
    in_channels: int = 1  # 1: grey, as for every MedIAnomaly dataset but Camelyon16 (3: RGB)
    amp: bool | str = False  # the released code trains in float32; these networks gain nothing from bf16

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "base_width", "expansion", "hidden_num", "latent_size", "en_depth", "de_depth")
        require_choice("in_channels", self.in_channels, (1, 3))


def network_input(images: torch.Tensor, in_channels: int) -> torch.Tensor:
    """The released input from the suite's pixels in [0, 1]: grey by PIL's luma weights (``in_channels = 1``)
    or RGB, then ``(x - 0.5) / 0.5``."""
    if in_channels == 1 and images.shape[1] == 3:
        # in float64, so that a grey image repeated to RGB comes back bit for bit (float32 rounding of the three
        # products moved the gradients of the layers before a BatchNorm, whose sums are noise, by their size)
        wide = torch.float32 if images.device.type == "mps" else torch.float64  # Metal has no float64
        weights = torch.tensor(LUMA, dtype=wide, device=images.device).view(1, 3, 1, 1)
        images = (images.to(wide) * weights).sum(dim=1, keepdim=True).to(images.dtype)
    elif in_channels == 3 and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] != in_channels:
        raise UserInputError(f"images of {images.shape[1]} channels cannot become {in_channels}-channel input")
    return (images - 0.5) / 0.5


class ReconstructionScorer(nn.Module):
    """``forward(images, eps=None) -> (scores, maps)``: the released input (grey or RGB, ``(x - 0.5) / 0.5``), the
    network (a VAE's sample is ``mu + eps * std`` with the draws ``eps`` given), the method's per-pixel score map
    and its mean as the image score (``AEWorker.evaluation``)."""

    def __init__(self, model: AE, in_channels: int, score_map):
        super().__init__()
        self.model, self.in_channels, self.score_map = model, in_channels, score_map

    def forward(self, images: torch.Tensor, eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = network_input(images.to(next(self.model.parameters()).dtype), self.in_channels)
        maps = self.score_map(x, self.model(x, eps))
        return maps.mean(dim=(1, 2, 3)), maps[:, 0]


class ReconstructionDetector(Detector):
    """A MedIAnomaly reconstruction method: its network is built by :meth:`build_network` when ``fit`` sees the
    training images' side (the bottleneck's size depends on it), and rebuilt from the saved state by ``load``."""

    Config = ReconstructionConfig
    trains = True
    size_multiple = SIZE_MULTIPLE
    card = MethodCard(
        display_name="reconstruction",  # each method's card names it (AE, VAE, MemAE, AE-U)
        default_sweep=False,  # not in the ReContrast paper's comparison: named with --methods
        # every profile runs the released input (64 px grey) from random weights, as released; demo and tiny: a
        # short schedule
        profile_sizes={p: {"image_size": RELEASED_SIZE, "crop_size": None} for p in ("paper", "demo", "lite", "tiny")},
        profile_options={p: {"iters": 300, "epochs": None, "batch_size": 32} for p in ("demo", "tiny")},
        citation=CITATION,
        paper_sources={task: AE4AD_SOURCE for table in AE4AD_TABLE2.values() for task in table},
    )
    bottleneck: ClassVar[str] = "ae"
    uncertainty: ClassVar[bool] = False

    @classmethod
    def backbone_of(cls, options: dict) -> str:
        """These methods have no pretrained backbone: the table's column names the network and its latent."""
        return f"conv AE (width {options.get('base_width', 16)}, latent {options.get('latent_size', 16)})"

    @classmethod
    def task_options(cls, task) -> dict:
        """The released epochs and channels for the task's MedIAnomaly dataset (``options.py``); 250 epochs of grey
        images elsewhere."""
        options = {"epochs": RELEASED_EPOCHS[task.name], "iters": None} if task.name in RELEASED_EPOCHS else {}
        if task.name in RELEASED_CHANNELS:
            options["in_channels"] = RELEASED_CHANNELS[task.name]
        return options

    @classmethod
    def check_plan(cls, config, *, train_images: int, input_size: int) -> None:
        """A training batch of one image cannot train the bottleneck's BatchNorm1d (PyTorch refuses it; the
        released loader would stop there too): refuse a training set whose last batch would hold one image."""
        batch = min(config.batch_size, train_images)
        last = train_images % batch
        if batch == 1 or (last == 1 and not config.drop_last):
            raise UserInputError(
                f"{cls.name}: {train_images} training images in batches of {config.batch_size} leave a batch of one "
                "image, on which the bottleneck's BatchNorm1d cannot train; set drop_last = true or another batch_size"
            )

    @classmethod
    def storage_estimate(cls, config, *, train_images: int, input_size: int) -> dict:
        return state_bytes(lambda: cls.build_network(config, input_size))

    @classmethod
    def build_network(cls, config: ReconstructionConfig, input_size: int) -> AE:
        return AE(
            input_size=input_size,
            in_planes=config.in_channels,
            base_width=config.base_width,
            expansion=config.expansion,
            mid_num=config.hidden_num,
            latent_size=config.latent_size,
            en_num_layers=config.en_depth,
            de_num_layers=config.de_depth,
            bottleneck=cls.bottleneck,
            uncertainty=cls.uncertainty,
            **cls.network_options(config),
        )

    @classmethod
    def network_options(cls, config) -> dict:
        """The variant's own network options (MemAE: the memory's size and shrinkage); none by default."""
        return {}

    # --- the method's loss -------------------------------------------------------------------------
    def criterion(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        """The training loss of one batch (``x`` the network's input, ``out`` its output)."""
        raise NotImplementedError

    def score_map(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        """``(B, 1, H, W)``: the released ``criterion(x, out, anomaly_score=True, keepdim=True)``."""
        raise NotImplementedError

    # --- the estimator ---------------------------------------------------------------------------------
    @classmethod
    def prepare_options(cls, config: dict) -> dict:
        return apply_schedule({}, config)  # the schedule given replaces the default one

    def construct(self) -> None:
        self.model_: AE | None = None
        self.input_size_: int | None = None
        self.training_: TrainingResult | None = None
        self.iters_ = self.config.iters
        self._scoring_stream: torch.Generator | None = None

    def _build(self, input_size: int) -> None:
        if input_size % SIZE_MULTIPLE:
            raise UserInputError(
                f"{self.name} needs an input side that is a multiple of {SIZE_MULTIPLE}, got {input_size}"
            )
        with own_random_streams(self.config.seed):  # the seed fixes the initial weights; the caller's streams stay
            self.model_ = type(self).build_network(self.config, input_size).to(self.device)
        self.input_size_ = input_size

    def training_loss(self, model: AE, images: torch.Tensor, iteration: int) -> torch.Tensor:
        x = network_input(images, self.config.in_channels)
        return self.criterion(x, model(x))

    def fit(
        self,
        train: Dataset,
        *,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> "ReconstructionDetector":
        """Train on the normal images of ``train`` (the network's input side is theirs)."""
        c = self.config
        if len(train) == 0:
            raise UserInputError("cannot train on an empty dataset")
        side = int(train[0]["image"].shape[-1])
        type(self).check_plan(c, train_images=len(train), input_size=side)
        self._build(side)
        self.iters_ = resolve_iterations(c, len(train))
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        result = train_loop(
            self.model_,
            {"model": optimizer},
            self.training_loss,
            train,
            c,
            identity={"method": self.name, "input_size": side, "latent_size": c.latent_size},
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
        )
        self._record_training(result, c.batch_size)
        return self

    def predict(self, test: Dataset, *args, **kwargs):
        """Scores and maps of ``test``; a method that samples while scoring (VAE) draws from a stream seeded by
        ``seed`` anew at each call, so the same images in the same order get the same scores."""
        self._scoring_stream = None
        return super().predict(test, *args, **kwargs)

    def noise_shape(self, batch: int) -> tuple[int, int] | None:
        """The shape of the random draws a batch's scores take (VAE: ``(batch, latent_size)``), None for the others."""
        return (batch, self.config.latent_size) if self.bottleneck == "vae" else None

    def scoring_module(self, amp: bool | str = False) -> "ReconstructionScorer":
        """Pixels in [0, 1] (and a VAE's draws ``eps``) -> ``(scores, maps)``; scoring and export run this module."""
        if self.model_ is None:
            raise RuntimeError(f"{self.name}: fit or load the detector before scoring")
        return ReconstructionScorer(self.model_.eval(), self.config.in_channels, self.score_map)

    @torch.no_grad()
    def _score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = self.noise_shape(images.shape[0])
        if shape is None:
            return self.scoring_module()(images)
        if self._scoring_stream is None:
            self._scoring_stream = torch.Generator(device=images.device).manual_seed(self.config.seed)
        dtype = next(self.model_.parameters()).dtype  # drawn in the network's precision, as the sample is taken
        eps = torch.randn(shape, generator=self._scoring_stream, device=images.device, dtype=dtype)
        return self.scoring_module()(images, eps)

    def state_dict(self) -> dict:
        return {"model": self.model_.state_dict(), "input_size": self.input_size_}

    def load_state_dict(self, state: dict) -> None:
        self._build(int(state["input_size"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
