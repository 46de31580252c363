"""ReContrast (Guo et al., NeurIPS 2023): contrastive reconstruction with a trainable encoder.

The network is :class:`~medrecontrast.models.reverse_distillation.ReverseDistillationNet` with both
views and a trainable encoder; the loss is the global cosine distance with stop-gradient and
hard-normal mining (α ramps from -3 to 1 over the first 10 % of iterations, easy points get
``hard_mining_factor`` x their gradient); two AdamW optimisers (decoder side lr 2e-3, encoder lr
1e-5). The anomaly map sums 1 - cos of all (encoder, decoder) pairs, upsampled to the input, and is
smoothed with a Gaussian of σ = 4; the image score is its max (or mean, per task).

Every ingredient is a switch, so the paper's ablation from RD4AD to ReContrast is a sweep over
``loss``, ``stop_gradient``, ``two_views``, ``hard_mining_factor`` and ``train_encoder``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from medrecontrast.engine import (
    TrainingConfig,
    TrainingResult,
    autocast,
    fused_optimizer_options,
    to_channels_last,
    train_loop,
    uses_channels_last,
)
from medrecontrast.losses import cosine_loss, hard_mining_alpha
from medrecontrast.models.anomaly_map import anomaly_map, gaussian_blur, image_scores
from medrecontrast.models.backbones import estimate_batchnorm_statistics
from medrecontrast.models.base import Detector, register_detector
from medrecontrast.models.reverse_distillation import ReverseDistillationNet


@dataclass
class ReContrastConfig:
    backbone: str = "wide_resnet50_2"
    pretrained: bool = True
    weights: str | None = None  # a local file with the backbone's ImageNet weights
    # training (DESIGN.md §1; per-task values come from the task)
    iters: int = 2000
    batch_size: int = 16
    lr_decoder: float = 2e-3
    lr_encoder: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-5
    grad_clip_norm: float | None = 0.1  # the official training loop clips the decoder side at 0.1
    encoder_bn_train: bool = True
    # Random encoders (pretrained=False, no weights file) first take BatchNorm statistics from the
    # training normals; measured on the built-in tasks it lifts RD4AD from near chance (see README).
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
    sigma: float = 4.0
    # engineering
    seed: int = 0
    device: str = "auto"
    amp: bool | str = True  # True: bf16 autocast on CUDA; "bf16": on every device; False: fp32
    channels_last: bool | None = None  # None: on CUDA with bf16
    compile: bool = False
    cudnn_benchmark: bool = True
    num_workers: int | None = None  # None: 0 on the CPU, up to 8 loader processes beside a GPU
    checkpoint_every: int = 100
    reset_optimizer_every: int | None = None


@register_detector("recontrast")
class ReContrast(Detector):
    Config = ReContrastConfig

    def __init__(self, **config):
        super().__init__(**config)
        c = self.config
        self.model = ReverseDistillationNet(
            c.backbone, pretrained=c.pretrained, weights=c.weights, train_encoder=c.train_encoder,
            two_views=c.two_views, encoder_bn_train=c.encoder_bn_train,
        ).to(self.device)
        self.training_: TrainingResult | None = None

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        groups = self.model.trainable_groups()
        fused = fused_optimizer_options(self.device)
        optimizers = {"decoder": torch.optim.AdamW(groups["decoder"], lr=c.lr_decoder, betas=c.betas, weight_decay=c.weight_decay, **fused)}
        if "encoder" in groups:
            optimizers["encoder"] = torch.optim.AdamW(groups["encoder"], lr=c.lr_encoder, betas=c.betas, weight_decay=c.weight_decay, **fused)
        return optimizers

    def training_loss(self, model: ReverseDistillationNet, images: torch.Tensor, iteration: int) -> torch.Tensor:
        c = self.config
        targets, outputs = model(images)
        alpha = hard_mining_alpha(iteration, c.iters, c.alpha_start, c.alpha_end, c.alpha_warmup)
        options = dict(kind=c.loss, stop_gradient=c.stop_gradient, alpha=alpha, factor=c.hard_mining_factor)
        if not c.two_views:
            return cosine_loss(targets, outputs, **options)
        # frozen features reconstructed from the trainable view, and trainable ones from the frozen view
        return cosine_loss(targets[:3], outputs[:3], **options) / 2 + cosine_loss(targets[3:], outputs[3:], **options) / 2

    def fit(self, train: Dataset, checkpoint: str | os.PathLike | None = None, resume: bool = False, progress: bool = True) -> "ReContrast":
        """Train on normal images; with ``checkpoint`` the state is saved there and ``resume`` continues it."""
        c = self.config
        if c.calibrate_random_encoder and not (c.pretrained or c.weights):
            encoders = [self.model.encoder] + ([self.model.frozen_encoder] if self.model.frozen_encoder is not None else [])
            estimate_batchnorm_statistics(encoders, train, c.batch_size, self.device)
        optimizers = self.make_optimizers()
        self.training_ = train_loop(
            self.model, optimizers, self.training_loss, train,
            TrainingConfig(
                iters=c.iters, batch_size=c.batch_size, seed=c.seed, device=c.device, amp=c.amp, channels_last=c.channels_last,
                compile=c.compile, cudnn_benchmark=c.cudnn_benchmark, num_workers=c.num_workers,
                checkpoint_every=c.checkpoint_every, grad_clip_norm=c.grad_clip_norm, reset_optimizer_every=c.reset_optimizer_every,
            ),
            identity={"method": self.name, "backbone": c.backbone, "two_views": c.two_views, "train_encoder": c.train_encoder},
            checkpoint=checkpoint, resume=resume, clip=optimizers["decoder"].param_groups[0]["params"], progress=progress,
        )
        return self

    @torch.no_grad()
    def score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        if uses_channels_last(images.device, self.config.amp, self.config.channels_last):
            images = to_channels_last(self.model, images)
        with autocast(images.device, self.config.amp):
            targets, outputs = self.model(images)
        maps = gaussian_blur(anomaly_map(targets, outputs, tuple(images.shape[-2:])), self.config.sigma)
        return image_scores(maps, self.config.image_score), maps[:, 0]

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.model.eval()
