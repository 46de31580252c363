"""One contract for every registered method (scikit-learn's ``parametrize_with_checks`` idea): a new
method is covered by adding it to the registry, without editing this file. The methods a contributor
adds in tests (tests/toy_detector.py) are collected too, and registered only while their case runs."""

import dataclasses
import inspect
import random
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from medrecontrast.errors import UserInputError
from medrecontrast.models import DETECTORS, NotFittedError, build_detector, registered_methods
from medrecontrast.models.base import Detector, register_detector
from medrecontrast.run import RunConfig, resolve_run_config

_BUILT_IN = set(DETECTORS)
import toy_detector  # noqa: E402,F401  (a contributor's method, as tests/test_architecture.py adds it)

METHODS = registered_methods()
_ADDED = {name: DETECTORS.pop(name) for name in set(DETECTORS) - _BUILT_IN}  # other tests see the built-in methods only
# small, CPU-only settings for whichever of these options a method has (no method is named)
SMALL = {
    "backbone": "resnet18",
    "pretrained": False,
    "device": "cpu",
    "amp": False,
    "iters": 2,
    "epochs": None,
    "batch_size": 4,
    "embed_dim": 16,
    "max_epochs": 1,
}


@pytest.fixture
def method(request):
    name = request.param
    if name in _ADDED:
        DETECTORS[name] = _ADDED[name]
    yield name
    if name in _ADDED:
        DETECTORS.pop(name, None)


def small_options(name: str, seed: int = 0) -> dict:
    fields = {f.name for f in dataclasses.fields(DETECTORS[name].Config)}
    return {**{k: v for k, v in SMALL.items() if k in fields}, "seed": seed}


def images(count: int, seed: int) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {"image": torch.rand(3, 32, 32, generator=generator), "label": i % 2, "id": f"img{i}"} for i in range(count)
    ]


def streams() -> tuple:
    return (
        random.getstate(),
        np.random.get_state()[1].tolist(),
        torch.get_rng_state(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, indirect=True)
def test_every_method_keeps_the_contract(method, tmp_path):
    cls = DETECTORS[method]
    # declarations the runner, the tables and the CLI read
    assert cls.name == method and cls.card.display_name and isinstance(cls.trains, bool) and cls.size_multiple >= 1
    assert isinstance(cls.card.paper_results, Mapping) and isinstance(cls.card.reference, bool)
    # options as typed keyword-only parameters (help() and an IDE show them)
    parameters = inspect.signature(cls).parameters
    assert set(parameters) == {f.name for f in dataclasses.fields(cls.Config)}
    assert all(
        p.kind is inspect.Parameter.KEYWORD_ONLY and p.annotation is not inspect.Parameter.empty
        for p in parameters.values()
    )
    # building (and later loading) leaves the caller's random streams and cuDNN's flags alone
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    before = streams()
    detector = build_detector(method, **small_options(method))
    after = streams()
    assert before[:2] == after[:2] and torch.equal(before[2], after[2]) and before[3:] == after[3:]
    with pytest.raises(NotFittedError):
        detector.predict(images(2, seed=1))
    # issue 37 item 8, each failed before for some method: scoring or saving an unfitted detector (RD4AD and
    # ReContrast returned numbers; a saved file loaded as fitted; PatchCore's save was an AttributeError)
    with pytest.raises(NotFittedError):
        detector.score_batch(torch.rand(2, 3, 32, 32))
    with pytest.raises(NotFittedError):
        detector.save(tmp_path / "unfitted.pt")
    assert not (tmp_path / "unfitted.pt").exists()
    train, test = images(8, seed=0), images(6, seed=1)
    assert detector.fit(train, progress=False) is detector and detector.fitted_
    with pytest.raises(UserInputError, match="divide by 255"):  # 0-255 pixels scored as they are: 5.9e8 scores
        detector.score_batch(torch.rand(2, 3, 32, 32) * 255)
    with pytest.raises(UserInputError, match="NaN"):
        detector.score_batch(torch.full((1, 3, 32, 32), float("nan")))
    first = detector.predict(test)
    assert first.scores.shape == (6,) and first.maps.shape == (6, 32, 32) and np.isfinite(first.scores).all()
    # the seed fixes everything: a second detector of the same options gives the same scores
    again = build_detector(method, **small_options(method)).fit(train, progress=False).predict(test)
    np.testing.assert_allclose(again.scores, first.scores, rtol=1e-5, atol=1e-6)
    # save and load: identical scores and maps, the configuration kept
    detector.save(tmp_path / "model.pt")
    before = streams()
    loaded = Detector.load(tmp_path / "model.pt")
    assert before[:2] == streams()[:2] and torch.equal(before[2], streams()[2])
    weightless = {k: v for k, v in (("pretrained", False), ("weights", None)) if hasattr(detector.config, k)}
    assert type(loaded) is cls and loaded.config == dataclasses.replace(detector.config, **weightless)
    reloaded = loaded.predict(test)
    np.testing.assert_array_equal(reloaded.scores, first.scores)
    np.testing.assert_array_equal(reloaded.maps, first.maps)
    # the configuration round-trips: as a detector's options and as a run's config.json
    assert build_detector(method, **dataclasses.asdict(detector.config)).config == detector.config
    run = resolve_run_config("synth-oct", method, 3, "tiny", layers=[("test", {"image_size": 32})])
    assert RunConfig.from_json(run.to_json()) == run and run.method_config() == cls.Config(**run.detector_options())


def test_a_taken_name_is_refused():
    """As torchvision's registry: a second method under a registered name never replaces the first."""
    first = DETECTORS["patchcore"]

    with pytest.raises(ValueError, match="already registered"):

        @register_detector("patchcore")
        class Impostor(first):
            pass

    assert DETECTORS["patchcore"] is first


@pytest.mark.slow
def test_importing_the_methods_and_tasks_leaves_the_callers_random_stream_alone():
    """Issue 37 item 11, failed before: importing a detector module (or the tasks) moved Python's `random` stream,
    because importing Rich (rich/style.py) and MONAI draws from it; a script that seeded `random` first got other
    draws than the same script with the imports above its seed."""
    import subprocess
    import sys

    script = (
        "import random\n"
        "random.seed(5)\n"
        "expected = random.Random(5).random()\n"
        "from medrecontrast.models import recontrast\n"
        "from medrecontrast import get_task, build_detector\n"
        "assert random.random() == expected, 'the stream moved'\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
