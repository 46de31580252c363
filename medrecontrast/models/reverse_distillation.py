"""The reverse-distillation network behind both RD4AD and ReContrast.

One module, with the switches the ReContrast paper's ablation walks through:

* ``train_encoder``: the encoder learns (ReContrast) or stays frozen (RD4AD);
* ``two_views``: a frozen copy of the encoder is a second view, and the shared bottleneck/decoder
  cross-reconstructs (head set 0 reconstructs the frozen features from the trainable encoder's,
  head set 1 the trainable features from the frozen encoder's);
* ``encoder_bn_train``: whether the trainable encoder's BatchNorm updates its statistics.

With one view the decoder has no output heads (RD4AD: the raw outputs of its three layers are the
reconstructions); with two it has ReContrast's two head sets.

``forward`` returns ``(targets, outputs)``: matching lists of encoder features and their
reconstructions (3 pairs with one view, 6 with two), which feed both the loss and the anomaly map.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from medrecontrast.errors import UserInputError
from medrecontrast.models.backbones import build_encoder
from medrecontrast.models.decoder import bottleneck_and_decoder

SIZE_MULTIPLE = 32


class ReverseDistillationNet(nn.Module):
    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        train_encoder: bool = True,
        two_views: bool = True,
        encoder_bn_train: bool = True,
        decoder_activation: str = "relu",
    ):
        super().__init__()
        self.train_encoder, self.two_views, self.encoder_bn_train = train_encoder, two_views, encoder_bn_train
        self.encoder = build_encoder(backbone, pretrained=pretrained, weights=weights)
        self.frozen_encoder = copy.deepcopy(self.encoder).requires_grad_(False) if two_views else None
        if not train_encoder:
            self.encoder.requires_grad_(False)
        self.bottleneck, self.decoder = bottleneck_and_decoder(
            backbone, num_heads=2 if two_views else 0, activation=decoder_activation, channels=self.encoder.channels
        )

    def train(self, mode: bool = True) -> "ReverseDistillationNet":
        """Train mode for the bottleneck and decoder; encoders keep BatchNorm in eval where they must."""
        super().train(mode)
        if self.frozen_encoder is not None:
            self.frozen_encoder.eval()  # the frozen view always uses ImageNet statistics
        if not (self.train_encoder and self.encoder_bn_train):
            self.encoder.eval()
        return self

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by optimiser: the decoder side, and the encoder where it learns."""
        groups = {"decoder": [*self.bottleneck.parameters(), *self.decoder.parameters()]}
        if self.train_encoder:
            groups["encoder"] = list(self.encoder.parameters())
        return groups

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if x.shape[-1] % SIZE_MULTIPLE or x.shape[-2] % SIZE_MULTIPLE:
            # The bottleneck halves layer3's grid once more; the decoder's doublings must land back on it.
            raise UserInputError(
                f"reverse distillation needs image sides that are multiples of {SIZE_MULTIPLE}, got "
                f"{tuple(x.shape[-2:])}"
            )
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            features = self.encoder(x)
        if not self.two_views:
            return features, self.decoder(self.bottleneck(features), head=None)
        with torch.no_grad():
            frozen = self.frozen_encoder(x)
        # Both views run through the shared bottleneck/decoder as one batch (shared BatchNorm statistics).
        trunk = self.decoder(self.bottleneck([torch.cat(pair) for pair in zip(features, frozen)]), head=None)
        batch = x.shape[0]
        from_trainable = self.decoder.apply_head([f[:batch] for f in trunk], 0)
        from_frozen = self.decoder.apply_head([f[batch:] for f in trunk], 1)
        return frozen + features, from_trainable + from_frozen
