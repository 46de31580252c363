"""ReContrast (Guo et al., NeurIPS 2023): contrastive reconstruction with a trainable encoder.

The network is :class:`~medrecontrast.models.reverse_distillation.ReverseDistillationNet` with both
views and a trainable encoder; the loss is the global cosine distance with stop-gradient and
hard-normal mining (α ramps from -3 to 1 over the first 10 % of iterations, easy points get
``hard_mining_factor`` x their gradient); two AdamW optimisers (decoder side lr 2e-3, encoder lr
1e-5), no gradient clipping, the last incomplete batch kept. The anomaly map sums 1 - cos of all
(encoder, decoder) pairs, upsampled to the input, and is smoothed with a Gaussian of σ = 4; the
image score is its max (or mean, per task). All as guojiajeremy/ReContrast ``recontrast_*.py``.

The unified multi-class setting (``recontrast_{mvtec,visa}_multiclass.py``) is :data:`UNIFIED`:
one AdamW with parameter groups, amsgrad, eps 1e-10, lr x 0.2 at 80 %, GELU decoder, encoder
BatchNorm in eval mode, the MEAN of the pair maps smoothed by a 5x5 Gaussian (σ = 4), top-1 % score.

Every ingredient is a switch, so the paper's ablation from RD4AD to ReContrast is a sweep over
``loss``, ``stop_gradient``, ``two_views``, ``hard_mining_factor`` and ``train_encoder``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from medrecontrast.engine import (
    TrainingConfig,
    TrainingResult,
    apply_schedule,
    autocast,
    fused_optimizer_options,
    resolve_iterations,
    to_channels_last,
    train_loop,
    uses_channels_last,
)
from medrecontrast.errors import UserInputError, require_choice
from medrecontrast.losses import cosine_loss, hard_mining_alpha
from medrecontrast.models.anomaly_map import (
    anomaly_map,
    gaussian_blur,
    gaussian_blur_kernel,
    image_scores,
)
from medrecontrast.models.backbones import estimate_batchnorm_statistics, is_timm
from medrecontrast.models.base import Detector, MethodCard, register_detector, state_bytes
from medrecontrast.models.decoder import GENERIC_DECODER
from medrecontrast.models.reverse_distillation import SIZE_MULTIPLE, ReverseDistillationNet

IMAGE_SCORES = ("max", "mean", "top1")


class ReverseDistillationScorer(nn.Module):
    """``forward(images) -> (scores (B,), maps (B, H, W))`` of a reverse-distillation network (ReContrast, RD4AD):
    the network (under ``amp``'s autocast), then in float32 the sum or mean of the pairs' 1 - cos maps upsampled
    to the input, the Gaussian (scipy's, or the unified scripts' kernel) and the image score."""

    def __init__(
        self,
        model: ReverseDistillationNet,
        *,
        map_reduction: str,
        sigma: float,
        blur_kernel: int | None,
        image_score: str,
        amp: bool | str = False,
    ):
        super().__init__()
        self.model = model
        self.map_reduction, self.sigma, self.blur_kernel = map_reduction, sigma, blur_kernel
        self.image_score, self.amp = image_score, amp

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(images.device, self.amp):
            targets, outputs = self.model(images)
        maps = anomaly_map(targets, outputs, tuple(images.shape[-2:]), reduction=self.map_reduction)
        maps = (
            gaussian_blur(maps, self.sigma)
            if self.blur_kernel is None
            else gaussian_blur_kernel(maps, self.sigma, self.blur_kernel)
        )
        return image_scores(maps, self.image_score), maps[:, 0]


OPTIMIZERS = ("adamw", "adamw_groups", "adam")


@dataclass(kw_only=True)
class ReContrastConfig(TrainingConfig):
    """ReContrast's options (``help(ReContrast)`` and ``medrecontrast methods`` list every one, typed);
    the schedule and engineering options are inherited from the engine's :class:`TrainingConfig`."""

    backbone: str = "wide_resnet50_2"
    pretrained: bool = True
    weights: str | None = None  # a local file with the backbone's ImageNet weights
    # training (recontrast_{mvtec,visa,aptos,oct,isic}.py; per-task values come from the task)
    iters: int | None = 2000
    # "adamw": two AdamW, decoder side and encoder (per-task scripts); "adamw_groups": one AdamW with
    # the encoder as its own parameter group (unified scripts); "adam": one Adam (RD4AD)
    optimizer: str = "adamw"
    lr_decoder: float = 2e-3
    lr_encoder: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-5
    adam_eps: float = 1e-8
    amsgrad: bool = False
    encoder_bn_train: bool = True
    decoder_activation: str = "relu"  # "gelu" in the unified scripts
    # Random encoders (pretrained=False, no weights file) first take BatchNorm statistics from the
    # training normals; measured on the built-in tasks it lifts RD4AD from near chance (see docs/bench.md).
    calibrate_random_encoder: bool = True
    # ablation switches
    loss: str = "global"
    stop_gradient: bool = True
    two_views: bool = True
    train_encoder: bool = True
    hard_mining_factor: float = 0.0  # 1 = off
    alpha_start: float = -3.0
    alpha_end: float = 1.0
    alpha_warmup: float = 0.1
    # scoring
    image_score: str = "max"
    map_reduction: str = "sum"  # of the (encoder, decoder) pair maps: "sum" (per-task scripts) or "mean" (unified)
    sigma: float = 4.0
    blur_kernel: int | None = None  # None: scipy's gaussian_filter (per-task); 5: the unified scripts' 5x5 kernel

    def __post_init__(self):
        super().__post_init__()
        require_choice("optimizer", self.optimizer, OPTIMIZERS)
        require_choice("loss", self.loss, ("global", "regional"))
        require_choice("image_score", self.image_score, IMAGE_SCORES)
        require_choice("map_reduction", self.map_reduction, ("sum", "mean"))
        require_choice("decoder_activation", self.decoder_activation, ("relu", "gelu"))
        if self.blur_kernel is not None and (self.blur_kernel < 1 or self.blur_kernel % 2 == 0):
            raise UserInputError(f"blur_kernel must be an odd positive size or null, got {self.blur_kernel!r}")


# recontrast_{mvtec,visa}_multiclass.py: what the unified multi-class setting changes (with 5000 x 16)
UNIFIED = {
    "optimizer": "adamw_groups",
    "adam_eps": 1e-10,
    "amsgrad": True,
    "lr_milestone": 0.8,
    "lr_gamma": 0.2,
    "drop_last": True,
    "decoder_activation": "gelu",
    "encoder_bn_train": False,
    "map_reduction": "mean",
    "blur_kernel": 5,
    "image_score": "top1",
}


# The per-task scripts' settings (recontrast_<task>.py; docs/tasks.md, "Paper fidelity"), by task name and
# then by task family (the name before ":"); a task listed nowhere (a user's folder, a new dataset)
# gets FALLBACK_SETTINGS. The built-in synthetic tasks take the settings of the task each mimics.
TASK_SETTINGS: dict[str, dict] = {
    "aptos": {"iters": 1000, "batch_size": 32, "encoder_bn_train": True},
    "oct": {"iters": 1000, "batch_size": 32, "encoder_bn_train": False},
    "isic": {"iters": 2000, "batch_size": 32, "encoder_bn_train": True, "image_score": "mean"},
    "mvtec": {"iters": 2000, "batch_size": 16},
    "visa": {"iters": 3000, "batch_size": 16},
    "synth-fundus": {"iters": 1000, "batch_size": 32},
    "synth-oct": {"iters": 1000, "batch_size": 32, "encoder_bn_train": False},
    "synth-skin": {"iters": 2000, "batch_size": 32, "image_score": "mean"},
}
FALLBACK_SETTINGS = {"iters": 1000, "batch_size": 16}
# classes whose encoder BatchNorm the per-class scripts keep in eval mode
BN_EVAL_CLASSES = {
    "mvtec": frozenset({"toothbrush", "leather", "grid", "tile", "wood", "screw"}),
    "visa": frozenset({"cashew", "pcb1"}),
}
UNIFIED_SCHEDULE = {"iters": 5000, "batch_size": 16}  # recontrast_{mvtec,visa}_multiclass.py

# The lite profile (EfficientNet-Lite0, ImageNet weights, 224 px; minutes per run on 2 CPU cores): a short
# schedule of the per-task batch size.
LITE_SCHEDULE = {"iters": 100, "batch_size": 16}

# The demo profile (EfficientNet-Lite0, ImageNet weights, 128 px; the README's first command on 2 CPU cores): a
# shorter schedule of small batches.
DEMO_SCHEDULE = {"iters": 40, "batch_size": 8}

# The tiny profile (resnet18 from random weights, 64 px; seconds per run, for tests): a short schedule of small batches.
TINY_SCHEDULE = {"iters": 80, "batch_size": 8}


@register_detector("recontrast")
class ReContrast(Detector):
    Config = ReContrastConfig
    card = MethodCard(
        display_name="ReContrast",
        order=0,
        profile_options={"demo": DEMO_SCHEDULE, "lite": LITE_SCHEDULE, "tiny": TINY_SCHEDULE},
        reference=True,
        citation=(
            "Guo et al., ReContrast: Domain-specific anomaly detection via contrastive reconstruction, NeurIPS 2023; "
            "code github.com/guojiajeremy/ReContrast"
        ),
        random_weights_caveat=(
            "**ReContrast from random weights is handicapped by design:** it adapts a pretrained encoder's features "
            "to the target domain (the encoder is trained at a tiny learning rate, the decoder reconstructs its "
            "features); without ImageNet weights there are no features worth adapting, so its numbers here say nothing "
            "about the method. Run the paper profile (ImageNet weights) to compare methods."
        ),
        # ReContrast's own logs, final iteration, in percent. Their AUPRO is the per-image average
        # (utils.evaluation appends compute_pro per abnormal image and takes the mean), so the comparison
        # uses ``aupro_per_image``; the dataset-level ``aupro`` stays in the main table.
        paper_results={
            "mvtec": {"image_auroc": 99.45, "pixel_auroc": 98.37, "aupro_per_image": 95.2},
            "visa": {"image_auroc": 97.50, "pixel_auroc": 98.21, "aupro_per_image": 92.62},
            # the unified multi-class setting (one model for all classes; the paper's second table)
            "mvtec-unified": {"image_auroc": 98.2},
            "visa-unified": {"image_auroc": 95.1},
            "aptos": {"image_auroc": 97.51, "f1_oracle": 95.27, "acc_oracle": 93.35},
            "oct": {"image_auroc": 99.60, "f1_oracle": 98.53, "acc_oracle": 97.80},
            "isic": {"image_auroc": 90.15, "f1_oracle": 81.12, "acc_oracle": 86.01},
        },
    )
    trains = True
    size_multiple = SIZE_MULTIPLE

    @classmethod
    def notes(cls, options: dict) -> list[str]:
        """A timm backbone has no decoder of the authors': say that it runs the suite's generic one."""
        backbone = str(options.get("backbone", ""))
        return [f"{cls.card.display_name} with {backbone}: {GENERIC_DECODER}."] if is_timm(backbone) else []

    @classmethod
    def storage_estimate(cls, config, *, train_images: int, input_size: int) -> dict:
        """model.pt: the whole network (both views); a checkpoint adds the optimisers' moments."""
        return state_bytes(
            lambda: ReverseDistillationNet(
                config.backbone,
                pretrained=False,
                train_encoder=config.train_encoder,
                two_views=config.two_views,
                decoder_activation=config.decoder_activation,
            ),
            optimizer_moments=3 if config.amsgrad else 2,
        )

    @classmethod
    def task_options(cls, task) -> dict:
        """The task's ReContrast settings: the unified scripts' for a unified task, else the per-task
        script's (:data:`TASK_SETTINGS` by name, then by family, else :data:`FALLBACK_SETTINGS`)."""
        if task.members:
            return {**UNIFIED, **UNIFIED_SCHEDULE}
        family, _, member = task.name.partition(":")
        settings = {
            "encoder_bn_train": True,
            "image_score": "max",
            **TASK_SETTINGS.get(task.name, TASK_SETTINGS.get(family, FALLBACK_SETTINGS)),
        }
        if member in BN_EVAL_CLASSES.get(family, ()):
            settings["encoder_bn_train"] = False
        return settings

    @classmethod
    def prepare_options(cls, config: dict) -> dict:
        return apply_schedule({}, config)  # the schedule given replaces the default one

    def construct(self) -> None:
        c = self.config
        self.model = ReverseDistillationNet(
            c.backbone,
            pretrained=c.pretrained,
            weights=c.weights,
            train_encoder=c.train_encoder,
            two_views=c.two_views,
            encoder_bn_train=c.encoder_bn_train,
            decoder_activation=c.decoder_activation,
        ).to(self.device)
        self.training_: TrainingResult | None = None
        self.iters_ = c.iters  # with ``epochs``: known once ``fit`` sees the training set

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimiser(s) ``config.optimizer`` names, over the decoder side and, where it learns, the encoder."""
        c = self.config
        groups = self.model.trainable_groups()
        options = dict(
            betas=c.betas,
            weight_decay=c.weight_decay,
            eps=c.adam_eps,
            amsgrad=c.amsgrad,
            **fused_optimizer_options(self.device),
        )
        param_groups = [{"params": groups["decoder"], "lr": c.lr_decoder}]
        if "encoder" in groups:
            param_groups.append({"params": groups["encoder"], "lr": c.lr_encoder})
        if c.optimizer == "adam":
            return {"decoder": torch.optim.Adam(param_groups, lr=c.lr_decoder, **options)}
        if c.optimizer == "adamw_groups":
            return {"decoder": torch.optim.AdamW(param_groups, lr=c.lr_decoder, **options)}
        return {
            name: torch.optim.AdamW(group["params"], lr=group["lr"], **options)
            for name, group in zip(("decoder", "encoder"), param_groups)
        }

    def training_loss(self, model: ReverseDistillationNet, images: torch.Tensor, iteration: int) -> torch.Tensor:
        c = self.config
        if self.iters_ is None:
            raise RuntimeError(f"the iteration count of epochs={c.epochs} is known once fit sees the training set")
        targets, outputs = model(images)
        alpha = hard_mining_alpha(iteration, self.iters_, c.alpha_start, c.alpha_end, c.alpha_warmup)
        options = dict(kind=c.loss, stop_gradient=c.stop_gradient, alpha=alpha, factor=c.hard_mining_factor)
        if not c.two_views:
            return cosine_loss(targets, outputs, **options)
        # frozen features reconstructed from the trainable view, and trainable ones from the frozen view
        return (
            cosine_loss(targets[:3], outputs[:3], **options) / 2 + cosine_loss(targets[3:], outputs[3:], **options) / 2
        )

    def fit(
        self,
        train: Dataset,
        *,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> "ReContrast":
        """Train on normal images; with ``checkpoint`` the state is saved there and ``resume`` continues it."""
        c = self.config
        self.iters_ = resolve_iterations(c, len(train))
        if c.calibrate_random_encoder and not (c.pretrained or c.weights):
            encoders = [self.model.encoder] + (
                [self.model.frozen_encoder] if self.model.frozen_encoder is not None else []
            )
            estimate_batchnorm_statistics(encoders, train, c.batch_size, self.device)
        optimizers = self.make_optimizers()
        result = train_loop(
            self.model,
            optimizers,
            self.training_loss,
            train,
            c,
            identity={
                "method": self.name,
                "backbone": c.backbone,
                "two_views": c.two_views,
                "train_encoder": c.train_encoder,
            },
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
        )
        self._record_training(result, c.batch_size)
        return self

    def scoring_module(self, amp: bool | str = False) -> "ReverseDistillationScorer":
        """Pixels in [0, 1] -> ``(scores, maps)``: the network, the map fusion, the blur and the score reduction
        as one module; scoring and export run this same module (export: float32, ``amp=False``)."""
        c = self.config
        return ReverseDistillationScorer(
            self.model.eval(),
            map_reduction=c.map_reduction,
            sigma=c.sigma,
            blur_kernel=c.blur_kernel,
            image_score=c.image_score,
            amp=amp,
        )

    @torch.no_grad()
    def _score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if uses_channels_last(images.device, self.config.amp, self.config.channels_last, inference=True):
            images = to_channels_last(self.model, images)
        return self.scoring_module(self.config.amp)(images)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.model.eval()
