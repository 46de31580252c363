"""MedIAnomaly's reconstruction methods (AE, VAE, MemAE, AE-U) against the released code (caiyu6666/MedIAnomaly
507201c, ``reconstruction/``).

``golden/medianomaly_released.json`` holds numbers recorded (``golden/record_medianomaly.py``) by running the
released networks, losses and workers (``get_method(opt)``, ``set_network_loss``, ``set_optimizer``,
``train_epoch``, ``evaluate``) unchanged on the CPU in float64 outside this repository, at the released defaults
(64 px grey, base width 16, hidden 1,024, latent 16), every parameter :func:`golden_value` of its released name,
on one seeded batch of four images: the reconstruction, the loss, every gradient, one Adam step, BatchNorm's
running statistics, and the evaluation's anomaly maps and image scores (batch 1, eval mode). Here the suite's
networks get the same weights by name.
"""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from medrecontrast.errors import UserInputError
from medrecontrast.models import build_detector
from medrecontrast.models.reconstruction import network_input

GOLDEN = json.loads((Path(__file__).parent / "golden" / "medianomaly_released.json").read_text())
RTOL = 1e-5
METHODS = ("ae", "vae", "memae", "aeu")


def golden_value(name: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    x = torch.randn(tuple(shape), generator=g, dtype=torch.float64)
    if ".weight" in name and len(shape) == 1:  # BatchNorm weights
        return (1 + 0.1 * x).float()
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (x / fan_in**0.5).float()


def pixels() -> torch.Tensor:
    """The recorded batch: grey pixels in [0, 1], repeated to RGB as the suite's datasets give them."""
    grey = torch.rand(4, 1, GOLDEN["size"], GOLDEN["size"], generator=torch.Generator().manual_seed(0))
    return grey.expand(-1, 3, -1, -1).contiguous().double()


NOISE = 1e-9  # a bias before a BatchNorm has no gradient: float64 rounding noise (1e-17), and Adam's step on it


def close(tensor: torch.Tensor, recorded: dict, spread: float = RTOL) -> None:
    t = tensor.detach().double()
    if recorded["norm"] < NOISE:  # noise on both sides: it must stay noise
        assert t.norm().item() < NOISE
        return
    assert t.norm().item() == pytest.approx(recorded["norm"], rel=RTOL, abs=1e-12)
    assert t.sum().item() == pytest.approx(recorded["sum"], rel=RTOL, abs=spread * recorded["norm"] + 1e-12)
    torch.testing.assert_close(
        t.flatten()[:4],
        torch.tensor(recorded["first"], dtype=torch.float64),
        rtol=RTOL,
        atol=spread * recorded["norm"] + 1e-12,
    )


def golden_detector(method: str):
    # seed 321: the detector's scoring stream then draws the VAE's samples the released evaluation drew from
    # torch's global stream seeded 321 (image by image: 16 normals each, the same numbers as 4 x 16 at once)
    detector = build_detector(method, device="cpu", seed=321)
    detector._build(GOLDEN["size"])
    network = detector.model_
    weights = {n: golden_value(n, p.shape) for n, p in network.named_parameters()}
    missing, unexpected = network.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in missing)
    network.double()  # float64 on both sides: in float32 the thread count's summation order moves gradients ~2e-5
    return detector


@pytest.mark.parametrize("method", METHODS)
def test_loss_gradients_step_maps_and_scores_equal_the_released_code(method):
    recorded = GOLDEN[method]
    detector = golden_detector(method)
    network = detector.model_.train()
    x = network_input(pixels(), 1)
    torch.testing.assert_close(x, pixels()[:, :1] * 2 - 1, rtol=1e-6, atol=1e-6)  # grey, then Normalize(0.5, 0.5)
    optimizer = torch.optim.Adam(network.parameters(), lr=detector.config.lr, weight_decay=detector.config.weight_decay)
    before = {n: p.detach().clone() for n, p in network.named_parameters()}
    torch.manual_seed(123)  # the VAE's sample, drawn where the released code draws it
    out = network(x)
    close(out["x_hat"], recorded["train_x_hat"])
    loss = detector.criterion(x, out)
    assert loss.item() == pytest.approx(recorded["loss"], rel=RTOL)
    optimizer.zero_grad()
    loss.backward()
    grads = {n: p.grad for n, p in network.named_parameters() if p.grad is not None}
    assert set(grads) == set(recorded["grads"])
    for name, grad in grads.items():
        close(grad, recorded["grads"][name])
    optimizer.step()
    for name, p in network.named_parameters():
        close(p.detach() - before[name], recorded["step_delta"][name])
    for name, buffer in network.named_buffers():
        if buffer.dtype.is_floating_point:
            close(buffer, recorded["buffers"][name])
    detector.fitted_ = True
    scores, maps = detector.score_batch(pixels())
    for m, rec in zip(maps, recorded["maps"]):
        close(m, rec)
    torch.testing.assert_close(
        scores.double(), torch.tensor(recorded["scores"], dtype=torch.float64), rtol=RTOL, atol=0
    )
    labels = np.array(GOLDEN["labels"])
    assert scores[labels == 0].mean().item() == pytest.approx(recorded["normal_score"], rel=RTOL)
    assert scores[labels == 1].mean().item() == pytest.approx(recorded["abnormal_score"], rel=RTOL)


def test_settings_are_the_released_defaults_and_checked_at_planning():
    from medrecontrast.models import DETECTORS
    from medrecontrast.run import resolve_run_config

    for method in METHODS:
        c = DETECTORS[method].Config()
        assert (c.epochs, c.iters, c.batch_size, c.drop_last, c.lr, c.weight_decay) == (250, None, 64, False, 1e-3, 0.0)
        assert (c.base_width, c.expansion, c.hidden_num, c.latent_size, c.en_depth, c.de_depth, c.in_channels) == (
            16,
            1,
            1024,
            16,
            1,
            1,
            1,
        )
        assert DETECTORS[method].card.citation.startswith("Cai et al., MedIAnomaly")
        for profile in ("paper", "lite", "tiny"):  # the released 64 px whatever the profile or the task
            run = resolve_run_config("medianomaly:brain-tumor", method, 0, profile)
            assert (run.image_size, run.crop_size) == (64, None)
        paper = resolve_run_config("medianomaly:brain-tumor", method, 0, "paper")
        assert (paper.detector["epochs"], paper.holdout) == (600, 0.0)  # options.py: brain 600 epochs, every normal
        assert resolve_run_config("medianomaly:rsna", method, 0, "paper").detector["epochs"] == 250
    memae = DETECTORS["memae"].Config()
    assert (memae.mem_size, memae.shrink_thres, memae.entropy_weight) == (25, 0.0025, 0.0002)
    assert DETECTORS["vae"].Config().kl_weight == 0.005
    with pytest.raises(UserInputError, match="kl_weight"):
        build_detector("vae", kl_weight=-1.0)
    with pytest.raises(UserInputError, match="in_channels"):
        build_detector("ae", in_channels=2)
    # a last batch of one image cannot train BatchNorm1d: refused before anything trains, with what to change
    ae = DETECTORS["ae"]
    with pytest.raises(UserInputError, match="drop_last"):
        ae.check_plan(ae.Config(), train_images=129, input_size=64)
    ae.check_plan(ae.Config(), train_images=130, input_size=64)
    ae.check_plan(ae.Config(drop_last=True), train_images=129, input_size=64)
    with pytest.raises(UserInputError, match="multiple of 16"):
        resolve_run_config("medianomaly:brain-tumor", "ae", 0, "paper", layers=[("test", {"image_size": 72})])


def test_grey_input_is_pil_luma_of_rgb_and_a_vae_scores_repeatably():
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    torch.testing.assert_close(network_input(rgb, 1)[:, 0], luma * 2 - 1)
    assert network_input(rgb, 3).shape == (2, 3, 16, 16)
    vae = golden_detector("vae")  # fitted: the same images score the same in two predicts (its own seeded stream)
    vae.fitted_ = True
    images = [{"image": img, "label": 0, "id": str(i)} for i, img in enumerate(pixels())]
    first, second = vae.predict(images), vae.predict(images)
    np.testing.assert_array_equal(first.scores, second.scores)
