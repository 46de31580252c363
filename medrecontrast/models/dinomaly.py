"""Dinomaly (Guo et al., CVPR 2025): a frozen DINOv2 encoder, a noisy bottleneck and a linear-attention
decoder that reconstructs groups of the encoder's middle layers.

As guojiajeremy/Dinomaly releases it (``models/uad.py`` ``ViTill``, ``models/vision_transformer.py``,
``dinomaly_{mvtec,visa}_{sep,uni}.py``, ``utils.py``, ``optimizers/StableAdamW.py``):

- encoder: DINOv2 with 4 registers (ViT-S/14, ViT-B/14 default, ViT-L/14), frozen, built with timm
  (``vit_*_patch14_reg4_dinov2``) at 518 px so that Meta's position grid (37 x 37) is kept, and
  interpolated at run time as DINOv2's ``interpolate_pos_encoding`` does (bicubic, ``scale_factor``
  with offset 0.1, no antialias; timm's own resampling uses a size and antialias, which differs);
  blocks 2-9 (ViT-L: 4, 6, ..., 18) give the 8 middle features;
- bottleneck: their mean through ``bMlp`` (D -> 4D -> D, GELU, dropout 0.2 on input, hidden and output);
- decoder: 8 ViT blocks with ``LinearAttention2`` (elu + 1 feature map), LayerNorm eps 1e-8; the
  decoder's outputs reversed; loose reconstruction: encoder and decoder features averaged in two groups
  ``[[0..3], [4..7]]``, class and register tokens dropped after the averaging (``remove_class_token=False``);
- initialisation: every bottleneck and decoder Linear ``trunc_normal_(std=0.01, a=-0.03, b=0.03)``,
  bias 0, LayerNorm 1 and 0;
- loss ``global_cosine_hm_percent`` with ``p = min(0.9 * it / 1000, 0.9)`` and factor 0.1; StableAdamW
  (lr 2e-3, betas (0.9, 0.999), weight decay 1e-4, AMSGrad, eps 1e-8 per class / 1e-10 unified) with
  ``WarmCosineScheduler`` (100 warm-up iterations from 0, cosine to 2e-4), gradient clipping at norm
  0.1, batch 16 with the last incomplete batch dropped, 5,000 iterations per class / 10,000 unified;
- images resized to 448 and centre-cropped to 392, normalised with ImageNet's mean and std;
- map: the mean over the two groups of 1 - cos (over channels) per patch, upsampled bilinearly
  (align_corners) to the input, resized to 256 (``resize_mask=256``), smoothed by a 5 x 5 Gaussian
  (σ = 4, zero padding); image score: the mean of the top 1 % of that 256 x 256 map.

Medical tasks have no recipe of the authors': they get the per-class (``sep``) recipe. The map a run
evaluates is the 256 x 256 map resized back to the input (the suite's pixel metrics are at the input
resolution; the released ones at 256 against masks resized by nearest neighbour).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from medrecontrast.compute import load_torch_file
from medrecontrast.engine import (
    TrainingConfig,
    TrainingResult,
    apply_schedule,
    autocast,
    resolve_iterations,
    train_loop,
)
from medrecontrast.errors import UserInputError, require_choice, require_positive_ints
from medrecontrast.losses import dinomaly_hard_fraction, global_cosine_hm_percent
from medrecontrast.models.anomaly_map import anomaly_map, gaussian_blur_kernel, image_scores
from medrecontrast.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightsUnavailableError,
    _timm,
    resolve_weights_path,
)
from medrecontrast.models.base import Detector, MethodCard, register_detector, state_bytes
from medrecontrast.optim import StableAdamW, warm_cosine_lr

PATCH_SIZE = 14
# encoder name -> (timm model, Meta's released checkpoint, the ViTill target layers); dinomaly_mvtec_sep.py:95-114
ENCODERS = {
    "dinov2_vits14_reg": (
        "vit_small_patch14_reg4_dinov2",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_reg4_pretrain.pth",
        (2, 3, 4, 5, 6, 7, 8, 9),
    ),
    "dinov2_vitb14_reg": (
        "vit_base_patch14_reg4_dinov2",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_reg4_pretrain.pth",
        (2, 3, 4, 5, 6, 7, 8, 9),
    ),
    "dinov2_vitl14_reg": (
        "vit_large_patch14_reg4_dinov2",
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_pretrain.pth",
        (4, 6, 8, 10, 12, 14, 16, 18),
    ),
}
FUSE_GROUPS = ((0, 1, 2, 3), (4, 5, 6, 7))  # fuse_layer_encoder = fuse_layer_decoder, dinomaly_mvtec_sep.py:100-101
DECODER_DEPTH = 8  # dinomaly_mvtec_sep.py:122
PAPER_SIZES = {"image_size": 448, "crop_size": 392}  # dinomaly_mvtec_sep.py:81-82
SEP_ITERS, UNI_ITERS = 5000, 10000  # dinomaly_mvtec_sep.py:79, dinomaly_mvtec_uni.py:72


# --- the network ----------------------------------------------------------------------------------


class DinoV2Encoder(nn.Module):
    """A DINOv2-with-registers ViT (timm's ``vit_*_patch14_reg4_dinov2``) truncated after its last target
    block; :meth:`prepare_tokens` is DINOv2's (``[cls, 4 registers, patches]``, position embedding
    interpolated as DINOv2 does). ``forward`` is not used: :class:`ViTill` runs the blocks itself.

    Weights: Meta's released ``.pth`` (keys converted once with timm's ``checkpoint_filter_fn``), a timm
    state dict (``.pth``, ``.bin`` or ``.safetensors``), timm's download when ``pretrained`` and online,
    or none (random, for tests and the demo)."""

    def __init__(
        self,
        name: str = "dinov2_vitb14_reg",
        pretrained: bool = True,
        weights: str | os.PathLike | None = None,
        **architecture,
    ):
        super().__init__()
        timm = _timm()
        model_name, url, targets = ENCODERS[name] if name in ENCODERS else (None, None, None)
        if architecture:  # a small ViT of the same family (embed_dim, depth, num_heads; the golden tests)
            from timm.models.vision_transformer import VisionTransformer

            net = VisionTransformer(
                img_size=518,
                patch_size=PATCH_SIZE,
                reg_tokens=4,
                no_embed_class=True,
                num_classes=0,
                init_values=1e-5,
                **architecture,
            )
        else:
            net = timm.create_model(model_name, pretrained=False, num_classes=0)
        if weights is not None:
            load_dinov2_weights(net, resolve_weights_path(weights), name)
        elif pretrained and not architecture:
            _download(net, model_name, url, name)
        last = len(net.blocks) if architecture else max(targets) + 1  # ViTill runs no block after the last target
        self.patch_embed = net.patch_embed.proj  # Conv2d(3, D, 14, stride 14)
        self.cls_token, self.reg_token, self.pos_embed = net.cls_token, net.reg_token, net.pos_embed
        self.blocks = nn.ModuleList(list(net.blocks)[:last])
        self.num_register_tokens = net.reg_token.shape[1]
        self.embed_dim = net.embed_dim
        self.num_heads = net.blocks[0].attn.num_heads
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def interpolate_pos_encoding(self, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """DINOv2's rule (``dinov2/models/vision_transformer.py``): the patch grid's embeddings resized with
        ``scale_factor = (grid + 0.1) / sqrt(N)``, bicubic, no antialias."""
        count, dim = self.pos_embed.shape[1], self.pos_embed.shape[2]
        # plain ints: the grid is fixed by the input side (a traced export keeps these embeddings as constants)
        h0, w0 = int(height) // PATCH_SIZE, int(width) // PATCH_SIZE
        if h0 * w0 == count and height == width:
            return self.pos_embed.to(dtype)
        side = math.sqrt(count)
        grid = self.pos_embed.float().reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((h0 + 0.1) / side, (w0 + 0.1) / side), mode="bicubic", antialias=False)
        return grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(dtype)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> ``[cls, registers, patches]`` tokens (the class token carries its own position)."""
        x = (x.to(self.mean.dtype) - self.mean) / self.std
        height, width = x.shape[-2:]
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)
        patches = patches + self.interpolate_pos_encoding(height, width, patches.dtype)
        batch = patches.shape[0]
        return torch.cat((self.cls_token.expand(batch, -1, -1), self.reg_token.expand(batch, -1, -1), patches), dim=1)


def load_dinov2_weights(net: nn.Module, path: Path, name: str) -> None:
    """Load Meta's released DINOv2 checkpoint (``register_tokens``, ``mask_token``, the class token's
    position inside ``pos_embed``) or a timm state dict into a timm DINOv2 ViT; anything that does not fit
    is an error naming the file."""
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {path} does not exist (expected Meta's {Path(ENCODERS[name][1]).name} for {name}, or a "
            "timm state dict)."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_torch_file(path, "weights file", WeightsUnavailableError)
    except WeightsUnavailableError:
        raise
    except Exception as exc:
        raise WeightsUnavailableError(f"cannot read weights file {path} ({type(exc).__name__}: {exc}).") from exc
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    if "register_tokens" in state or "mask_token" in state:  # Meta's layout: timm's own conversion
        from timm.models.vision_transformer import checkpoint_filter_fn

        grid = tuple(state["pos_embed"].shape) if "pos_embed" in state else None
        expected = (1, net.pos_embed.shape[1] + 1, net.pos_embed.shape[2])  # Meta's holds the class token's too
        if grid != expected:  # timm would resample another grid silently; the released load_state_dict refuses it
            raise WeightsUnavailableError(
                f"weights file {path} does not fit {name}: pos_embed is {grid}, expected {expected} (DINOv2 at 518 px)."
            )
        try:
            state = checkpoint_filter_fn(dict(state), net)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"weights file {path} does not fit {name} ({type(exc).__name__}: {exc})."
            ) from exc
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    unexpected = [k for k in state if k not in own]
    if missing or wrong or unexpected:
        first = (missing or wrong or unexpected)[0]
        raise WeightsUnavailableError(
            f"weights file {path} does not fit {name}: {len(missing)} tensors missing, {len(wrong)} of another "
            f"shape, {len(unexpected)} unknown, e.g. {first}."
        )
    net.load_state_dict({k: state[k] for k in own})


def _download(net: nn.Module, model_name: str, url: str, name: str) -> None:
    try:
        source = _timm().create_model(model_name, pretrained=True, num_classes=0)
    except Exception as exc:  # offline, no cache
        raise WeightsUnavailableError(
            f"cannot load the DINOv2 weights of {name} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). timm "
            "downloads them from the Hugging Face hub into its cache ($HF_HOME); without internet, download Meta's "
            f"{url} elsewhere and pass it as weights=PATH, or use pretrained=False only if you want random weights."
        ) from exc
    net.load_state_dict(source.state_dict())


class BottleneckMlp(nn.Module):
    """``bMlp``: dropout on the input, the hidden layer and the output (the "noisy bottleneck")."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(self.drop(x))))))


class LinearAttention(nn.Module):
    """``LinearAttention2``: softmax replaced by the feature map elu(x) + 1, computed as φ(q)(φ(k)ᵀv)
    normalised by φ(q)·Σφ(k); no attention dropout used (``attn_drop`` kept for the parameter names)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = F.elu(qkv[0]) + 1.0, F.elu(qkv[1]) + 1.0, qkv[2]
        kv = torch.einsum("...sd,...se->...de", k, v)
        z = 1.0 / torch.einsum("...sd,...d->...s", q, k.sum(dim=-2))
        x = torch.einsum("...de,...sd,...s->...se", kv, q, z)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(batch, tokens, dim)))


class DecoderMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DecoderBlock(nn.Module):
    """``Block(dim, heads, mlp_ratio=4, qkv_bias=True, norm_layer=LayerNorm(eps=1e-8), attn=LinearAttention2)``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-8)
        self.attn = LinearAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-8)
        self.mlp = DecoderMlp(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTill(nn.Module):
    """The released ``ViTill``: ``forward(x)`` gives the two groups' ``(encoder, decoder)`` feature maps,
    each ``(B, D, h, w)``. Parameter names follow the released model (``bottleneck.0.fc1.weight``,
    ``decoder.3.attn.qkv.weight``), so a state dict of theirs loads by name."""

    def __init__(
        self,
        encoder: DinoV2Encoder,
        target_layers: tuple[int, ...],
        bottleneck_dropout: float = 0.2,
        decoder_depth: int = DECODER_DEPTH,
        groups: tuple[tuple[int, ...], ...] = FUSE_GROUPS,
    ):
        super().__init__()
        dim, heads = encoder.embed_dim, encoder.num_heads
        self.encoder = encoder
        self.target_layers = tuple(target_layers)
        self.groups = groups
        self.bottleneck = nn.ModuleList([BottleneckMlp(dim, dim * 4, bottleneck_dropout)])
        self.decoder = nn.ModuleList([DecoderBlock(dim, heads) for _ in range(decoder_depth)])
        for module in self.trainable().modules():  # dinomaly_mvtec_sep.py:134-141
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.01, a=-0.03, b=0.03)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.LayerNorm):
                nn.init.constant_(module.bias, 0)
                nn.init.constant_(module.weight, 1.0)

    def trainable(self) -> nn.ModuleList:
        return nn.ModuleList([self.bottleneck, self.decoder])

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        x = self.encoder.prepare_tokens(x)
        features = []
        with torch.no_grad():  # the encoder is frozen (encoder_require_grad_layer = [])
            for index, block in enumerate(self.encoder.blocks[: max(self.target_layers) + 1]):
                x = block(x)
                if index in self.target_layers:
                    features.append(x)
        prefix = 1 + self.encoder.num_register_tokens
        side = int(math.sqrt(features[0].shape[1] - prefix))
        x = torch.stack(features, dim=1).mean(dim=1)
        for block in self.bottleneck:
            x = block(x)
        decoded = []
        for block in self.decoder:
            x = block(x)
            decoded.append(x)
        decoded = decoded[::-1]
        batch = x.shape[0]

        def fuse(tokens: list[torch.Tensor], group) -> torch.Tensor:
            fused = torch.stack([tokens[i] for i in group], dim=1).mean(dim=1)[:, prefix:, :]
            return fused.permute(0, 2, 1).reshape(batch, -1, side, side).contiguous()

        return [fuse(features, g) for g in self.groups], [fuse(decoded, g) for g in self.groups]


class DinomalyScorer(nn.Module):
    """``forward(images) -> (scores, maps)``: ViTill (under ``amp``'s autocast), the mean of the groups' 1 - cos
    maps (``cal_anomaly_maps``, float32), resized to ``eval_size``, the 5 x 5 Gaussian, the top-1 % score, and
    the map resized back to the input."""

    def __init__(self, model: ViTill, *, sigma: float, blur_kernel: int, eval_size: int | None, amp: bool | str):
        super().__init__()
        self.model, self.sigma, self.blur_kernel, self.eval_size, self.amp = model, sigma, blur_kernel, eval_size, amp

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = tuple(images.shape[-2:])
        with autocast(images.device, self.amp):
            targets, outputs = self.model(images)
        maps = anomaly_map(targets, outputs, size, reduction="mean")
        if self.eval_size is not None:
            maps = F.interpolate(maps, size=(self.eval_size, self.eval_size), mode="bilinear", align_corners=False)
        maps = gaussian_blur_kernel(maps, self.sigma, self.blur_kernel)
        scores = image_scores(maps, "top1")
        if maps.shape[-2:] != size:
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        return scores, maps[:, 0]


# --- the detector ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class DinomalyConfig(TrainingConfig):
    """Dinomaly's options (``help(Dinomaly)`` lists every one, typed); the defaults are the per-class
    (``sep``) scripts', the unified scripts' differences come from :meth:`Dinomaly.task_options`."""

    encoder: str = "dinov2_vitb14_reg"
    pretrained: bool = True
    weights: str | None = None  # Meta's DINOv2 .pth (or a timm state dict) of the encoder
    iters: int | None = SEP_ITERS
    batch_size: int = 16
    drop_last: bool = True  # DataLoader(..., drop_last=True), dinomaly_mvtec_sep.py:91-92
    grad_clip_norm: float | None = 0.1  # clip_grad_norm(trainable.parameters(), max_norm=0.1), :167
    # StableAdamW and WarmCosineScheduler, dinomaly_mvtec_sep.py:143-146
    lr: float = 2e-3
    lr_final: float = 2e-4
    warmup_iters: int = 100
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    amsgrad: bool = True
    adam_eps: float = 1e-8  # 1e-10 in the unified scripts
    clip_threshold: float = 1.0  # StableAdamW's default
    # global_cosine_hm_percent, dinomaly_mvtec_sep.py:161-163
    hard_fraction: float = 0.9
    hard_fraction_ramp: int = 1000
    hard_mining_factor: float = 0.1
    bottleneck_dropout: float = 0.2
    # evaluation_batch(max_ratio=0.01, resize_mask=256), dinomaly_mvtec_sep.py:174; null: the input size
    eval_size: int | None = 256
    sigma: float = 4.0
    blur_kernel: int = 5

    def __post_init__(self):
        super().__post_init__()
        require_choice("encoder", self.encoder, tuple(ENCODERS))
        require_positive_ints(self, "blur_kernel", "hard_fraction_ramp")
        if self.eval_size is not None:
            require_positive_ints(self, "eval_size")
        if self.blur_kernel % 2 == 0:
            raise UserInputError(f"blur_kernel must be odd, got {self.blur_kernel}")
        if not 0 <= self.hard_fraction < 1:
            raise UserInputError(f"hard_fraction must be in [0, 1), got {self.hard_fraction!r}")
        if not 0 <= self.bottleneck_dropout < 1:
            raise UserInputError(f"bottleneck_dropout must be in [0, 1), got {self.bottleneck_dropout!r}")
        if not 0 <= self.warmup_iters:
            raise UserInputError(f"warmup_iters must be >= 0, got {self.warmup_iters!r}")
        for key in ("lr", "lr_final", "clip_threshold"):
            if not getattr(self, key) > 0:
                raise UserInputError(f"{key} must be positive, got {getattr(self, key)!r}")
        if self.lr_milestone is not None:
            raise UserInputError(
                "lr_milestone: Dinomaly uses its warm-up and cosine schedule (lr, lr_final, "
                "warmup_iters); leave lr_milestone null"
            )


# dinomaly_{mvtec,visa}_uni.py: what the unified multi-class setting changes
UNIFIED = {"iters": UNI_ITERS, "adam_eps": 1e-10}
# tiny: a ViT-S from random weights at 112 px (8 x 8 patches), a short schedule (seconds per run, for tests)
TINY = {"encoder": "dinov2_vits14_reg", "iters": 80, "batch_size": 8, "warmup_iters": 10, "hard_fraction_ramp": 16}
# lite: ViT-S with Meta's weights (timm downloads them once; offline, pass weights=PATH) at 224 px
LITE = {
    "encoder": "dinov2_vits14_reg",
    "weights": None,
    "iters": 100,
    "batch_size": 16,
    "warmup_iters": 10,
    "hard_fraction_ramp": 20,
}
# demo: the lite weights (the same download, or weights=PATH) at 112 px with the demo's shorter schedule
DEMO = {**LITE, "iters": 40, "batch_size": 8, "hard_fraction_ramp": 16}


@register_detector("dinomaly")
class Dinomaly(Detector):
    Config = DinomalyConfig
    card = MethodCard(
        display_name="Dinomaly",
        citation=(
            "Guo et al., Dinomaly: The less is more philosophy in multi-class unsupervised anomaly detection, "
            "CVPR 2025; "
            "code github.com/guojiajeremy/Dinomaly"
        ),
        order=3,
        default_sweep=False,  # its paper profile needs DINOv2 weights: run it by naming it (--methods dinomaly)
        profile_options={"demo": DEMO, "lite": LITE, "tiny": TINY},
        profile_sizes={
            "paper": PAPER_SIZES,
            "demo": {"image_size": 112, "crop_size": None},
            "lite": {"image_size": 224, "crop_size": None},
            "tiny": {"image_size": 112, "crop_size": None},
        },
        random_weights_caveat=(
            "**Dinomaly from random weights says nothing about the method:** it reconstructs a frozen DINOv2 encoder's "
            "features, and a random ViT has none worth reconstructing. Real numbers need Meta's DINOv2 weights "
            "(weights=PATH or timm's download) and the paper profile."
        ),
        # Dinomaly's paper (CVPR 2025), unified multi-class setting, image AUROC in percent
        paper_results={"mvtec-unified": {"image_auroc": 99.6}, "visa-unified": {"image_auroc": 98.7}},
    )
    trains = True
    backbone_option = "encoder"

    @classmethod
    def task_options(cls, task) -> dict:
        """The unified scripts' settings for a unified task; every other task (MVTec and VisA classes, the
        medical tasks, where the authors give no recipe) gets the per-class scripts' defaults."""
        return dict(UNIFIED) if task.members else {}

    @classmethod
    def check_plan(cls, config: DinomalyConfig, *, train_images: int, input_size: int) -> None:
        """The input side must be a multiple of the patch (14): the released patch embedding drops the
        pixels beyond the last whole patch."""
        if input_size % PATCH_SIZE:
            raise UserInputError(
                f"dinomaly needs an input size that is a multiple of {PATCH_SIZE} (its ViT patch), got {input_size}; "
                f"set image_size (or crop_size) to e.g. {input_size - input_size % PATCH_SIZE or PATCH_SIZE}"
            )

    @classmethod
    def storage_estimate(cls, config: DinomalyConfig, *, train_images: int, input_size: int) -> dict:
        """model.pt holds the frozen encoder too; a checkpoint adds StableAdamW's moments (3 with AMSGrad)."""
        return state_bytes(
            lambda: ViTill(DinoV2Encoder(config.encoder, pretrained=False), ENCODERS[config.encoder][2]),
            optimizer_moments=3 if config.amsgrad else 2,
        )

    @classmethod
    def require_weights(cls, options: dict) -> None:
        if options.get("pretrained") or options.get("weights"):
            DinoV2Encoder(options["encoder"], pretrained=True, weights=options.get("weights"))

    @classmethod
    def prepare_options(cls, config: dict) -> dict:
        return apply_schedule({}, config)  # the schedule given replaces the default one

    def construct(self) -> None:
        c = self.config
        encoder = DinoV2Encoder(c.encoder, pretrained=c.pretrained, weights=c.weights)
        self.model = ViTill(encoder, ENCODERS[c.encoder][2], bottleneck_dropout=c.bottleneck_dropout).to(self.device)
        self.training_: TrainingResult | None = None
        self.iters_ = c.iters

    def learning_rate(self, iteration: int) -> float:
        c = self.config
        return warm_cosine_lr(iteration, self.iters_, c.lr, c.lr_final, c.warmup_iters)

    def training_loss(self, model: ViTill, images: torch.Tensor, iteration: int) -> torch.Tensor:
        c = self.config
        targets, outputs = model(images)
        p = dinomaly_hard_fraction(iteration, c.hard_fraction, c.hard_fraction_ramp)
        return global_cosine_hm_percent(targets, outputs, p=p, factor=c.hard_mining_factor)

    def fit(
        self,
        train: Dataset,
        *,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> "Dinomaly":
        """Train the bottleneck and decoder on normal images; ``checkpoint``/``resume`` as every trainable method."""
        c = self.config
        self.iters_ = resolve_iterations(c, len(train))
        optimizer = StableAdamW(
            self.model.trainable().parameters(),
            lr=c.lr,
            betas=c.betas,
            weight_decay=c.weight_decay,
            amsgrad=c.amsgrad,
            eps=c.adam_eps,
            clip_threshold=c.clip_threshold,
        )
        result = train_loop(
            self.model,
            {"decoder": optimizer},
            self.training_loss,
            train,
            c,
            identity={"method": self.name, "encoder": c.encoder},
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
            lr_schedule=lambda iteration: self.learning_rate(iteration) / c.lr,
        )
        self._record_training(result, c.batch_size)
        return self

    def scoring_module(self, amp: bool | str = False) -> "DinomalyScorer":
        """Pixels in [0, 1] -> ``(scores, maps)`` as one module; scoring and export run this same module."""
        c = self.config
        return DinomalyScorer(
            self.model.eval(), sigma=c.sigma, blur_kernel=c.blur_kernel, eval_size=c.eval_size, amp=amp
        )

    @torch.no_grad()
    def _score_batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scoring_module(self.config.amp)(images)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.model.eval()
