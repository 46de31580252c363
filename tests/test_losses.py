"""The loss: hand-computed values, stop-gradient, frozen view, hard-normal mining, α schedule."""

import math

import pytest
import torch
import torch.nn.functional as F

from medrecontrast.losses import cosine_loss, hard_mining_alpha, scale_easy_points
from medrecontrast.models.reverse_distillation import ReverseDistillationNet


def test_global_cosine_by_hand():
    # one sample, one layer, C*H*W = 2: vectors (1, 0) and (1, 1) -> cos = 1/sqrt(2)
    target = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)
    output = torch.tensor([1.0, 1.0]).reshape(1, 2, 1, 1)
    assert cosine_loss([target], [output]).item() == pytest.approx(1 - 1 / math.sqrt(2))
    # two layers add up; a batch averages
    twice = cosine_loss([target, target], [output, output])
    assert twice.item() == pytest.approx(2 * (1 - 1 / math.sqrt(2)))
    batch_t = torch.cat([target, target])
    batch_o = torch.cat([output, target])  # second sample reconstructs perfectly
    assert cosine_loss([batch_t], [batch_o]).item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2)


def test_global_differs_from_regional_by_hand():
    # two points; point 1 perfect, point 2 orthogonal
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)  # channels x points
    output = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 2)
    assert cosine_loss([target], [output], kind="regional").item() == pytest.approx(0.5)
    # global: flattened (1,0,0,1) vs (1,1,0,0) -> cos = 1/2
    assert cosine_loss([target], [output], kind="global").item() == pytest.approx(0.5)
    target2 = torch.tensor([[3.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)
    # regional ignores the scale of each point, global weighs big points more: cos = 3/sqrt(10)/sqrt(2)
    assert cosine_loss([target2], [output], kind="regional").item() == pytest.approx(0.5)
    assert cosine_loss([target2], [output], kind="global").item() == pytest.approx(1 - 3 / math.sqrt(10) / math.sqrt(2))


def test_target_side_receives_no_gradient():
    target = torch.randn(2, 4, 3, 3, requires_grad=True)
    output = torch.randn(2, 4, 3, 3, requires_grad=True)
    cosine_loss([target], [output]).backward()
    assert target.grad is None and output.grad.abs().sum() > 0
    target.grad = None
    cosine_loss([target], [output], stop_gradient=False).backward()
    assert target.grad.abs().sum() > 0  # the ablation switch really switches


def recontrast_loss(net, images):
    targets, outputs = net(images)
    return cosine_loss(targets[:3], outputs[:3]) / 2 + cosine_loss(targets[3:], outputs[3:]) / 2


def test_frozen_encoder_gets_no_gradient_and_keeps_its_statistics():
    torch.manual_seed(0)
    net = ReverseDistillationNet("resnet18", pretrained=False).train()
    before = {k: v.clone() for k, v in net.frozen_encoder.state_dict().items()}
    recontrast_loss(net, torch.randn(4, 3, 64, 64)).backward()
    assert all(p.grad is None for p in net.frozen_encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.frozen_encoder.state_dict().items())
    assert not net.frozen_encoder.training
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.encoder.parameters())


def test_encoder_bn_switch():
    net = ReverseDistillationNet("resnet18", pretrained=False, encoder_bn_train=False).train()
    before = net.encoder.layer1[0].bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert not net.encoder.training and torch.equal(before, net.encoder.layer1[0].bn1.running_mean)
    net = ReverseDistillationNet("resnet18", pretrained=False, encoder_bn_train=True).train()
    before = net.encoder.layer1[0].bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert net.encoder.training and not torch.equal(before, net.encoder.layer1[0].bn1.running_mean)


def test_trainable_encoder_learns_only_through_the_decoder_path():
    torch.manual_seed(0)
    net = ReverseDistillationNet("resnet18", pretrained=False).train()
    images = torch.randn(2, 3, 64, 64)
    recontrast_loss(net, images).backward()
    through_decoder = [p.grad.clone() for p in net.encoder.parameters()]
    assert any(g.abs().sum() > 0 for g in through_decoder)
    # Cut the decoder path (feed detached features to the bottleneck): nothing may reach the encoder.
    net.zero_grad(set_to_none=True)
    features = net.encoder(images)
    with torch.no_grad():
        frozen = net.frozen_encoder(images)
    trunk = net.decoder(net.bottleneck([torch.cat([f.detach(), g]) for f, g in zip(features, frozen)]), head=None)
    outputs = net.decoder.apply_head([t[:2] for t in trunk], 0) + net.decoder.apply_head([t[2:] for t in trunk], 1)
    loss = cosine_loss(frozen, outputs[:3]) / 2 + cosine_loss(features, outputs[3:]) / 2
    loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in net.encoder.parameters())


def test_hard_mining_scales_easy_points_by_factor():
    torch.manual_seed(0)
    target = torch.randn(2, 8, 4, 4)
    output_plain = torch.randn(2, 8, 4, 4, requires_grad=True)
    output_mined = output_plain.detach().clone().requires_grad_(True)
    cosine_loss([target], [output_plain]).backward()
    easy = scale_easy_points(target, output_mined, alpha=0.0, factor=0.25)
    loss = (1 - F.cosine_similarity(target.flatten(1), output_mined.flatten(1))).mean()
    loss.backward()
    distance = 1 - F.cosine_similarity(target, output_plain.detach(), dim=1)
    expected_easy = (distance < distance.mean() + 0.0 * distance.flatten().std()).unsqueeze(1)
    assert torch.equal(easy, expected_easy) and 0 < easy.sum() < easy.numel()
    easy = easy.expand_as(output_plain)
    torch.testing.assert_close(output_mined.grad[easy], 0.25 * output_plain.grad[easy])
    torch.testing.assert_close(output_mined.grad[~easy], output_plain.grad[~easy])


def test_hard_mining_through_cosine_loss_with_factor_zero():
    torch.manual_seed(1)
    target = torch.randn(2, 8, 4, 4)
    output = torch.randn(2, 8, 4, 4, requires_grad=True)
    cosine_loss([target], [output], alpha=1.0, factor=0.0).backward()
    distance = 1 - F.cosine_similarity(target, output.detach(), dim=1)
    easy = (distance < distance.mean() + distance.flatten().std()).unsqueeze(1).expand_as(output)
    assert output.grad[easy].abs().sum() == 0 and output.grad[~easy].abs().sum() > 0


@pytest.mark.parametrize("fraction,alpha", [(0.0, -3.0), (0.05, -1.0), (0.10, 1.0), (0.5, 1.0)])
def test_alpha_schedule(fraction, alpha):
    assert hard_mining_alpha(int(fraction * 2000), 2000) == pytest.approx(alpha)
