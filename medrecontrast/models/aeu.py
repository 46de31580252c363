"""AE-U: MedIAnomaly's autoencoder with uncertainty (``networks/aeu.py``, ``AEULoss``, ``AEUWorker``; Mao et
al., MICCAI 2020).

The last decoder block gives two channels per input channel: the reconstruction and the log-variance of each
pixel. Loss: the mean of ``exp(-log_var) * (x - x_hat)^2 + log_var``; anomaly map: the
variance-weighted squared error ``exp(-log_var) * (x - x_hat)^2`` averaged over channels; image score: its mean.
"""

from __future__ import annotations

import torch

from medrecontrast.models.base import register_detector
from medrecontrast.models.reconstruction import ReconstructionDetector


@register_detector("aeu")
class AEU(ReconstructionDetector):
    card = ReconstructionDetector.card.but(
        display_name="AE-U",
        order=7,
        paper_results={},  # not in the table the suite could read (reconstruction.AE4AD_TABLE2)
    )
    uncertainty = True

    @staticmethod
    def weighted_error(x: torch.Tensor, out: dict) -> torch.Tensor:
        return torch.exp(-out["log_var"]) * (x - out["x_hat"]) ** 2

    def criterion(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        return (self.weighted_error(x, out) + out["log_var"]).mean()

    def score_map(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        return self.weighted_error(x, out).mean(dim=1, keepdim=True)
