"""MemAE: MedIAnomaly's memory-augmented autoencoder (``networks/mem_ae.py``, ``MemBottleNeck``, ``MemModule``,
``MemAELoss``, ``MemAEWorker``; Gong et al., ICCV 2019).

The latent vector addresses a memory of ``mem_size`` (25) items by softmax attention, hard-shrunk at
``shrink_thres`` (0.0025) and re-normalised; the decoder reads the memory's mixture. Loss: the mean squared
reconstruction error plus ``entropy_weight`` (0.0002) x the mean entropy of the attention. Anomaly map: the
squared error averaged over channels; image score: its mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medrecontrast.errors import UserInputError, require_positive_ints
from medrecontrast.models.base import register_detector
from medrecontrast.models.reconstruction import AE4AD_TABLE2, ReconstructionConfig, ReconstructionDetector

ENTROPY_EPS = 1e-12  # MemAELoss.eps


@dataclass(kw_only=True)
class MemAEConfig(ReconstructionConfig):
    mem_size: int = 25  # MemAE(mem_size=25): base_worker.py never sets it
    shrink_thres: float = 0.0025
    entropy_weight: float = 0.0002

    def __post_init__(self):
        super().__post_init__()
        require_positive_ints(self, "mem_size")
        if not 0 <= self.shrink_thres < 1:
            raise UserInputError(f"shrink_thres must be in [0, 1) (0: no shrinkage), got {self.shrink_thres!r}")


@register_detector("memae")
class MemAE(ReconstructionDetector):
    Config = MemAEConfig
    card = ReconstructionDetector.card.but(
        display_name="MemAE",
        order=6,
        paper_results=AE4AD_TABLE2["memae"],
    )
    bottleneck = "memae"

    @classmethod
    def network_options(cls, config: MemAEConfig) -> dict:
        return {"mem_size": config.mem_size, "shrink_thres": config.shrink_thres}

    def criterion(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        att = out["att"]
        entropy = (-(att * torch.log(att + ENTROPY_EPS)).sum(dim=1)).mean()
        return ((x - out["x_hat"]) ** 2).mean() + self.config.entropy_weight * entropy

    def score_map(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        return ((x - out["x_hat"]) ** 2).mean(dim=1, keepdim=True)
