"""Feature and reconstruction shapes of both backbones, at 256 px and ISIC's 224 px; parameter counts and
initialisation against the released code."""

import math

import pytest
import torch

from medrecontrast.models.backbones import ResNetEncoder
from medrecontrast.models.reverse_distillation import ReverseDistillationNet

CHANNELS = {"resnet18": (64, 128, 256), "wide_resnet50_2": (256, 512, 1024)}
BOTTLENECK = {"resnet18": 512, "wide_resnet50_2": 2048}


@pytest.mark.parametrize("backbone", ["resnet18", "wide_resnet50_2"])
@pytest.mark.parametrize("size", [256, 224])
def test_every_feature_and_reconstruction(backbone, size):
    torch.manual_seed(0)
    net = ReverseDistillationNet(backbone, pretrained=False).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        features = net.encoder(x)
        code = net.bottleneck(features)
        targets, outputs = net(x)
    expected = [(c, size // s, size // s) for c, s in zip(CHANNELS[backbone], (4, 8, 16))]
    assert [tuple(f.shape[1:]) for f in features] == expected
    assert tuple(code.shape[1:]) == (BOTTLENECK[backbone], size // 32, size // 32)
    assert len(targets) == len(outputs) == 6
    assert [tuple(t.shape[1:]) for t in targets] == expected * 2
    assert [tuple(o.shape[1:]) for o in outputs] == expected * 2


def test_one_view_network_has_no_output_heads():
    """RD4AD's de_resnet returns its layers' raw outputs: no 1x1 head set (de_resnet.py:260 returns [feature_c,
    feature_b, feature_a]; docs/tasks.md, "Paper fidelity")."""
    net = ReverseDistillationNet("resnet18", pretrained=False, two_views=False, train_encoder=False)
    assert net.frozen_encoder is None and len(net.decoder.heads) == 0
    assert not any(
        isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.bias is not None for m in net.decoder.modules()
    )
    targets, outputs = net(torch.randn(2, 3, 64, 64))
    assert len(targets) == len(outputs) == 3
    assert all(not p.requires_grad for p in net.encoder.parameters())


def trainable_parameters(net) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def test_wrn50_trainable_parameter_counts_match_the_released_code():
    """RD4AD: bottleneck + decoder (BN_layer's unused conv4/bn4 excluded) = 83,802,624; ReContrast:
    encoder + bottleneck + decoder with two head sets = 111,421,248."""
    rd4ad = ReverseDistillationNet("wide_resnet50_2", pretrained=False, two_views=False, train_encoder=False)
    assert trainable_parameters(rd4ad) == 83_802_624
    del rd4ad
    recontrast = ReverseDistillationNet("wide_resnet50_2", pretrained=False, two_views=True, train_encoder=True)
    assert trainable_parameters(recontrast) == 111_421_248


def test_only_conv2d_is_kaiming_initialised():
    """The released decoders Kaiming-initialise nn.Conv2d only; ConvTranspose2d keeps torch's default
    kaiming_uniform(a=sqrt(5)), whose weights lie within 1/sqrt(fan_in), fan_in = out_channels * 2 * 2."""
    torch.manual_seed(0)
    net = ReverseDistillationNet("resnet18", pretrained=False, two_views=True)
    transposed = [m for m in net.decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert transposed
    for m in transposed:
        bound = 1 / math.sqrt(m.weight.shape[1] * 4)
        assert m.weight.abs().max().item() <= bound + 1e-7
    conv = [m for m in net.decoder.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)][0]
    fan_out = conv.weight.shape[0] * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)  # Kaiming normal, fan_out


def test_unknown_backbone():
    from medrecontrast.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown backbone 'vgg16'"):
        ResNetEncoder("vgg16", pretrained=False)
