"""Export (ONNX, TorchScript) with its parity check, and `predict --model` on the exported files."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from medrecontrast.cli import app
from medrecontrast.deploy.formats import ExportedModel
from medrecontrast.errors import UserInputError
from medrecontrast.models import DETECTORS
from medrecontrast.run import train_run
from medrecontrast.run.export import ExportParityError, export_run, verify_export
from medrecontrast.tasks import get_task

pytest.importorskip("onnxruntime")
runner = CliRunner()
TINY = dict(size=32, n_train=8, n_test_normal=3, n_test_abnormal=3)
FAST = {
    "recontrast": {"iters": 2},
    "rd4ad": {"iters": 2},
    "patchcore": {"embed_dim": 32},
    "dinomaly": {"iters": 2},
    "ae": {"iters": 2, "batch_size": 4},
    "vae": {"iters": 2, "batch_size": 4},
    "memae": {"iters": 2, "batch_size": 4},
    "aeu": {"iters": 2, "batch_size": 4},
    **{f"anomalib:{m}": {"batch_size": 4} for m in ("padim", "patchcore")},
    **{f"anomalib:{m}": {"max_epochs": 1, "batch_size": 4} for m in ("stfpm", "fastflow", "reverse_distillation")},
}


def tiny_run(method, folder, seed=0):
    if method.startswith("anomalib:"):
        pytest.importorskip("anomalib")
    train_run(
        get_task("synth-fundus", **TINY),
        method,
        folder,
        seed=seed,
        overrides=FAST[method],
        progress=False,
        profile="tiny",
    )
    return folder


def test_every_method_of_the_suite_has_an_export_case():
    from medrecontrast.catalog import METHOD_MODULES

    assert set(METHOD_MODULES) == set(FAST)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(FAST))
def test_both_formats_score_every_test_image_as_the_checkpoint_does(method, tmp_path):
    """For each method: export both formats of a tiny run; each image's score and map is within the method's stated
    tolerance of the checkpoint's, the AUROC is the same both ways, and the file gives the same numbers at another
    batch size (the batch is dynamic)."""
    run = tiny_run(method, tmp_path / "run")
    tolerance = DETECTORS[method].export_tolerance
    for format, name in (("onnx", "model.onnx"), ("torchscript", "model.torchscript.pt")):
        entry = export_run(run, format)
        assert (run / "export" / name).is_file() and entry["file"] == name
        assert entry["checked_images"] == entry["test_images"] == 6
        assert entry["max_score_difference_relative"] <= tolerance["score"]
        assert entry["max_map_difference_relative"] <= tolerance["map"]
        assert entry["image_auroc_exported"] == entry["image_auroc_checkpoint"]
        model = ExportedModel(run / "export" / name)
        side = entry["crop_size"] or entry["image_size"]
        assert model.metadata["method"] == method and model.side == side
        images = np.random.default_rng(0).random((5, 3, side, side), dtype=np.float32)
        eps = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32) if model.noise else None
        scores, maps = model(images, eps)
        one = [model(images[i : i + 1], None if eps is None else eps[i : i + 1])[0][0] for i in range(5)]
        assert scores.shape == (5,) and maps.shape == (5, side, side)
        np.testing.assert_allclose(one, scores, rtol=1e-4, atol=1e-6)
    record = json.loads((run / "export" / "export.json").read_text())
    assert set(record) == {"model.onnx", "model.torchscript.pt"}
    assert record["model.onnx"]["opset"] == 18 and record["model.onnx"]["versions"]["onnxruntime"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    return tiny_run("ae", folder / "a", seed=0), tiny_run("ae", folder / "b", seed=1)


def test_the_parity_check_refuses_the_file_of_another_run(two_runs, tmp_path):
    first, second = two_runs
    export_run(first, "onnx", tmp_path / "a.onnx")
    assert verify_export(first, tmp_path / "a.onnx")["max_score_difference"] < 1e-5
    with pytest.raises(ExportParityError, match=r"exported from .*a\).*score differs by .* \(tolerance 0\.0001\)"):
        verify_export(second, tmp_path / "a.onnx")
    result = runner.invoke(app, ["export", "--run", str(second), "--verify", str(tmp_path / "a.onnx")])
    assert result.exit_code != 0 and "does not score as" in result.output


def test_a_file_that_fails_the_check_is_not_written(two_runs, tmp_path, monkeypatch):
    first, _ = two_runs
    monkeypatch.setattr(DETECTORS["ae"], "export_tolerance", {"score": -1.0, "map": 1.0})
    with pytest.raises(ExportParityError, match=r"\(not written\).*score differs"):
        export_run(first, "torchscript", tmp_path / "x.torchscript.pt")
    assert not any(tmp_path.iterdir())


def test_export_refuses_to_overwrite_and_reads_only_its_own_record(two_runs, tmp_path):
    first, _ = two_runs
    export_run(first, "torchscript", tmp_path / "m.torchscript.pt", check=2)
    with pytest.raises(UserInputError, match="exists; choose another --out or pass --force"):
        export_run(first, "torchscript", tmp_path / "m.torchscript.pt")
    assert export_run(first, "torchscript", tmp_path / "m.torchscript.pt", force=True)["checked_images"] == 6
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "export.json").write_text('["not ours"]')
    with pytest.raises(UserInputError, match="not an export record of medrecontrast"):
        export_run(first, "onnx", tmp_path / "other" / "m.onnx")
    with pytest.raises(UserInputError, match="unknown export format 'tflite'"):
        export_run(first, "tflite")


def test_predict_model_refuses_a_checkpoint_and_needs_one_source(two_runs, tmp_path):
    first, _ = two_runs
    image = tmp_path / "i.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    result = runner.invoke(app, ["predict", "--model", str(first / "model.pt"), str(image)])
    assert result.exit_code != 0 and "PyTorch checkpoint" in result.output and "predict --run" in result.output
    result = runner.invoke(app, ["predict", str(image)])
    assert result.exit_code != 0 and "exactly one of --run" in result.output


def test_patchcore_refuses_a_memory_bank_too_large_for_a_graph(monkeypatch):
    from medrecontrast.models import build_detector, patchcore

    detector = build_detector("patchcore", backbone="resnet18", pretrained=False, embed_dim=32)
    detector.memory_bank_, detector.fitted_ = torch.zeros(100, 32), True
    monkeypatch.setattr(patchcore, "MAX_EXPORT_BANK_BYTES", 1000)
    with pytest.raises(UserInputError, match=r"memory bank is .*an exported graph holds at most"):
        detector.scoring_module()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["patchcore", "vae"])
def test_predict_model_gives_the_scores_of_predict_run_without_training_code(method, tmp_path):
    """`predict --model` (ONNX and TorchScript) writes what `predict --run` writes, with the same scores and labels
    (a VAE's draws included); in a fresh process it imports none of the suite's training code."""
    from PIL import Image

    run = tiny_run(method, tmp_path / "run")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)).save(images / f"i{i}.png")
    assert (
        runner.invoke(app, ["predict", "--run", str(run), str(images), "--out", str(tmp_path / "ckpt")]).exit_code == 0
    )
    expected = pd.read_csv(tmp_path / "ckpt" / "scores.csv")
    for format in ("onnx", "torchscript"):
        assert runner.invoke(app, ["export", "--run", str(run), "--format", format]).exit_code == 0
        file = next((run / "export").glob(f"model.{format}*"))
        result = runner.invoke(app, ["predict", "--model", str(file), str(images), "--out", str(tmp_path / format)])
        assert result.exit_code == 0, result.output
        got = pd.read_csv(tmp_path / format / "scores.csv")
        assert list(got.columns) == list(expected.columns) and list(got["id"]) == list(expected["id"])
        np.testing.assert_allclose(got["score"], expected["score"], rtol=DETECTORS[method].export_tolerance["score"])
        assert list(got["label"]) == list(expected["label"])
        assert {p.name for p in (tmp_path / format / "overlays").iterdir()} == {f"i{i}.png" for i in range(5)}
        assert (tmp_path / format / "index.html").is_file()
    probe = (
        "import sys\n"
        "from medrecontrast.deploy.predict import predict_with_model\n"
        f"predict_with_model({str(file)!r}, [{str(images)!r}], {str(tmp_path / 'probe')!r})\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('medrecontrast'))))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert "medrecontrast.deploy.predict" in loaded
    training = [
        m
        for m in loaded
        if m.split(".")[1:2] and m.split(".")[1] in ("models", "engine", "losses", "optim", "run", "bench", "tasks")
    ]
    assert training == []
