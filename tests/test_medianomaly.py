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


def _write(path, value: int = 0) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)


def test_isic2018_reads_the_official_test_set_with_nv_normal(tmp_path):
    """MedIAnomaly's ISIC2018: the Training set's NV images train, the whole Test set tests (909 NV + 603 others,
    from the real ground-truth file)."""
    import pandas as pd

    truth = pd.read_csv(shared("isic2018/ISIC2018_Task3_Test_GroundTruth.csv"))
    root = tmp_path / "MedIAnomaly-Data" / "ISIC2018_Task3"
    (root / "ISIC2018_Task3_Test_GroundTruth").mkdir(parents=True)
    truth.to_csv(root / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv", index=False)
    for name in truth["image"]:
        (root / "ISIC2018_Task3_Test_Input").mkdir(exist_ok=True)
        (root / "ISIC2018_Task3_Test_Input" / f"{name}.jpg").write_bytes(b"")
    classes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    train = pd.DataFrame(
        [[f"ISIC_T{k}", *[float(c == cls) for c in classes]] for k, cls in enumerate(["NV", "NV", "MEL", "NV"])],
        columns=["image", *classes],
    )
    (root / "ISIC2018_Task3_Training_GroundTruth").mkdir()
    train.to_csv(root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv", index=False)
    (root / "ISIC2018_Task3_Training_Input").mkdir()
    data = get_task("medianomaly:isic2018").load(tmp_path)
    assert len(data.train) == 3 and all(it["category"] == "NV" for it in data.train)
    assert sum(it["label"] == 0 for it in data.test) == 909 and sum(it["label"] == 1 for it in data.test) == 603


def test_brats2021_and_camelyon16_folders_as_the_released_loaders_read_them(tmp_path):
    base = tmp_path / "MedIAnomaly-Data" / "BraTS2021"
    for k in range(3):
        _write(base / "train" / f"BraTS2021_0000{k}_flair_60.png")
    _write(base / "test" / "normal" / "BraTS2021_00010_flair_61.png")
    _write(base / "test" / "tumor" / "BraTS2021_00011_flair_70.png")
    _write(base / "test" / "annotation" / "BraTS2021_00011_seg_70.png", 255)
    data = get_task("medianomaly:brats2021").load(tmp_path)
    tumour = [it for it in data.test if it["label"] == 1][0]
    assert tumour["mask"].endswith("test/annotation/BraTS2021_00011_seg_70.png") and data.has_masks
    assert {it["patient"] for it in data.train} == {"BraTS2021_00000", "BraTS2021_00001", "BraTS2021_00002"}
    (base / "test" / "annotation" / "BraTS2021_00011_seg_70.png").unlink()
    with pytest.raises(DataLayoutError, match="has no mask .*flair -> seg"):
        get_task("medianomaly:brats2021").load(tmp_path)
    camelyon = tmp_path / "MedIAnomaly-Data" / "Camelyon16"
    for folder, n in (("train/good", 3), ("test/good", 2), ("test/Ungood", 2)):
        for k in range(n):
            _write(camelyon / folder / f"{k}.png", k)
    data = get_task("medianomaly:camelyon16").load(tmp_path)
    assert (len(data.train), len(data.test)) == (3, 4) and not data.has_masks
    with pytest.raises(UserInputError, match="no missing option"):
        get_task("medianomaly:camelyon16", missing="skip")
    from medrecontrast.run import resolve_run_config

    # MedIAnomaly's methods read Camelyon16 in RGB (options.py in_c), every other set in grey
    assert resolve_run_config("medianomaly:camelyon16", "ae", 0, "paper").detector["in_channels"] == 3
    assert resolve_run_config("medianomaly:brats2021", "ae", 0, "paper").detector["in_channels"] == 1
