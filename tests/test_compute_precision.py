"""The fast paths compute what the simple ones do: bf16 vs fp32, channels_last vs NCHW, compiled vs eager."""

import numpy as np
import pytest
import torch

from medrecontrast import build_detector
from medrecontrast.data.dataset import task_datasets
from medrecontrast.engine import (
    TrainingConfig,
    autocast,
    loader_options,
    train_loop,
    uses_channels_last,
)
from medrecontrast.errors import UserInputError
from medrecontrast.run import display_image
from medrecontrast.tasks import get_task

SMALL = dict(backbone="resnet18", pretrained=False)


@pytest.fixture(scope="module")
def task():
    data = get_task("synth-oct", size=64, n_train=8, n_test_normal=4, n_test_abnormal=4).load()
    return task_datasets(data, image_size=64, cache="memory")


def test_amp_modes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast(cpu, "bf16")._enabled and not autocast(cpu, True)._enabled and not autocast(cpu, False)._enabled
    assert uses_channels_last(cuda, True, None) and not uses_channels_last(cuda, False, None)
    assert not uses_channels_last(cpu, "bf16", None) and uses_channels_last(cpu, False, True)
    with pytest.raises(UserInputError, match="amp must be"):
        autocast(cpu, "fp8")
    assert loader_options(cpu, 0) == {"num_workers": 0, "pin_memory": False} == loader_options(cpu)
    assert 1 <= loader_options(cuda)["num_workers"] <= 8
    assert loader_options(cuda, 2) == {
        "num_workers": 2,
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": 4,
    }


def _relative_error(fast: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(fast - reference).max() / (reference.max() - reference.min()))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["recontrast", "patchcore"])
def test_bf16_maps_match_fp32_within_tolerance(method, task):
    """Same weights scored in bf16 and fp32: maps within 5 % of their range, scores rank alike."""
    train, test = task
    options = dict(iters=4, batch_size=4) if method == "recontrast" else dict(embed_dim=64)
    reference = build_detector(method, **SMALL, **options, amp=False).fit(train, progress=False)
    fp32 = reference.predict(test)
    reference.config.amp = "bf16"
    bf16 = reference.predict(test)
    assert _relative_error(bf16.maps, fp32.maps) < 0.05
    assert np.corrcoef(bf16.scores, fp32.scores)[0, 1] > 0.98


@pytest.mark.slow
def test_bf16_training_follows_the_fp32_loss_curve(task):
    """bf16 autocast with fp32 losses: the first iterations' losses agree to bf16's precision."""
    train, _ = task
    curves = {}
    for amp in (False, "bf16"):
        detector = build_detector("rd4ad", **SMALL, iters=3, batch_size=4, amp=amp).fit(train, progress=False)
        curves[amp] = np.array(detector.training_.losses)
    np.testing.assert_allclose(curves["bf16"], curves[False], rtol=0.03)


@pytest.mark.slow
def test_channels_last_gives_the_same_maps(task):
    train, test = task
    detector = build_detector("rd4ad", **SMALL, iters=2, batch_size=4, amp=False).fit(train, progress=False)
    nchw = detector.predict(test)
    detector.config.channels_last = True
    nhwc = detector.predict(test)
    np.testing.assert_allclose(nhwc.maps, nchw.maps, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_compiled_training_matches_eager(task):
    """torch.compile (inductor, C++ on the CPU) trains a small network to the same losses as eager mode."""
    train, _ = task

    def loss_fn(model, images, iteration):
        return model(images).square().mean()

    curves = []
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for flag in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        config = TrainingConfig(iters=4, batch_size=4, device="cpu", compile=flag)
        curves.append(train_loop(model, {"all": optimizer}, loss_fn, train, config, identity={}, progress=False).losses)
    assert torch._dynamo.utils.counters["frames"]["ok"] > 0  # the compiled run went through dynamo
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-4)


@pytest.mark.slow
def test_the_model_normalises_pixels_of_any_float_dtype():
    """Datasets yield float16 pixels in [0, 1] (half the bytes to collate and copy); the detector's
    encoder normalises them, so float32 pixels of the same picture give the same predictions."""
    data = get_task("synth-oct", size=64, n_train=8, n_test_normal=3, n_test_abnormal=3).load()
    train, test = task_datasets(data, image_size=64, cache="memory")
    assert (
        train[1]["image"].dtype == torch.float16
        and 0 <= float(train[1]["image"].min())
        and float(train[1]["image"].max()) <= 1
    )

    class AsFloat32(torch.utils.data.Dataset):
        def __init__(self, inner):
            self.inner = inner

        def __len__(self):
            return len(self.inner)

        def __getitem__(self, index):
            return {**self.inner[index], "image": self.inner[index]["image"].float()}

    predictions = []
    for fit_set, test_set in ((train, test), (AsFloat32(train), AsFloat32(test))):
        detector = build_detector("rd4ad", **SMALL, iters=2, batch_size=4).fit(fit_set, progress=False)
        predictions.append(detector.predict(test_set))
    np.testing.assert_allclose(predictions[1].scores, predictions[0].scores, rtol=1e-5)
    np.testing.assert_allclose(predictions[1].maps, predictions[0].maps, rtol=1e-4, atol=1e-6)
    shown = display_image(test[0]["image"])
    assert shown.shape == (64, 64, 3) and shown.dtype == np.uint8
