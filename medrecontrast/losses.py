"""Reconstruction losses of RD4AD and ReContrast, with ReContrast's hard-normal mining.

Every function takes lists of (target, output) feature maps, one per encoder layer, and computes in
float32 whatever precision the network ran in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_loss(
    targets: list[torch.Tensor],
    outputs: list[torch.Tensor],
    kind: str = "global",
    stop_gradient: bool = True,
    alpha: float | None = None,
    factor: float = 1.0,
) -> torch.Tensor:
    """Sum over layers of the cosine distance between target and reconstructed features.

    ``kind="global"`` (ReContrast, RD4AD's released code): each sample's C*H*W feature map is one
    vector, loss = mean over the batch of 1 - cos. ``kind="regional"``: 1 - cos over channels at
    every point, averaged. ``stop_gradient`` detaches the targets. With ``alpha`` set and
    ``factor != 1``, hard-normal mining scales the gradient of the easy points (see
    :func:`scale_easy_points`).
    """
    if kind not in ("global", "regional"):
        raise ValueError(f"loss kind must be 'global' or 'regional', got {kind!r}")
    total = torch.zeros((), device=outputs[0].device)
    for target, output in zip(targets, outputs):
        target, output = target.float(), output.float()
        if stop_gradient:
            target = target.detach()
        if alpha is not None and factor != 1.0:
            scale_easy_points(target, output, alpha, factor)
        if kind == "global":
            distance = 1 - F.cosine_similarity(target.flatten(1), output.flatten(1), dim=1)
        else:
            distance = 1 - F.cosine_similarity(target, output, dim=1)
        total = total + distance.mean()
    return total


def scale_easy_points(target: torch.Tensor, output: torch.Tensor, alpha: float, factor: float) -> torch.Tensor:
    """Multiply by ``factor`` the gradient reaching ``output`` at its easy points.

    A point is easy when its cosine distance (over channels) is below mean + ``alpha`` * std of all
    points of the batch at this layer; the official runs use factor 0, so only hard points teach.
    Returns the boolean mask of easy points, shaped ``(B, 1, H, W)``.
    """
    with torch.no_grad():
        distance = 1 - F.cosine_similarity(target, output, dim=1)
        easy = (distance < distance.mean() + alpha * distance.flatten().std()).unsqueeze(1)
    if output.requires_grad:
        output.register_hook(lambda grad: torch.where(easy, grad * factor, grad))
    return easy


def hard_mining_alpha(
    iteration: int, total_iters: int, start: float = -3.0, end: float = 1.0, warmup: float = 0.1
) -> float:
    """ReContrast's α: linear from ``start`` to ``end`` over the first ``warmup`` of training, then ``end``."""
    ramp = max(total_iters * warmup, 1e-12)
    return min(start + (end - start) * iteration / ramp, end)
