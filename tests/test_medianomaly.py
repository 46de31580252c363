"""MedIAnomaly's benchmarks as released: the split files' counts, missing files refused or skipped (said), the real
Brain Tumor release of ../shared/data."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import shared
from typer.testing import CliRunner

from medrecontrast.cli import app
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks import get_task

runner = CliRunner()
RELEASED = {"rsna": ("RSNA", 3851, 1000, 1000), "vincxr": ("VinCXR", 4000, 1000, 1000), "lag": ("LAG", 1500, 811, 811)}


def test_the_real_brain_tumor_release_refuses_its_three_absent_files_and_skips_them_when_asked():
    root = shared("MedIAnomaly-Data/BrainTumor").parent.parent
    with pytest.raises(DataLayoutError, match="3 file") as refused:
        get_task("medianomaly:brain-tumor").load(root)
    for name in ("Tr-no_1011.jpg (train/0)", "Tr-no_1019.jpg (train/0)", "Tr-no_1020.jpg (test/0)"):
        assert name in str(refused.value)
    data = get_task("medianomaly:brain-tumor", missing="skip").load(root)
    counts = data.counts()
    assert counts["train"] == {"normal": 998} and counts["test"] == {"normal": 599, "abnormal": 600}
    assert data.labelling_notes() == [
        "medianomaly:brain-tumor: 2 of 1,000 training images and 1 of 600 test normals absent, left out (missing = "
        '"skip"): Tr-no_1011.jpg, Tr-no_1019.jpg, Tr-no_1020.jpg'
    ]
    assert counts["categories"]["test"] == {"NORMAL": 599, "glioma": 300, "meningioma": 300}
    result = runner.invoke(
        app, ["data", "check", "medianomaly:brain-tumor", "--data-root", str(root), "--task-option", "missing=skip"]
    )
    assert result.exit_code == 0 and "998" in result.output and "2 of 1,000 training images" in result.output


@pytest.mark.parametrize("variant", sorted(RELEASED))
def test_each_released_split_gives_its_published_counts(variant, tmp_path):
    folder, train, normal, abnormal = RELEASED[variant]
    split = shared(f"splits/medianomaly/{folder}/data.json")
    release = tmp_path / "MedIAnomaly-Data" / folder
    (release / "images").mkdir(parents=True)
    shutil.copy(split, release / "data.json")
    listed = json.loads(split.read_text())
    for names in (listed["train"]["0"], listed["test"]["0"], listed["test"]["1"]):
        for name in names:
            (release / "images" / name).touch()  # stand-ins: the split, not the pixels, is under test
    data = get_task(f"medianomaly:{variant}").load(tmp_path)
    assert data.counts()["train"] == {"normal": train}
    assert data.counts()["test"] == {"normal": normal, "abnormal": abnormal}
    assert not data.has_patients  # one image = one unit: the names say no patient


def test_a_split_file_of_another_shape_and_a_bad_option_are_refused(tmp_path):
    release = tmp_path / "MedIAnomaly-Data" / "LAG"
    (release / "images").mkdir(parents=True)
    (release / "data.json").write_text(json.dumps({"train": ["a.png"], "test": {}}))
    with pytest.raises(DataLayoutError, match="is not MedIAnomaly's split file"):
        get_task("medianomaly:lag").load(tmp_path)
    with pytest.raises(UserInputError, match="missing must be one of refuse, skip"):
        get_task("medianomaly:lag", missing="ignore")
    with pytest.raises(UserInputError, match="known: rsna, vincxr, brain-tumor, lag"):
        get_task("medianomaly:brats")
