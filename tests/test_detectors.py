"""The detector API: build, fit, predict, save/load, refusal of foreign files, weights handling."""

import numpy as np
import pytest
import torch

from medrecontrast import build_detector
from medrecontrast.data.dataset import task_datasets
from medrecontrast.errors import UserInputError
from medrecontrast.models import Detector
from medrecontrast.models.backbones import (
    WeightsUnavailableError,
    torchvision_weights_path,
)
from medrecontrast.models.patchcore import PatchCore
from medrecontrast.models.recontrast import ReContrast
from medrecontrast.tasks import get_task

SMALL = dict(backbone="resnet18", pretrained=False)
FAST = {
    "recontrast": dict(iters=3, batch_size=4),
    "rd4ad": dict(iters=3, batch_size=4),
    "patchcore": dict(embed_dim=32),
}


@pytest.fixture(scope="module")
def tiny_task():
    data = get_task("synth-skin", size=32, n_train=8, n_test_normal=3, n_test_abnormal=3).load()
    return task_datasets(data, image_size=32, cache="memory")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["recontrast", "rd4ad", "patchcore"])
def test_fit_predict_save_load_gives_identical_scores(method, tiny_task, tmp_path):
    train, test = tiny_task
    detector = build_detector(method, **SMALL, **FAST[method])
    assert detector.fit(train, progress=False) is detector
    first = detector.predict(test, batch_size=4)
    assert first.scores.shape == (6,) and first.maps.shape == (6, 32, 32) and first.masks.shape == (6, 32, 32)
    assert np.isfinite(first.scores).all() and sorted(first.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    detector.save(tmp_path / "model.pt")
    loaded = Detector.load(tmp_path / "model.pt")
    assert type(loaded) is type(detector)
    second = loaded.predict(test, batch_size=2)
    np.testing.assert_array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(first.maps, second.maps)


def test_trainable_detectors_expose_their_module():
    detector = build_detector("recontrast", **SMALL)
    assert isinstance(detector.model, torch.nn.Module)
    assert all(not p.requires_grad for p in detector.model.frozen_encoder.parameters())
    rd = build_detector("rd4ad", **SMALL)
    assert all(not p.requires_grad for p in rd.model.encoder.parameters())
    optimisers = rd.make_optimizers()
    assert list(optimisers) == ["decoder"] and isinstance(optimisers["decoder"], torch.optim.Adam)
    assert optimisers["decoder"].defaults["lr"] == 0.005 and optimisers["decoder"].defaults["betas"] == (0.5, 0.999)
    rc = detector.make_optimizers()
    assert {k: (type(v).__name__, v.defaults["lr"]) for k, v in rc.items()} == {
        "decoder": ("AdamW", 2e-3),
        "encoder": ("AdamW", 1e-5),
    }


def test_foreign_files_are_refused(tiny_task, tmp_path):
    train, _ = tiny_task
    build_detector("patchcore", **SMALL, **FAST["patchcore"]).fit(train, progress=False).save(tmp_path / "pc.pt")
    with pytest.raises(UserInputError, match="holds a 'patchcore' detector, not 'recontrast'"):
        ReContrast.load(tmp_path / "pc.pt")
    with pytest.raises(UserInputError, match="backbone is 'resnet18', expected 'wide_resnet50_2'"):
        PatchCore.load(tmp_path / "pc.pt", backbone="wide_resnet50_2")
    torch.save({"format": 99, "method": "patchcore"}, tmp_path / "future.pt")
    with pytest.raises(UserInputError, match="not a medrecontrast detector file of format 1 \\(found 99\\)"):
        Detector.load(tmp_path / "future.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserInputError, match="detector file .* cannot be read: not a file written by torch.save"):
        Detector.load(tmp_path / "junk.pt")


def test_unknown_method_and_option():
    with pytest.raises(UserInputError, match="unknown method 'padim'"):
        build_detector("padim")
    with pytest.raises(UserInputError, match="unknown option\\(s\\) lr for method 'recontrast'"):
        build_detector("recontrast", lr=1.0)


def test_missing_pretrained_weights_fail_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setattr(
        "torch.hub.load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("network unreachable"))
    )
    with pytest.raises(WeightsUnavailableError) as error:
        build_detector("patchcore", backbone="resnet18", pretrained=True)
    message = str(error.value)
    assert str(torchvision_weights_path("resnet18")) in message and "weights=PATH" in message


def test_local_weights_file(tmp_path):
    from torchvision.models import resnet18

    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    detector = build_detector("patchcore", backbone="resnet18", weights=str(tmp_path / "r18.pth"))
    torch.testing.assert_close(detector.model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_detector("patchcore", backbone="resnet18", weights=str(tmp_path / "missing.pth"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsUnavailableError, match="does not fit resnet18"):
        build_detector("patchcore", backbone="resnet18", weights=str(tmp_path / "wrong.pth"))
