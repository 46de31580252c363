"""The convolutional autoencoders of MedIAnomaly (caiyu6666/MedIAnomaly, MIT, ``reconstruction/networks``).

One encoder-bottleneck-decoder, as released: four encoder blocks (a 4x4 stride-2 convolution, BatchNorm,
ReLU; ``base_width`` x 1, 2, 4, 4 channels) take a ``S`` px image to ``S/16``; a fully connected bottleneck
(flatten -> ``hidden_num`` -> BatchNorm1d -> ReLU -> ``latent_size``, and back) and four decoder blocks
(4x4 stride-2 transposed convolutions; the last without BatchNorm and ReLU) give the reconstruction. No
convolution has a bias. The variants change the bottleneck (VAE: mean and log-variance, one sample;
MemAE: a memory of ``mem_size`` items addressed by the latent, with hard shrinkage) or the output (AE-U: a
second channel per input channel, the log-variance of each pixel).

Every module and parameter has the released name (``en_block1.model.0.weight``,
``bottle_neck.linear_enc.0.weight``, ``bottle_neck.memory_module.memory.weight``, ...), so a released
``model.pt`` loads as it is and the golden tests copy weights by name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DOWNSAMPLINGS = 4  # the encoder halves the side four times: the input side must be a multiple of 16
SIZE_MULTIPLE = 2**DOWNSAMPLINGS


def _conv3x3(inplanes: int, planes: int) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=1, padding=1, bias=False)


class BasicBlock(nn.Module):
    """A stride-2 (down or up) 4x4 convolution, BatchNorm and ReLU, then ``num_layers - 1`` 3x3 ones (placed
    before the upsampling in a decoder block, as released); ``last_layer`` drops the final BatchNorm and ReLU."""

    def __init__(self, inplanes, planes, num_layers, downsample=False, upsample=False, last_layer=False):
        super().__init__()
        if downsample and upsample:
            raise ValueError("a block samples down or up, not both")
        if downsample:
            first = nn.Conv2d(inplanes, planes, kernel_size=4, stride=2, padding=1, bias=False)
        elif upsample:
            first = nn.ConvTranspose2d(inplanes, planes, kernel_size=4, stride=2, padding=1, bias=False)
        else:
            first = _conv3x3(inplanes, planes)
        layers: list[nn.Module] = [first, nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]
        for _ in range(1, num_layers):
            if upsample:
                layers = [_conv3x3(inplanes, inplanes), nn.BatchNorm2d(inplanes), nn.ReLU(inplace=True), *layers]
            else:
                layers = [*layers, _conv3x3(planes, planes), nn.BatchNorm2d(planes), nn.ReLU(inplace=True)]
        if last_layer:
            layers = layers[:-2]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class BottleNeck(nn.Module):
    """Flatten, fully connected down to the latent and back up to the feature map."""

    def __init__(self, in_planes: int, feature_size: int, mid_num: int = 2048, latent_size: int = 16, code: int = 1):
        super().__init__()
        self.in_planes, self.feature_size = in_planes, feature_size
        flat = in_planes * feature_size * feature_size
        self.linear_enc = nn.Sequential(
            nn.Linear(flat, mid_num), nn.BatchNorm1d(mid_num), nn.ReLU(True), nn.Linear(mid_num, code * latent_size)
        )
        self.linear_dec = nn.Sequential(
            nn.Linear(latent_size, mid_num), nn.BatchNorm1d(mid_num), nn.ReLU(True), nn.Linear(mid_num, flat)
        )

    def unflatten(self, out: torch.Tensor) -> torch.Tensor:
        return out.view(out.size(0), self.in_planes, self.feature_size, self.feature_size)

    def forward(self, x: torch.Tensor) -> dict:
        z = self.linear_enc(x.flatten(1))
        return {"out": self.unflatten(self.linear_dec(z)), "z": z}


class VaeBottleNeck(BottleNeck):
    """The encoder gives a mean and a log-variance; the decoder reads one sample ``mu + eps * exp(log_var / 2)``.

    The released network samples in training *and* evaluation (``reparameterize`` has no eval branch), so a
    VAE's scores are random; ``eps`` gives the draws (the detector's scoring takes them from its own seeded stream,
    so that scoring is repeatable, and an exported file takes them as an input); without it they come from torch's
    global stream (training, as released)."""

    def __init__(self, in_planes: int, feature_size: int, mid_num: int = 2048, latent_size: int = 16):
        super().__init__(in_planes, feature_size, mid_num, latent_size, code=2)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> dict:
        mu, log_var = self.linear_enc(x.flatten(1)).chunk(2, dim=1)
        std = torch.exp(0.5 * log_var)
        if eps is None:
            eps = torch.randn_like(std)
        z = eps.to(std.dtype) * std + mu
        return {"out": self.unflatten(self.linear_dec(z)), "mu": mu, "log_var": log_var}


def hard_shrink_relu(x: torch.Tensor, lambd: float = 0.0, epsilon: float = 1e-12) -> torch.Tensor:
    """MemAE's shrinkage: ``relu(x - λ) * x / (|x - λ| + ε)`` (entries below λ become 0)."""
    return F.relu(x - lambd) * x / (torch.abs(x - lambd) + epsilon)


class MemoryUnit(nn.Module):
    """``mem_dim`` learned items of ``fea_dim``; a query is replaced by its softmax-attention (shrunk and
    re-normalised) mixture of them. Initialised uniform in ±1/sqrt(fea_dim), as released."""

    def __init__(self, mem_dim: int, fea_dim: int, shrink_thres: float = 0.0025):
        super().__init__()
        self.mem_dim, self.fea_dim, self.shrink_thres = mem_dim, fea_dim, shrink_thres
        self.weight = nn.Parameter(torch.empty(mem_dim, fea_dim))
        bound = 1.0 / math.sqrt(fea_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, query: torch.Tensor) -> dict:
        att = F.softmax(F.linear(query, self.weight), dim=1)
        if self.shrink_thres > 0:
            att = F.normalize(hard_shrink_relu(att, lambd=self.shrink_thres), p=1, dim=1)
        return {"output": F.linear(att, self.weight.t()), "att": att}


class MemModule(nn.Module):
    """The memory over a batch of latent vectors (the bottleneck's latent is ``(N, C)``: one query per image)."""

    def __init__(self, mem_dim: int, fea_dim: int, shrink_thres: float = 0.0025):
        super().__init__()
        self.memory = MemoryUnit(mem_dim, fea_dim, shrink_thres)

    def forward(self, x: torch.Tensor) -> dict:
        if x.dim() != 2:
            raise ValueError(f"the memory addresses (N, C) latent vectors, got shape {tuple(x.shape)}")
        return self.memory(x.contiguous())


class MemBottleNeck(BottleNeck):
    def __init__(self, in_planes, feature_size, mid_num=2048, latent_size=16, mem_size=25, shrink_thres=0.0025):
        super().__init__(in_planes, feature_size, mid_num, latent_size)
        self.memory_module = MemModule(mem_dim=mem_size, fea_dim=latent_size, shrink_thres=shrink_thres)

    def forward(self, x: torch.Tensor) -> dict:
        z = self.linear_enc(x.flatten(1))
        memory = self.memory_module(z)
        return {
            "out": self.unflatten(self.linear_dec(memory["output"])),
            "z": z,
            "z_hat": memory["output"],
            "att": memory["att"],
        }


class AE(nn.Module):
    """MedIAnomaly's AE (``networks/ae.py``); ``forward`` returns ``{"x_hat", ...}`` plus what the variant's
    bottleneck gives (``z``; ``mu`` and ``log_var``; ``att``) and AE-U's ``log_var`` map."""

    def __init__(
        self,
        input_size: int = 64,
        in_planes: int = 1,
        base_width: int = 16,
        expansion: int = 1,
        mid_num: int = 2048,
        latent_size: int = 16,
        en_num_layers: int = 1,
        de_num_layers: int = 1,
        *,
        bottleneck: str = "ae",
        mem_size: int = 25,
        shrink_thres: float = 0.0025,
        uncertainty: bool = False,
    ):
        super().__init__()
        if input_size % SIZE_MULTIPLE:
            raise ValueError(f"the input side must be a multiple of {SIZE_MULTIPLE}, got {input_size}")
        w = base_width * expansion
        self.fm = input_size // SIZE_MULTIPLE
        self.uncertainty = uncertainty
        self.en_block1 = BasicBlock(in_planes, w, en_num_layers, downsample=True)
        self.en_block2 = BasicBlock(w, 2 * w, en_num_layers, downsample=True)
        self.en_block3 = BasicBlock(2 * w, 4 * w, en_num_layers, downsample=True)
        self.en_block4 = BasicBlock(4 * w, 4 * w, en_num_layers, downsample=True)
        if bottleneck == "ae":
            self.bottle_neck = BottleNeck(4 * w, self.fm, mid_num, latent_size)
        elif bottleneck == "vae":
            self.bottle_neck = VaeBottleNeck(4 * w, self.fm, mid_num, latent_size)
        elif bottleneck == "memae":
            self.bottle_neck = MemBottleNeck(4 * w, self.fm, mid_num, latent_size, mem_size, shrink_thres)
        else:
            raise ValueError(f"unknown bottleneck {bottleneck!r}")
        self.de_block1 = BasicBlock(4 * w, 4 * w, de_num_layers, upsample=True)
        self.de_block2 = BasicBlock(4 * w, 2 * w, de_num_layers, upsample=True)
        self.de_block3 = BasicBlock(2 * w, w, de_num_layers, upsample=True)
        out_planes = 2 * in_planes if uncertainty else in_planes  # AE-U: reconstruction and log-variance
        self.de_block4 = BasicBlock(w, out_planes, de_num_layers, upsample=True, last_layer=True)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> dict:
        """``eps``: a VAE's draws (``(N, latent_size)``); refused for the other bottlenecks."""
        en4 = self.en_block4(self.en_block3(self.en_block2(self.en_block1(x))))
        if eps is not None and not isinstance(self.bottle_neck, VaeBottleNeck):
            raise ValueError("only a VAE's bottleneck takes random draws (eps)")
        bottle = self.bottle_neck(en4) if eps is None else self.bottle_neck(en4, eps)
        out = self.de_block4(self.de_block3(self.de_block2(self.de_block1(bottle.pop("out")))))
        if self.uncertainty:
            x_hat, log_var = out.chunk(2, 1)
            return {"x_hat": x_hat, "log_var": log_var, **bottle}
        return {"x_hat": out, **bottle}
