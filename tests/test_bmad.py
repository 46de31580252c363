"""BMAD's benchmarks (``bmad:<name>``) on stand-in images written from the released lists in ../shared/data/splits/bmad:
the test lists of BraTS2021, liver and RESC (one JSON line per image with its mask) and the BraTS2021 patient split
rebuilt from BMAD's ``bras.py``."""

import io
import json

import numpy as np
import pytest
from conftest import shared
from PIL import Image

from medrecontrast.errors import DataLayoutError
from medrecontrast.run.split import holdout_split
from medrecontrast.tasks import get_task
from medrecontrast.tasks.registry import task_names


def png_bytes(value: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes()


def write(path, data: bytes = PNG) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def standin(root, name: str, folder: str, train: list[str], valid: list[str], mask_folder: str = "label") -> list[dict]:
    """``<root>/bmad/<folder>`` with the released test list of ``name`` and the given train/valid names."""
    lines = [json.loads(line) for line in shared(f"splits/bmad/{name}.jsonl").read_text().splitlines() if line.strip()]
    base = root / "bmad" / folder
    for line in lines:
        write(base / line["image_path"])
        if line.get("mask_path"):
            write(base / line["mask_path"].replace("/label/", f"/{mask_folder}/"))
    for n in train:
        write(base / "train" / "good" / "img" / f"{n}.png")
    for n in valid:
        write(base / "valid" / "good" / "img" / f"{n}.png")
    write(base / "valid" / "Ungood" / "img" / f"{train[0]}.png")
    return lines


def test_brats2021_counts_masks_patients_and_validation_normals_as_released(tmp_path):
    split = json.loads(shared("splits/bmad/bmad_brats_patient_split.json").read_text())
    train = [f"{subject}_{s}" for subject in split["train"][:20] for s in (60, 61)]
    valid = [f"{subject}_70" for subject in split["valid_normal"]]
    lines = standin(tmp_path, "Brain", "Brain", train, valid)
    data = get_task("bmad:brain").load(tmp_path)
    normals = [it for it in data.test if it["label"] == 0]
    abnormal = [it for it in data.test if it["label"] == 1]
    assert (len(normals), len(abnormal)) == (640, 3075)  # BMAD's Table 2: 640 normal + 3,075 tumour
    assert all(it["mask"] and it["mask"].endswith(it["image"].rsplit("/", 1)[1]) for it in abnormal)
    assert all("/label/" in it["mask"] for it in abnormal)
    tested = {line["image_path"].rsplit("/", 1)[1].split("_")[0] for line in lines}
    assert {it["patient"] for it in data.test} == tested
    assert len(data.train) == 40 and {it["patient"] for it in data.train} == set(split["train"][:20])
    # BMAD's valid normals are the held-out normals where a run holds any out, and every training normal trains
    assert len(data.validation) == len(split["valid_normal"])
    fit, held = holdout_split(data, 0.05)
    assert fit == data.train and held == data.validation
    assert holdout_split(data, 0.0) == (data.train, [])
    shared_patients = set(split["valid_normal"]) & tested
    assert any(
        "39 validation normals" in n and f"{len(shared_patients)} of their 39 patients" in n for n in data.notes
    ), data.notes
    assert data.task.image_size == 224 and data.task.crop_size is None  # config/*.yaml: image_size 224, no crop
    assert "validation" in data.manifest()


def test_liver_and_retina_read_anomaly_mask_too_and_name_their_volumes(tmp_path):
    standin(tmp_path, "Liver", "Liver", ["3_10", "3_11"], ["5_20"], mask_folder="anomaly_mask")
    data = get_task("bmad:liver").load(tmp_path)
    assert sum(it["label"] == 0 for it in data.test) == 833 and sum(it["label"] == 1 for it in data.test) == 660
    assert all("/anomaly_mask/" in it["mask"] for it in data.test if it["label"] == 1)
    assert {it["patient"] for it in data.train} == {"3"}
    standin(tmp_path, "Retina", "RESC", ["1_5"], ["2_7"])
    retina = get_task("bmad:retina").load(tmp_path)
    assert sum(it["label"] == 0 for it in retina.test) == 1041 and sum(it["label"] == 1 for it in retina.test) == 764


def test_refusals_name_the_file_and_the_layout(tmp_path):
    base = tmp_path / "bmad" / "Brain"
    for split, cls in (("train", "good"), ("test", "good"), ("test", "Ungood")):
        write(base / split / cls / "img" / "00001_60.png")
    write(base / "test" / "Ungood" / "label" / "00001_60.png")
    write(base / "test" / "Ungood" / "anomaly_mask" / "00001_60.png")
    with pytest.raises(DataLayoutError, match="both label/ and anomaly_mask/"):
        get_task("bmad:brain").load(tmp_path)
    (base / "test" / "Ungood" / "anomaly_mask" / "00001_60.png").unlink()
    (base / "test" / "Ungood" / "anomaly_mask").rmdir()
    write(base / "train" / "good" / "img" / "scan.png")
    with pytest.raises(DataLayoutError, match="scan.png is not named as BMAD names"):
        get_task("bmad:brain").load(tmp_path)
    with pytest.raises(DataLayoutError, match=r"bmad/Liver/\{train/good"):
        get_task("bmad:liver").load(tmp_path)


def test_the_six_benchmarks_are_listed_and_image_level_sets_read_their_class_folders(tmp_path):
    assert {f"bmad:{v}" for v in ("brain", "liver", "retina", "oct", "chest", "histopathology")} <= set(task_names())
    from medrecontrast.run import resolve_run_config

    for method in ("patchcore", "rd4ad", "recontrast", "ae"):  # BMAD ran every method at 224 px, no crop
        run = resolve_run_config("bmad:retina", method, 0, "paper")
        assert (run.image_size, run.crop_size) == (224, None), method
    assert resolve_run_config("uni-medical", "patchcore", 0, "paper").crop_size is None
    uni = get_task("uni-medical")  # ADer's Uni-Medical: one model over the three sets with masks
    assert [m.name for m in uni.members] == ["bmad:brain", "bmad:liver", "bmad:retina"] and uni.image_size == 224
    base = tmp_path / "bmad" / "camelyon16_256"
    for split, cls, n in (("train", "good", 3), ("valid", "good", 2), ("test", "good", 2), ("test", "Ungood", 2)):
        for k in range(n):
            write(base / split / cls / f"{k}.png", png_bytes(k))
    data = get_task("bmad:histopathology").load(tmp_path)
    assert (len(data.train), len(data.test), len(data.validation)) == (3, 4, 2)
    assert not data.has_masks and not data.has_patients
