"""Real label files and real photos from ../shared/data (skipped with a reason where absent)."""

import shutil

import layouts
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import shared
from writers import rgb, write_jpeg, write_png

from medrecontrast.data.check import check_task_data
from medrecontrast.data.dataset import image_dataset, task_datasets
from medrecontrast.tasks import get_task
from medrecontrast.tasks.base import item


def test_aptos_paper_protocol_on_the_real_csv(tmp_path):
    (tmp_path / "aptos" / "train_images").mkdir(parents=True)
    shutil.copy(shared("aptos/train.csv"), tmp_path / "aptos" / "train.csv")  # a temporary copy, outside the repo
    data = get_task("aptos").load(tmp_path)
    assert data.counts()["train"] == {"normal": 1000}
    assert data.counts()["test"] == {"normal": 805, "abnormal": 1857}
    assert len(data.test) == 2662
    assert sum(data.counts()["categories"]["test"][f"grade{g}"] for g in range(1, 5)) == 1857
    again = get_task("aptos").load(tmp_path)
    assert [it["id"] for it in again.train] == [it["id"] for it in data.train]  # the draw is fixed


def test_aptos_split_is_the_authors_prepare_aptos(tmp_path):
    """prepare_aptos.py: random.seed(1); random.shuffle(grade-0 ids in CSV order); the first 1,000 train."""
    (tmp_path / "aptos" / "train_images").mkdir(parents=True)
    shutil.copy(shared("aptos/train.csv"), tmp_path / "aptos" / "train.csv")
    train_ids = [it["id"] for it in get_task("aptos").load(tmp_path).train]
    assert train_ids[:5] == ["974c7d7b9c64", "12ab2f6397f0", "e79e10907295", "e4dcca36ceb4", "c23ff6dcf15e"]
    frame = pd.read_csv(tmp_path / "aptos" / "train.csv")
    normal = frame.loc[frame["diagnosis"] == 0, "id_code"].tolist()
    # the split this suite used before (numpy default_rng(0) permutation) shared only 560 of 1,000 images
    earlier = {normal[i] for i in np.random.default_rng(0).permutation(len(normal))[:1000]}
    assert len(earlier & set(train_ids)) == 560


def test_visa_counts_on_the_real_1cls_csv(tmp_path):
    csv = shared("visa/split_csv/1cls.csv")
    (tmp_path / "visa" / "split_csv").mkdir(parents=True)
    shutil.copy(csv, tmp_path / "visa" / "split_csv" / "1cls.csv")
    totals = {"train": 0, "normal": 0, "abnormal": 0}
    for task_name in [f"visa:{c}" for c in pd.read_csv(csv)["object"].unique()]:
        counts = get_task(task_name).load(tmp_path).counts()
        totals["train"] += counts["train"]["normal"]
        totals["normal"] += counts["test"]["normal"]
        totals["abnormal"] += counts["test"]["abnormal"]
    assert totals == {"train": 8659, "normal": 962, "abnormal": 1200}


def test_visa_real_csv_with_stand_in_images_passes_a_deep_check(tmp_path):
    csv = shared("visa/split_csv/1cls.csv")
    root = tmp_path / "visa"
    (root / "split_csv").mkdir(parents=True)
    shutil.copy(csv, root / "split_csv" / "1cls.csv")
    rows = pd.read_csv(csv).query("object == 'cashew'")
    for row in rows.itertuples():
        write_jpeg(root / row.image, rgb(6, 8))
        if isinstance(row.mask, str):
            write_png(root / row.mask, np.full((6, 8), 255, dtype=np.uint8))
    data = get_task("visa:cashew").load(tmp_path)
    report = check_task_data(data, deep=True, progress=False)
    assert report.ok and data.has_masks
    assert report.to_dict()["masks"] == (rows["label"] == "anomaly").sum()


def test_isic_protocols_on_the_real_ground_truth(tmp_path):
    root = tmp_path / "isic2018"
    root.mkdir()
    for subset in ("Validation", "Test"):
        name = f"ISIC2018_Task3_{subset}_GroundTruth.csv"
        shutil.copy(shared(f"isic2018/{name}"), root / name)
        (root / f"ISIC2018_Task3_{subset}_Input").mkdir()
    layouts.isic_csv(root / "ISIC2018_Task3_Training_GroundTruth.csv", ["NV", "NV", "MEL"])
    (root / "ISIC2018_Task3_Training_Input").mkdir()
    val = get_task("isic").load(tmp_path)
    assert len(val.test) == 193 and len(val.train) == 2
    test = get_task("isic:test").load(tmp_path)
    assert len(test.test) == 1512
    nv = pd.read_csv(shared("isic2018/ISIC2018_Task3_Validation_GroundTruth.csv"))["NV"].sum()
    assert val.counts()["test"]["normal"] == nv


def test_real_mvtec_grid_through_the_pipeline(tmp_path):
    (tmp_path / "mvtec").mkdir()
    (tmp_path / "mvtec" / "grid").symlink_to(shared("mvtec_grid"), target_is_directory=True)
    data = get_task("mvtec:grid").load(tmp_path)
    assert data.counts()["train"] == {"normal": 25}
    assert data.counts()["test"] == {"normal": 3, "abnormal": 11} and data.has_masks
    assert check_task_data(data, progress=False).ok
    train, test = task_datasets(data, image_size=64, cache="none")
    assert train[0]["image"].shape == (3, 64, 64)
    image = train[0]["image"]
    torch.testing.assert_close(image[0], image[1], atol=0, rtol=0)  # grey, repeated (pixels: the model normalises)
    defects = [test[i] for i in range(len(test)) if test.data.data[i]["label"] == 1]
    assert all(d["mask"].shape == (1, 64, 64) and d["mask"].sum() > 0 for d in defects)


@pytest.mark.parametrize(
    "relative,crop",
    [
        ("eyepacs_fundus/10_left.jpeg", True),
        ("aptos/train_images/1ae3c58759fb.png", True),
        ("aptos/train_images/000c1434d8d7.png", True),
        ("oct2017_samples/NORMAL-443980-1.jpeg", False),
        ("oct2017_samples/CNV-1016042-1.jpeg", False),
    ],
)
def test_real_photos_through_the_pipeline(relative, crop):
    path = shared(relative)
    sample = image_dataset([item(path, 0, "real")], 64, fundus_crop=crop, masks=False, cache="none")[0]
    assert sample["image"].shape == (3, 64, 64) and torch.isfinite(sample["image"]).all()
    if crop:  # after the border crop, the fundus fills the square: bright centre, dark corners
        brightness = sample["image"].mean(0)
        assert (
            brightness[24:40, 24:40].mean() > brightness[:4, :4].mean() + 0.1
        )  # pixels in [0, 1] (was 0.5 in ImageNet-normalised units)


def test_eyepacs_fundus_crop_fills_the_frame():
    from medrecontrast.data.fundus import fundus_box
    from medrecontrast.data.readers import read_image

    image = read_image(shared("eyepacs_fundus/10_left.jpeg"))
    top, left, side = fundus_box(image)
    height, width = image.shape[1:]
    assert side <= max(height, width) + 10 and side >= 0.6 * min(height, width)
