"""VAE: MedIAnomaly's variational autoencoder (``networks/vae.py``, ``VaeBottleNeck``, ``VAELoss``, ``VAEWorker``).

Loss: the mean squared reconstruction error plus ``kl_weight`` (0.005) x the KL divergence to N(0, I),
averaged over latent dimensions and then over the batch; the decoder reads one sample of the latent, in
training and (as released) in evaluation. Anomaly map: the squared error of that sample's reconstruction,
averaged over channels; image score: its mean. The released scores draw the sample from torch's global stream;
here it is the detector's own, seeded by ``seed`` at each ``predict`` (docs/tasks.md, fidelity table).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medrecontrast.models.base import register_detector
from medrecontrast.models.reconstruction import AE4AD_TABLE2, ReconstructionConfig, ReconstructionDetector


@dataclass(kw_only=True)
class VAEConfig(ReconstructionConfig):
    kl_weight: float = 0.005  # VAELoss(kl_weight=0.005)


@register_detector("vae")
class VariationalAutoEncoder(ReconstructionDetector):
    Config = VAEConfig
    card = ReconstructionDetector.card.but(
        display_name="VAE",
        order=5,
        paper_results=AE4AD_TABLE2["vae"],
    )
    bottleneck = "vae"

    def criterion(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        mu, log_var = out["mu"], out["log_var"]
        kl = torch.mean(-0.5 * (1 + log_var - mu**2 - log_var.exp()), dim=1)
        return ((x - out["x_hat"]) ** 2).mean() + self.config.kl_weight * kl.mean()

    def score_map(self, x: torch.Tensor, out: dict) -> torch.Tensor:
        return ((x - out["x_hat"]) ** 2).mean(dim=1, keepdim=True)
