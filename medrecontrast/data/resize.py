"""The one resize of the pipeline: square, anti-aliased bilinear for images, nearest for masks."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_square(array: np.ndarray | torch.Tensor, size: int, mask: bool = False) -> torch.Tensor:
    """``(C, H, W)`` -> ``(C, size, size)`` float32: torch's ``interpolate(antialias=True)`` (the filter
    torchvision, PIL and anomalib use) for images in [0, 1], kept in [0, 1]; pixel-centre nearest
    neighbour (``nearest-exact``) for masks, so they stay binary and line up with their images."""
    batch = torch.as_tensor(np.ascontiguousarray(array))[None].float()
    if mask:
        return F.interpolate(batch, size=(size, size), mode="nearest-exact")[0]
    return F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0].clamp_(0, 1)
