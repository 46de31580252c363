"""RD4AD (Deng & Li, CVPR 2022): reverse distillation from a frozen encoder.

ReContrast with its ingredients switched off: a frozen encoder (BatchNorm in eval mode), one view
and one head set, no hard mining; global cosine loss; one Adam optimiser (lr 0.005, betas
(0.5, 0.999)) for the bottleneck and decoder; the anomaly map over the 3 (encoder, decoder) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medrecontrast.engine import fused_optimizer_options
from medrecontrast.models.base import register_detector
from medrecontrast.models.recontrast import ReContrast, ReContrastConfig


@dataclass
class RD4ADConfig(ReContrastConfig):
    lr_decoder: float = 0.005
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    grad_clip_norm: float | None = None
    encoder_bn_train: bool = False
    two_views: bool = False
    train_encoder: bool = False
    hard_mining_factor: float = 1.0


@register_detector("rd4ad")
class RD4AD(ReContrast):
    Config = RD4ADConfig

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        decoder = self.model.trainable_groups()["decoder"]
        return {"decoder": torch.optim.Adam(decoder, lr=c.lr_decoder, betas=c.betas, weight_decay=c.weight_decay, **fused_optimizer_options(self.device))}
