"""RD4AD's one-class bottleneck (OCBE) and reverse ResNet decoder, shared by RD4AD and ReContrast.

The decoder mirrors torchvision's ResNet block for block: :class:`DeBasicBlock` and
:class:`DeBottleneck` are its ``BasicBlock`` and ``Bottleneck`` with the strided 3x3 convolution
replaced by a 2x2 transposed convolution, and layers run from deep to shallow. For a 256 input:

* resnet18: bottleneck 512 x 8^2; decoder outputs 64 x 64^2, 128 x 32^2, 256 x 16^2
* wide_resnet50_2: bottleneck 2048 x 8^2; decoder outputs 256 x 64^2, 512 x 32^2, 1024 x 16^2

i.e. exactly the shapes of the encoder's layer1, layer2 and layer3.

ReContrast ends each decoder level in two sets of 1x1 output convolutions (with bias), one per
view (``output_conv=2`` in its ``de_resnet.py``); RD4AD has none: its decoder returns the raw
outputs of its three layers (hq-deng/RD4AD ``de_resnet.py``, ``_forward_impl``).

The bottleneck's blocks are torchvision's ``Bottleneck``/``BasicBlock``: RD4AD's ``AttnBottleneck``
(its ``resnet.py``) is the same block, its attention being commented out. RD4AD's ``BN_layer`` also
builds ``conv4``/``bn4``, which its ``forward`` never uses; they are left out here.

Initialisation as both released codes: Kaiming-normal for ``nn.Conv2d`` only, BatchNorm at
identity; ``nn.ConvTranspose2d`` keeps PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1, conv3x3


def deconv2x2(in_planes: int, out_planes: int, stride: int = 2) -> nn.ConvTranspose2d:
    """2x2 transposed convolution: the decoder's upsampling step."""
    return nn.ConvTranspose2d(in_planes, out_planes, kernel_size=2, stride=stride, bias=False)


class DeBasicBlock(nn.Module):
    """ResNet BasicBlock in reverse: upsample with a transposed conv where the encoder strided."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        upsample: nn.Module | None = None,
        base_width: int = 64,
        activation: str = "relu",
    ):
        super().__init__()
        self.conv1 = deconv2x2(inplanes, planes, stride) if stride == 2 else conv3x3(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = _activation(activation)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DeBottleneck(nn.Module):
    """ResNet Bottleneck in reverse (the middle 3x3 conv becomes a 2x2 transposed conv when upsampling)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        upsample: nn.Module | None = None,
        base_width: int = 64,
        activation: str = "relu",
    ):
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = deconv2x2(width, width, stride) if stride == 2 else conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = _activation(activation)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class OCBE(nn.Module):
    """One-class bottleneck embedding: fuse encoder layer1-3 into one compact 8x8 map.

    layer1 -> two strided 3x3 convs, layer2 -> one strided 3x3 conv, concatenated with layer3,
    then ``num_blocks`` ResNet blocks, the first with stride 2.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], num_blocks: int, base_width: int = 64):
        super().__init__()
        e = block.expansion
        self.relu = nn.ReLU(inplace=True)
        self.conv1, self.bn1 = conv3x3(64 * e, 128 * e, 2), nn.BatchNorm2d(128 * e)
        self.conv2, self.bn2 = conv3x3(128 * e, 256 * e, 2), nn.BatchNorm2d(256 * e)
        self.conv3, self.bn3 = conv3x3(128 * e, 256 * e, 2), nn.BatchNorm2d(256 * e)
        inplanes, planes = 3 * 256 * e, 512
        downsample = nn.Sequential(conv1x1(inplanes, planes * e, 2), nn.BatchNorm2d(planes * e))
        blocks = [block(inplanes, planes, 2, downsample, base_width=base_width)]
        blocks += [block(planes * e, planes, base_width=base_width) for _ in range(1, num_blocks)]
        self.bn_layer = nn.Sequential(*blocks)
        _init_weights(self)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        f1 = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(features[0]))))))
        f2 = self.relu(self.bn3(self.conv3(features[1])))
        return self.bn_layer(torch.cat([f1, f2, features[2]], dim=1)).contiguous()


class ReverseResNet(nn.Module):
    """The reverse decoder: three upsampling stages, then ``num_heads`` sets of 1x1 heads per level
    (none for RD4AD).

    ``forward(x, head)`` returns the three levels ordered like the encoder (layer1, layer2, layer3),
    through head set ``head``. ``forward(x, head=None)`` stops before the heads (the raw outputs,
    which are RD4AD's reconstructions), so that a caller can run the shared trunk once and apply
    different head sets to different rows (:meth:`apply_head`). ``activation="gelu"`` replaces
    every ReLU of the decoder, as the authors' unified multi-class scripts do.
    """

    def __init__(
        self,
        block: type[DeBasicBlock] | type[DeBottleneck],
        layers: tuple[int, int, int],
        base_width: int = 64,
        num_heads: int = 0,
        activation: str = "relu",
    ):
        super().__init__()
        self.base_width, self.activation = base_width, activation
        self.inplanes = 512 * block.expansion
        self.layer1 = self._make_layer(block, 256, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1])
        self.layer3 = self._make_layer(block, 64, layers[2])
        channels = (64 * block.expansion, 128 * block.expansion, 256 * block.expansion)
        self.heads = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(c, c, kernel_size=1, bias=True) for c in channels) for _ in range(num_heads)
        )
        _init_weights(self)

    def _make_layer(self, block, planes: int, blocks: int) -> nn.Sequential:
        upsample = nn.Sequential(
            deconv2x2(self.inplanes, planes * block.expansion), nn.BatchNorm2d(planes * block.expansion)
        )
        layers = [block(self.inplanes, planes, 2, upsample, base_width=self.base_width, activation=self.activation)]
        self.inplanes = planes * block.expansion
        layers += [
            block(self.inplanes, planes, base_width=self.base_width, activation=self.activation)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, head: int | None = 0) -> list[torch.Tensor]:
        f3 = self.layer1(x)
        f2 = self.layer2(f3)
        f1 = self.layer3(f2)
        return [f1, f2, f3] if head is None else self.apply_head([f1, f2, f3], head)

    def apply_head(self, features: list[torch.Tensor], head: int) -> list[torch.Tensor]:
        return [conv(f) for conv, f in zip(self.heads[head], features)]


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"decoder activation must be 'relu' or 'gelu', got {name!r}")


def _init_weights(module: nn.Module) -> None:
    """As RD4AD's and ReContrast's ``de_resnet.py``/``resnet.py``: Kaiming-normal for ``nn.Conv2d``
    only (``ConvTranspose2d`` is not a ``Conv2d`` subclass and keeps PyTorch's default), BatchNorm
    at identity."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


# --- the generic reverse decoder for any encoder (an extension of the suite, not the authors') ---------


class FusionBottleneck(nn.Module):
    """OCBE for any encoder whose three levels are at strides 8, 16 and 32 (a timm CNN): the two
    shallower levels are brought to the deepest one's grid by strided 3x3 convolutions (two and one,
    as OCBE does), concatenated with it and fused by ``num_blocks`` ResNet ``BasicBlock``s into
    ``width`` channels. Unlike the authors' OCBE it does not halve the grid once more (a 224-px input's
    1/32 grid, 7 x 7, cannot be halved), so the compression is in channels only."""

    def __init__(self, channels: tuple[int, int, int], width: int, num_blocks: int = 2):
        super().__init__()
        c1, c2, c3 = channels
        self.down1 = nn.Sequential(
            conv3x3(c1, c2, 2),
            nn.BatchNorm2d(c2),
            nn.ReLU(inplace=True),
            conv3x3(c2, c3, 2),
            nn.BatchNorm2d(c3),
            nn.ReLU(inplace=True),
        )
        self.down2 = nn.Sequential(conv3x3(c2, c3, 2), nn.BatchNorm2d(c3), nn.ReLU(inplace=True))
        inplanes = 3 * c3
        downsample = nn.Sequential(conv1x1(inplanes, width), nn.BatchNorm2d(width))
        blocks = [BasicBlock(inplanes, width, 1, downsample)] + [BasicBlock(width, width) for _ in range(1, num_blocks)]
        self.blocks = nn.Sequential(*blocks)
        _init_weights(self)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        fused = torch.cat([self.down1(features[0]), self.down2(features[1]), features[2]], dim=1)
        return self.blocks(fused).contiguous()


class ReverseDecoder(nn.Module):
    """The generic reverse decoder: from the bottleneck's grid (stride 32) back to the encoder's three
    levels (strides 32, 16, 8, with their channels), ``num_blocks`` :class:`DeBasicBlock` per level,
    the first of the two shallower levels upsampling by a 2x2 transposed convolution; then
    ``num_heads`` sets of 1x1 heads per level, as :class:`ReverseResNet` (same ``forward``/``apply_head``)."""

    def __init__(
        self,
        width: int,
        channels: tuple[int, int, int],
        num_blocks: int = 2,
        num_heads: int = 0,
        activation: str = "relu",
    ):
        super().__init__()
        c1, c2, c3 = channels
        self.layer1 = self._stage(width, c3, 1, num_blocks, activation)
        self.layer2 = self._stage(c3, c2, 2, num_blocks, activation)
        self.layer3 = self._stage(c2, c1, 2, num_blocks, activation)
        self.heads = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(c, c, kernel_size=1, bias=True) for c in channels) for _ in range(num_heads)
        )
        _init_weights(self)

    @staticmethod
    def _stage(inplanes: int, planes: int, stride: int, blocks: int, activation: str) -> nn.Sequential:
        resize = deconv2x2(inplanes, planes) if stride == 2 else conv1x1(inplanes, planes)
        first = DeBasicBlock(
            inplanes, planes, stride, nn.Sequential(resize, nn.BatchNorm2d(planes)), activation=activation
        )
        return nn.Sequential(first, *(DeBasicBlock(planes, planes, activation=activation) for _ in range(1, blocks)))

    forward = ReverseResNet.forward
    apply_head = ReverseResNet.apply_head


GENERIC_DECODER = (
    "generic reverse decoder (an extension of this suite: the authors built theirs for ResNets only; a fusion "
    "bottleneck and upsampling residual blocks sized from the encoder's channels)"
)


def bottleneck_and_decoder(
    backbone: str, num_heads: int, activation: str = "relu", channels: tuple[int, int, int] | None = None
) -> tuple[nn.Module, nn.Module]:
    """The bottleneck and reverse decoder that match an encoder from :mod:`medrecontrast.models.backbones`:
    the authors' OCBE and reverse ResNet for the two ResNets, else (a timm CNN, whose level ``channels``
    are given) :class:`FusionBottleneck` and :class:`ReverseDecoder`, :data:`GENERIC_DECODER`."""
    if backbone not in ("resnet18", "wide_resnet50_2"):
        if channels is None:
            raise ValueError(f"no reverse decoder for backbone '{backbone}' without its encoder's channels")
        width = channels[2]
        return FusionBottleneck(tuple(channels), width), ReverseDecoder(
            width, tuple(channels), num_heads=num_heads, activation=activation
        )
    if backbone == "resnet18":
        return OCBE(BasicBlock, 2), ReverseResNet(DeBasicBlock, (2, 2, 2), num_heads=num_heads, activation=activation)
    if backbone == "wide_resnet50_2":
        return OCBE(Bottleneck, 3, base_width=128), ReverseResNet(
            DeBottleneck, (3, 4, 6), base_width=128, num_heads=num_heads, activation=activation
        )
    raise ValueError(f"no reverse decoder for backbone '{backbone}'")
