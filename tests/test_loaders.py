"""Each official layout gives the counts, labels and masks of its protocol."""

import layouts
import numpy as np
import pytest

from medrecontrast.tasks import get_task
from medrecontrast.tasks.aptos import split_aptos


def labels(items):
    return [it["label"] for it in items]


def test_aptos_split_sizes_and_labels(tmp_path):
    grades = [0] * 30 + [1, 2, 3, 4] * 5
    layouts.aptos(tmp_path, grades)
    data = get_task("aptos", n_train=20).load(tmp_path)
    assert len(data.train) == 20 and set(labels(data.train)) == {0}
    assert labels(data.test).count(0) == 10 and labels(data.test).count(1) == 20
    assert {it["id"] for it in data.train}.isdisjoint({it["id"] for it in data.test})
    assert data.fundus_crop  # not prepared yet: the crop runs in the pipeline
    assert data.test[-1]["category"] == "grade4"


def test_aptos_split_is_fixed_by_its_seed_not_by_chance():
    grades = np.array([0] * 50 + [2] * 10)
    first = split_aptos(range(60), grades, n_train=40, seed=0)
    assert first == split_aptos(range(60), grades, n_train=40, seed=0)
    assert first != split_aptos(range(60), grades, n_train=40, seed=1)
    train, test = first
    assert len(train) == 40 and len(test) == 20 and sorted(train + test) == list(range(60))


def test_aptos_uses_prepared_images_when_complete(tmp_path):
    from medrecontrast.tasks.aptos import prepare_aptos

    folder = layouts.aptos(tmp_path, [0, 0, 0, 1, 2])
    before = sorted(p.name for p in (folder / "train_images").iterdir())
    result = prepare_aptos(tmp_path, progress=False)
    assert result["written"] == 5
    assert prepare_aptos(tmp_path, progress=False)["already_present"] == 5  # a rerun resumes, writes nothing
    data = get_task("aptos", n_train=2).load(tmp_path)
    assert not data.fundus_crop
    assert all("prepared_512" in it["image"] for it in data.train + data.test)
    assert sorted(p.name for p in (folder / "train_images").iterdir()) == before  # originals untouched
    from PIL import Image

    assert Image.open(data.train[0]["image"]).size == (512, 512)


def test_oct2017_trains_on_normals_and_tests_on_the_whole_test_folder(tmp_path):
    layouts.oct2017(tmp_path, per_class=2)
    data = get_task("oct2017").load(tmp_path)
    assert data.task.name == "oct"
    assert len(data.train) == 5 and set(labels(data.train)) == {0}
    assert data.counts()["test"] == {"normal": 2, "abnormal": 6}
    assert data.counts()["categories"]["test"] == {"CNV": 2, "DME": 2, "DRUSEN": 2, "NORMAL": 2}
    assert not data.has_masks


def test_isic2018_protocols(tmp_path):
    layouts.isic2018(tmp_path)
    val = get_task("isic2018").load(tmp_path)
    assert len(val.train) == 3 and {it["category"] for it in val.train} == {"NV"}
    assert [(it["category"], it["label"]) for it in val.test] == [("NV", 0), ("MEL", 1), ("DF", 1)]
    test = get_task("isic:test").load(tmp_path)
    assert test.counts()["test"] == {"normal": 2, "abnormal": 2}
    assert "Test_Input" in test.test[0]["image"]


def test_isic2018_accepts_csv_beside_the_input_folders(tmp_path):
    folder = layouts.isic2018(tmp_path)
    for subset in ("Training", "Validation", "Test"):
        name = f"ISIC2018_Task3_{subset}_GroundTruth"
        (folder / name / f"{name}.csv").rename(folder / f"{name}.csv")
    assert len(get_task("isic").load(tmp_path).test) == 3


def test_mvtec_class_with_masks(tmp_path):
    layouts.mvtec(tmp_path, "bottle")
    data = get_task("mvtec:bottle").load(tmp_path)
    assert len(data.train) == 4
    assert data.counts()["test"] == {"normal": 2, "abnormal": 4}
    assert data.has_masks
    for it in data.test:
        assert (it["mask"] is None) == (it["label"] == 0)
        if it["mask"]:
            assert it["mask"].endswith(f"ground_truth/{it['category']}/{it['id'].split('/')[1]}_mask.png")


def test_visa_from_1cls_csv(tmp_path):
    layouts.visa(tmp_path)
    data = get_task("visa:pcb1").load(tmp_path)
    from medrecontrast.models.recontrast import ReContrast

    assert ReContrast.task_options(data.task)["encoder_bn_train"] is False
    assert len(data.train) == 3 and all("pcb1/" in it["image"] for it in data.train + data.test)
    assert data.counts()["test"] == {"normal": 1, "abnormal": 2}
    assert all(it["mask"] for it in data.test if it["label"] == 1)


def test_folder_with_dicom_and_nifti(tmp_path):
    folder = layouts.medical_folder(tmp_path)
    data = get_task(f"folder:{folder}").load()
    assert len(data.train) == 3
    by_id = {it["id"]: it for it in data.test}
    assert by_id["NORMAL/d"]["label"] == 0 and by_id["TUMOUR/e"]["label"] == 1
    assert by_id["TUMOUR/e"]["mask"].endswith("e_mask.png")
    # a 3-D volume gives one item per slice; its mask decides which slices are abnormal
    assert [by_id[f"TUMOUR/vol#{k}"]["label"] for k in range(4)] == [0, 1, 1, 0]
    assert by_id["TUMOUR/vol#2"]["slice"] == 2


def test_folder_slices_along_the_chosen_axis(tmp_path):
    folder = layouts.medical_folder(tmp_path)
    data = get_task(f"folder:{folder}", slice_axis=0).load()
    assert sum(it["id"].startswith("TUMOUR/vol#") for it in data.test) == 12


def test_folder_normal_class_name_is_case_insensitive(tmp_path):
    folder = layouts.medical_folder(tmp_path)
    (folder / "train" / "NORMAL").rename(folder / "train" / "normal")
    assert len(get_task(f"folder:{folder}").load().train) == 3


@pytest.mark.parametrize("name", ["synth-fundus", "synth-oct", "synth-skin"])
def test_synthetic_tasks_load_with_masks(name):
    data = get_task(name, size=32, n_train=4, n_test_normal=2, n_test_abnormal=4).load()
    assert data.counts()["train"] == {"normal": 4}
    assert data.counts()["test"] == {"normal": 2, "abnormal": 4}
    assert data.has_masks
