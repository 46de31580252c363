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


def global_cosine_hm_percent(
    targets: list[torch.Tensor], outputs: list[torch.Tensor], p: float, factor: float = 0.1
) -> torch.Tensor:
    """Dinomaly's loss (``utils.global_cosine_hm_percent``): the mean over feature groups of the global
    cosine distance (each sample's C*H*W map one vector; targets detached), with the gradient reaching
    ``outputs`` scaled by ``factor`` at the easiest points: those whose cosine distance (over channels)
    is below the ``int(n * (1 - p))``-th largest of the ``n`` points of the batch (about a fraction
    ``p`` of them). At least one point stays hard (the released ``topk(k=0)`` fails on a map that small)."""
    total = torch.zeros((), device=outputs[0].device)
    for target, output in zip(targets, outputs):
        target, output = target.detach().float(), output.float()
        with torch.no_grad():
            distance = 1 - F.cosine_similarity(target, output, dim=1).unsqueeze(1)
            k = max(1, int(distance.numel() * (1 - p)))
            threshold = torch.topk(distance.reshape(-1), k=k)[0][-1]
            easy = distance < threshold
        total = total + (1 - F.cosine_similarity(target.flatten(1), output.flatten(1), dim=1)).mean()
        if output.requires_grad:
            output.register_hook(lambda grad, easy=easy: torch.where(easy, grad * factor, grad))
    return total / len(targets)


def dinomaly_hard_fraction(iteration: int, final: float = 0.9, ramp_iters: int = 1000) -> float:
    """The fraction ``p`` of easy points at ``iteration``: ``min(final * iteration / ramp_iters, final)``."""
    return min(final * iteration / ramp_iters, final)
