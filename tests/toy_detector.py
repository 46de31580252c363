"""A new method as a contributor would add one: this file, plus one import line where it is used.

Pooled nearest neighbours: a frozen encoder's layer3 features, average-pooled per image; the image
score is the distance to the nearest training image's pooled vector, the map the distance of each
layer3 position to the mean training feature at that position. No iterations, so it does not train.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from medrecontrast.compute import batch_to_device
from medrecontrast.errors import require_positive_ints
from medrecontrast.models.backbones import ResNetEncoder
from medrecontrast.models.base import Detector, MethodCard, register_detector


@dataclass
class PooledKNNConfig:
    backbone: str = "resnet18"
    pretrained: bool = True
    weights: str | None = None
    batch_size: int = 8
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        require_positive_ints(self, "batch_size")


@register_detector("pooled-knn")
class PooledKNN(Detector):
    Config = PooledKNNConfig
    card = MethodCard(
        display_name="Pooled kNN",
    )

    def construct(self) -> None:
        c = self.config
        self.encoder = ResNetEncoder(c.backbone, pretrained=c.pretrained, weights=c.weights).eval().to(self.device)
        self.bank_: torch.Tensor | None = None
        self.mean_map_: torch.Tensor | None = None

    @torch.no_grad()
    def fit(self, train, *, checkpoint=None, resume=False, progress=True) -> "PooledKNN":
        features = torch.cat(
            [
                self.encoder(batch_to_device(b["image"], self.device))[2]
                for b in DataLoader(train, batch_size=self.config.batch_size)
            ]
        )
        self.bank_, self.mean_map_ = features.mean(dim=(2, 3)), features.mean(dim=0, keepdim=True)
        self.images_seen_, self.fitted_ = len(train), True
        return self

    @torch.no_grad()
    def _score_batch(self, images):
        features = self.encoder(images)[2]
        scores = torch.cdist(features.mean(dim=(2, 3)), self.bank_).min(dim=1).values
        maps = torch.linalg.vector_norm(features - self.mean_map_, dim=1, keepdim=True)
        return scores, F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]

    def state_dict(self):
        return {"encoder": self.encoder.state_dict(), "bank": self.bank_, "mean_map": self.mean_map_}

    def load_state_dict(self, state):
        self.encoder.load_state_dict(state["encoder"])
        self.bank_, self.mean_map_ = state["bank"].to(self.device), state["mean_map"].to(self.device)
