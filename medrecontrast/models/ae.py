"""AE (ℓ2): MedIAnomaly's plain autoencoder (``networks/ae.py``, ``utils/losses.py: AELoss``, ``AEWorker``).

Loss: the mean squared error of the reconstruction; anomaly map: the squared error averaged over channels;
image score: its mean. Everything else is :mod:`.reconstruction`'s (the released input, network and schedule).
"""

from __future__ import annotations

import torch

from medrecontrast.models.base import register_detector
from medrecontrast.models.reconstruction import AE4AD_TABLE2, ReconstructionDetector


@register_detector("ae")
class AutoEncoder(ReconstructionDetector):
    card = ReconstructionDetector.card.but(
        display_name="AE",
        order=4,
        paper_results=AE4AD_TABLE2["ae"],
    )

    def criterion(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        return ((x - out["x_hat"]) ** 2).mean()

    def score_map(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        return ((x - out["x_hat"]) ** 2).mean(dim=1, keepdim=True)
