"""Feature and reconstruction shapes of both backbones (DESIGN.md §1), at 256 px and ISIC's 224 px."""

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


def test_one_view_network_has_one_head_set():
    net = ReverseDistillationNet("resnet18", pretrained=False, two_views=False, train_encoder=False)
    assert net.frozen_encoder is None and len(net.decoder.heads) == 1
    targets, outputs = net(torch.randn(2, 3, 64, 64))
    assert len(targets) == len(outputs) == 3
    assert all(not p.requires_grad for p in net.encoder.parameters())


def test_unknown_backbone():
    from medrecontrast.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown backbone 'vgg16'"):
        ResNetEncoder("vgg16", pretrained=False)
