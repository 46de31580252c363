"""From (encoder, decoder) feature pairs to a smoothed per-pixel anomaly map and an image score."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def anomaly_map(targets: list[torch.Tensor], outputs: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Sum over feature pairs of 1 - cos (over channels), each upsampled bilinearly to ``size``: ``(B, 1, H, W)``."""
    total = None
    for target, output in zip(targets, outputs):
        distance = 1 - F.cosine_similarity(target.float(), output.float(), dim=1).unsqueeze(1)
        distance = F.interpolate(distance, size=size, mode="bilinear", align_corners=True)
        total = distance if total is None else total + distance
    return total


def gaussian_blur(maps: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """Gaussian filter of ``(B, 1, H, W)`` maps, equal to ``scipy.ndimage.gaussian_filter(sigma)``.

    Same kernel (truncated at 4 sigma) and the same half-sample symmetric border as scipy, but
    separable convolutions in torch, so it runs on the GPU without a round trip.
    """
    if sigma <= 0:
        return maps
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=maps.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(maps.dtype)
    out = maps
    for dim in (2, 3):
        out = _symmetric_pad(out, radius, dim)
        shape = [1, 1, 1, 1]
        shape[dim] = kernel.numel()
        out = F.conv2d(out, kernel.view(shape))
    return out


def _symmetric_pad(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Pad like numpy's ``symmetric`` mode (d c b a | a b c d | d c b a), repeating for tiny maps."""
    length = x.shape[dim]
    index = torch.arange(-radius, length + radius, device=x.device)
    period = 2 * length
    index = torch.remainder(index, period)
    index = torch.where(index >= length, period - 1 - index, index)
    return x.index_select(dim, index)


def image_scores(maps: torch.Tensor, reduction: str = "max") -> torch.Tensor:
    """One score per image: the map's ``max``, ``mean``, or ``top1`` (mean of its top 1 %)."""
    flat = maps.flatten(1)
    if reduction == "max":
        return flat.max(dim=1).values
    if reduction == "mean":
        return flat.mean(dim=1)
    if reduction == "top1":
        k = max(1, math.ceil(flat.shape[1] * 0.01))
        return flat.topk(k, dim=1).values.mean(dim=1)
    raise ValueError(f"image score must be 'max', 'mean' or 'top1', got {reduction!r}")
