"""Who each image belongs to (each task's patient rule), and the leaks found before training: a patient in
training and test, byte-identical files, near-duplicates."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared
from typer.testing import CliRunner
from writers import rgb, write_dicom, write_nifti, write_png

from medrecontrast.bench import SweepConfig
from medrecontrast.bench.sweep import plan_sweep
from medrecontrast.cli import app
from medrecontrast.data.items import patient_counts
from medrecontrast.data.leaks import NEAR_DISTANCE, find_leaks
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.run.split import split_holdout
from medrecontrast.tasks import get_task
from medrecontrast.tasks.chest_xray import chest_patient

runner = CliRunner()


def _folder(root, files: dict[str, int]):
    """A folder task layout: ``{relative path: seed}`` written as small PNGs (the same seed: the same bytes)."""
    for relative, seed in files.items():
        write_png(root / relative, rgb(16, 16, seed=seed))
    return root


def test_real_chest_xrays_give_202_pneumonia_children_in_the_test_set():
    """(c) The 390 pneumonia test images of the ZhangLab set come from 202 children (person<N>_...)."""
    root = shared("chest_xray")
    data = get_task("chest-xray").load(root.parent)
    counts = data.counts()["patients"]
    assert counts["test"]["abnormal"] == 202
    assert counts["test"]["images_per_patient_max"] == 9
    assert counts["test"]["normal"] == 225 and counts["train"]["normal"] == 655
    assert not find_leaks(data).patients  # the study numbers of train and test normals do not overlap


def test_chest_xray_patient_names():
    assert chest_patient("person1_bacteria_1.jpeg") == "person1"
    assert chest_patient("IM-0011-0001-0002.jpeg") == "IM-0011"
    assert chest_patient("NORMAL2-IM-0374-0001.jpeg") == "NORMAL2-IM-0374"
    assert chest_patient("scan.jpeg") is None


def test_data_check_json_reports_patients_per_split_and_label():
    root = shared("chest_xray")
    result = runner.invoke(app, ["data", "check", "chest-xray", "--data-root", str(root.parent), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["patients"]["test"]["abnormal"] == 202 and summary["patients"]["test"]["normal"] == 225
    assert summary["patients"]["train"]["normal"] == 655
    assert "pneumonia" in summary["unit"]


def test_oct2017_patient_is_the_number_in_the_name(tmp_path):
    for split, cls, name in (
        ("train", "NORMAL", "NORMAL-101-1.jpeg"),
        ("train", "NORMAL", "NORMAL-101-2.jpeg"),
        ("test", "NORMAL", "NORMAL-202-1.jpeg"),
        ("test", "CNV", "CNV-202-3.jpeg"),
        ("test", "DME", "DME-303-1.jpeg"),
    ):
        write_png(tmp_path / "oct2017" / split / cls / name, rgb(8, 8)[..., 0])
    data = get_task("oct").load(tmp_path)
    assert [it["patient"] for it in data.train] == ["101", "101"]
    assert sorted(it["patient"] for it in data.test) == ["202", "202", "303"]
    assert patient_counts(data.test) == {
        "normal": 1,
        "abnormal": 2,
        "all": 2,
        "images_per_patient_max": 2,
        "with_one_image": 1,
    }
    write_png(tmp_path / "oct2017" / "test" / "CNV" / "renamed.jpeg", rgb(8, 8)[..., 0])
    with pytest.raises(DataLayoutError, match="renamed.jpeg"):
        get_task("oct").load(tmp_path)


def test_synthetic_oct_has_patients_and_the_other_built_in_tasks_do_not():
    oct_data = get_task("synth-oct").load()
    assert oct_data.has_patients
    assert patient_counts(oct_data.test)["images_per_patient_max"] == 3
    assert not get_task("synth-skin").load().has_patients


def test_folder_patient_rules(tmp_path):
    root = _folder(
        tmp_path / "data",
        {
            "train/NORMAL/p1/a.png": 1,
            "train/NORMAL/p2/b.png": 2,
            "train/NORMAL/loose.png": 3,
            "test/NORMAL/p3/c.png": 4,
            "test/ABN/p4_1.png": 5,
            "test/ABN/p4_2.png": 6,
        },
    )
    data = get_task(f"folder:{root}").load()  # default: the sub-folder, else the image is its own unit
    assert [it.get("patient") for it in data.train] == [None, "p1", "p2"]
    assert [it.get("patient") for it in data.test] == [None, None, "p3"]
    data = get_task(f"folder:{root}", patient=r"(p\d+|loose)").load()
    assert [it["patient"] for it in data.test] == ["p4", "p4", "p3"]
    files = get_task(f"folder:{root}", patient="file").load()
    assert len({it["patient"] for it in files.train + files.test}) == 6
    with pytest.raises(DataLayoutError, match="loose.png"):  # a regular expression must match every file
        get_task(f"folder:{root}", patient=r"^(p\d+)/").load()
    with pytest.raises(DataLayoutError, match="directly in its class folder"):
        get_task(f"folder:{root}", patient="subfolder").load()
    with pytest.raises(UserInputError, match="exactly one"):
        get_task(f"folder:{root}", patient=r"(p)(\d)")
    with pytest.raises(UserInputError, match="not a regular expression"):
        get_task(f"folder:{root}", patient="(p")


def test_a_patient_in_training_and_test_of_a_user_folder_is_refused_before_training(tmp_path):
    root = _folder(
        tmp_path / "data",
        {
            "train/NORMAL/patient7/a.png": 1,
            "train/NORMAL/patient8/b.png": 2,
            "test/NORMAL/patient9/c.png": 3,
            "test/ABN/patient7/d.png": 4,
        },
    )
    config = SweepConfig(
        tasks=[f"folder:{root}"], methods=["patchcore"], seeds=[0], profile="tiny", out=str(tmp_path / "runs")
    )
    with pytest.raises(UserInputError, match="patient7") as refused:
        plan_sweep(config.resolved())
    assert "train/NORMAL/patient7/a.png" in str(refused.value) and "test/ABN/patient7/d.png" in str(refused.value)
    assert not (tmp_path / "runs").exists()  # nothing was written, nothing trained
    result = runner.invoke(app, ["data", "check", f"folder:{root}"])
    assert result.exit_code == 1 and "patient7" in result.output


def test_byte_identical_files_under_two_names_are_named_in_a_warning(tmp_path):
    root = _folder(
        tmp_path / "data",
        {
            "train/NORMAL/a.png": 1,
            "train/NORMAL/b.png": 2,
            "train/NORMAL/b_copy.png": 2,
            "test/NORMAL/c.png": 1,
            "test/ABN/d.png": 4,
        },
    )
    data = get_task(f"folder:{root}").load()
    leaks = find_leaks(data)
    assert {(p["where"], p["first"].rsplit("/", 1)[1], p["second"].rsplit("/", 1)[1]) for p in leaks.identical} == {
        ("train/test", "a.png", "c.png"),
        ("train/train", "b.png", "b_copy.png"),
    }
    config = SweepConfig(
        tasks=[f"folder:{root}"], methods=["patchcore"], seeds=[0], profile="tiny", out=str(tmp_path / "runs")
    )
    with pytest.warns(UserWarning, match=r"a\.png = .*c\.png"):
        plan_sweep(config.resolved())
    result = runner.invoke(app, ["data", "check", f"folder:{root}", "--json"])
    assert result.exit_code == 0  # a warning, not a refusal
    assert len(json.loads(result.stdout)["leaks"]["identical_files"]) == 2


def test_near_duplicates_are_found_by_perceptual_hash(tmp_path):
    from PIL import Image
    from scipy import ndimage

    rng = np.random.default_rng(0)

    def smooth() -> np.ndarray:  # an image with structure at several scales, as a scan has
        field = ndimage.gaussian_filter(rng.random((128, 128)), 6)
        return ((field - field.min()) / (field.max() - field.min()) * 255).astype(np.uint8)

    base = smooth()
    write_png(tmp_path / "d" / "train" / "NORMAL" / "a.png", base)
    copy = tmp_path / "d" / "train" / "NORMAL" / "b.jpeg"  # brighter, resized to 80 % and re-encoded
    Image.fromarray(np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)).resize((102, 102)).save(copy, quality=60)
    write_png(tmp_path / "d" / "test" / "NORMAL" / "c.png", smooth())
    write_png(tmp_path / "d" / "test" / "ABN" / "e.png", np.rot90(base).copy())  # not a copy: rotated
    leaks = find_leaks(get_task(f"folder:{tmp_path / 'd'}").load(), near=True)
    assert [(p["first"].rsplit("/", 1)[1], p["second"].rsplit("/", 1)[1]) for p in leaks.near] == [("a.png", "b.jpeg")]
    assert leaks.near[0]["distance"] <= NEAR_DISTANCE and not leaks.identical
    result = runner.invoke(app, ["data", "check", f"folder:{tmp_path / 'd'}", "--duplicates"])
    assert result.exit_code == 0 and "near-duplicate" in result.output


def test_different_children_are_not_near_duplicates_on_the_real_chest_xrays():
    """Chest films look alike at low resolution: the common 64-bit hash at distance 4 called 43 pairs of different
    children duplicates. The 256-bit hash finds only the 6 byte-identical pairs of the test set."""
    root = shared("chest_xray")
    leaks = find_leaks(get_task("chest-xray").load(root.parent), near=True)
    assert leaks.near == [] and len(leaks.identical) == 6
    assert {p["where"] for p in leaks.identical} == {"test/test"}


def test_dicom_patient_id_then_study_then_the_file(tmp_path):
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 16
    write_dicom(tmp_path / "d" / "train" / "NORMAL" / "a.dcm", pixels, patient_id="PAT-1")
    write_dicom(tmp_path / "d" / "train" / "NORMAL" / "b.dcm", pixels + 1, patient_id="PAT-1")
    write_dicom(tmp_path / "d" / "test" / "NORMAL" / "c.dcm", pixels + 2, patient_id="PAT-2")
    import pydicom

    study = write_dicom(tmp_path / "d" / "test" / "ABN" / "d.dcm", pixels + 3, patient_id="")
    ds = pydicom.dcmread(study)
    ds.StudyInstanceUID = "1.2.3.4"  # an anonymised export: no PatientID, the study remains
    ds.save_as(study)
    write_dicom(tmp_path / "d" / "test" / "ABN" / "e.dcm", pixels + 4, patient_id="")  # neither: its own unit
    data = get_task(f"folder:{tmp_path / 'd'}").load()
    assert [it["patient"] for it in data.train] == ["PAT-1", "PAT-1"]
    by_name = {it["image"].rsplit("/", 1)[1]: it.get("patient") for it in data.test}
    assert by_name == {"c.dcm": "PAT-2", "d.dcm": "1.2.3.4", "e.dcm": None}


def test_every_slice_of_a_volume_is_one_patient(tmp_path):
    write_nifti(tmp_path / "v" / "train" / "NORMAL" / "n1.nii.gz", np.random.default_rng(0).random((8, 8, 3)))
    write_nifti(tmp_path / "v" / "test" / "NORMAL" / "n2.nii.gz", np.random.default_rng(1).random((8, 8, 3)))
    write_nifti(tmp_path / "v" / "test" / "ABN" / "a1.nii.gz", np.random.default_rng(2).random((8, 8, 3)))
    data = get_task(f"folder:{tmp_path / 'v'}").load()
    assert len({it["patient"] for it in data.test}) == 2 and len(data.test) == 6
    assert len({it["patient"] for it in data.train}) == 1


def test_hold_out_takes_whole_patients_and_equals_the_image_draw_with_one_image_each():
    singles = [{"id": f"i{k}", "label": 0, "image": f"{k}.png", "patient": f"p{k}"} for k in range(40)]
    plain = [{k: v for k, v in it.items() if k != "patient"} for it in singles]
    assert [it["id"] for it in split_holdout(singles, 0.1)[1]] == [it["id"] for it in split_holdout(plain, 0.1)[1]]
    grouped = [{"id": f"i{k}", "label": 0, "image": f"{k}.png", "patient": f"p{k // 4}"} for k in range(40)]
    train, held = split_holdout(grouped, 0.1)
    assert len(held) >= 4 and not {it["patient"] for it in train} & {it["patient"] for it in held}


def test_unified_members_keep_their_patients_apart():
    data = get_task("unified:synth-oct+synth-skin").load()
    patients = {it.get("patient") for it in data.test}
    assert any(str(p).startswith("synth-oct/") for p in patients) and None in patients


def test_items_with_and_without_a_patient_collate_into_one_batch(tmp_path):
    """Failed before (a batch whose first item names a patient and the next does not): a unified task of synth-oct
    (patients) and synth-fundus (none), or a folder with loose files beside patient folders, stopped ReContrast
    and RD4AD with "KeyError: 'patient'" when the batch was collated."""
    from torch.utils.data import DataLoader

    from medrecontrast.data.dataset import image_dataset

    root = _folder(tmp_path / "data", {"train/NORMAL/loose.png": 1, "train/NORMAL/p1/a.png": 2})
    first = {"image": str(root / "train/NORMAL/p1/a.png"), "label": 0, "mask": None, "id": "b", "category": "N"}
    items = [{**first, "patient": "p1"}, {**first, "image": str(root / "train/NORMAL/loose.png"), "id": "a"}]
    batch = next(iter(DataLoader(image_dataset(items, 16, masks=False, cache="none"), batch_size=2)))
    assert batch["image"].shape[0] == 2 and "patient" not in batch
