"""From (encoder, decoder) feature pairs to a smoothed per-pixel anomaly map and an image score."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def anomaly_map(
    targets: list[torch.Tensor], outputs: list[torch.Tensor], size: tuple[int, int], reduction: str = "sum"
) -> torch.Tensor:
    """Sum (``cal_anomaly_map``, per-task scripts) or mean (``cal_anomaly_maps``, unified scripts) over
    feature pairs of 1 - cos (over channels), each upsampled bilinearly to ``size``: ``(B, 1, H, W)``."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"map reduction must be 'sum' or 'mean', got {reduction!r}")
    total = None
    for target, output in zip(targets, outputs):
        distance = 1 - F.cosine_similarity(target.float(), output.float(), dim=1).unsqueeze(1)
        distance = F.interpolate(distance, size=size, mode="bilinear", align_corners=True)
        total = distance if total is None else total + distance
    return total / len(targets) if reduction == "mean" else total


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


def gaussian_blur_kernel(maps: torch.Tensor, sigma: float = 4.0, size: int = 5) -> torch.Tensor:
    """The unified scripts' smoothing (ReContrast ``utils.get_gaussian_kernel``): a ``size`` x ``size``
    Gaussian of ``sigma``, normalised to sum 1, as a convolution with zero padding ``size // 2``."""
    offsets = torch.arange(size, dtype=torch.float64, device=maps.device) - (size - 1) / 2
    kernel = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(maps.dtype)
    return F.conv2d(maps, kernel.view(1, 1, size, size), padding=size // 2)


def _symmetric_pad(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Pad like numpy's ``symmetric`` mode (d c b a | a b c d | d c b a), repeating for tiny maps."""
    length = x.shape[dim]
    index = torch.arange(-radius, length + radius, device=x.device)
    period = 2 * length
    index = torch.remainder(index, period)
    index = torch.where(index >= length, period - 1 - index, index)
    return x.index_select(dim, index)


def image_scores(maps: torch.Tensor, reduction: str = "max") -> torch.Tensor:
    """One score per image: the map's ``max``, ``mean``, or ``top1``: the mean of its ``int(0.01 * H * W)``
    largest values, as ``evaluation_batch(max_ratio=0.01)`` (at least one)."""
    flat = maps.flatten(1)
    if reduction == "max":
        return flat.max(dim=1).values
    if reduction == "mean":
        return flat.mean(dim=1)
    if reduction == "top1":
        k = max(1, int(flat.shape[1] * 0.01))
        return flat.topk(k, dim=1).values.mean(dim=1)
    raise ValueError(f"image score must be 'max', 'mean' or 'top1', got {reduction!r}")
