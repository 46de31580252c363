"""StableAdamW as Dinomaly releases it (guojiajeremy/Dinomaly ``optimizers/StableAdamW.py``).

Written here because no maintained package implements the released update (checked 2026-12-02): timm 1.0.31
has no StableAdamW; torch-optimi 0.3.3's ``StableAdamW`` has no AMSGrad, debiases β instead of correcting
the moments and scales the step by the RMS of ``g² / max(v, eps²)``, while the released one (an AdamW
fork) divides the step by ``max(1, RMS(g / denom) / clip_threshold)`` where
``denom = sqrt(v̂ or max v̂) / sqrt(1 - β2^t) + eps``.
``tests/test_dinomaly.py`` checks one step against numbers recorded from the released class.
"""

from __future__ import annotations

import math

import torch
from torch.optim.optimizer import Optimizer


class StableAdamW(Optimizer):
    """AdamW (decoupled weight decay, optional AMSGrad) whose step of each parameter tensor is divided by
    ``max(1, RMS(grad / denom) / clip_threshold)``, as released. The per-tensor scale stays on the
    device (no host synchronisation per tensor)."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        clip_threshold: float = 1.0,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or clip_threshold <= 0:
            raise ValueError(
                f"StableAdamW needs lr, eps, weight_decay >= 0 and clip_threshold > 0, got lr={lr}, eps={eps}, "
                f"weight_decay={weight_decay}, clip_threshold={clip_threshold}"
            )
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"StableAdamW betas must be in [0, 1), got {betas}")
        defaults = dict(
            lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, clip_threshold=clip_threshold
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("StableAdamW does not support sparse gradients")
                p.mul_(1 - group["lr"] * group["weight_decay"])
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                bias_correction1 = 1 - beta1 ** state["step"]
                bias_correction2 = 1 - beta2 ** state["step"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                if group["amsgrad"]:
                    torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
                    second = state["max_exp_avg_sq"]
                else:
                    second = exp_avg_sq
                denom = (second.sqrt() / math.sqrt(bias_correction2)).add_(group["eps"])
                ratio = grad / denom
                rms = ratio.norm(2) / math.sqrt(ratio.numel())
                scale = torch.clamp(rms / group["clip_threshold"], min=1.0)
                p.addcdiv_(exp_avg, denom * scale, value=-group["lr"] / bias_correction1)
        return loss


def warm_cosine_lr(iteration: int, total_iters: int, base: float, final: float, warmup_iters: int) -> float:
    """Dinomaly's ``utils.WarmCosineScheduler`` as the learning rate of ``iteration`` (0-based: the value
    the released scheduler has set when that iteration's ``optimizer.step()`` runs): linear from 0 to
    ``base`` over ``warmup_iters`` (``np.linspace``, so iteration 0 has lr 0), then a cosine from ``base``
    to ``final`` over the remaining iterations, ``final`` after ``total_iters``."""
    if iteration >= total_iters:
        return final
    if iteration < warmup_iters:
        return base * iteration / (warmup_iters - 1) if warmup_iters > 1 else 0.0
    steps = total_iters - warmup_iters
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * (iteration - warmup_iters) / steps))
