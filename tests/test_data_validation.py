"""Every bad input gives one clear message naming the file and what was expected; nothing is modified."""

import hashlib
import json
import re

import layouts
import numpy as np
import pytest
from typer.testing import CliRunner
from writers import mask, rgb, write_dicom, write_png

from medrecontrast.cli import app
from medrecontrast.data.check import check_task_data
from medrecontrast.errors import DataLayoutError, UserInputError
from medrecontrast.tasks import get_task

runner = CliRunner()


def check(*args):
    return runner.invoke(app, ["data", "check", *map(str, args)])


def tree_digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_missing_data_root():
    result = check("aptos")
    assert result.exit_code == 2
    assert "no data root" in result.output and "MEDRECONTRAST_DATA" in result.output and "train.csv" in result.output
    assert "Traceback" not in result.output


def test_missing_dataset_folder(tmp_path):
    result = check("oct", "--data-root", tmp_path)
    assert result.exit_code == 2 and f"{tmp_path / 'oct2017'} does not exist" in result.output.replace("\n", "")


def test_missing_csv(tmp_path):
    (tmp_path / "aptos" / "train_images").mkdir(parents=True)
    with pytest.raises(DataLayoutError, match=r"missing file .*train\.csv"):
        get_task("aptos").load(tmp_path)


def test_csv_without_expected_columns(tmp_path):
    folder = layouts.aptos(tmp_path, [0, 1])
    (folder / "train.csv").write_text("image,level\nimg0000,0\n")
    with pytest.raises(
        DataLayoutError,
        match=r"train\.csv lacks column\(s\) id_code, diagnosis; expected id_code, diagnosis, found image, level",
    ):
        get_task("aptos").load(tmp_path)


def test_isic_csv_that_is_not_one_hot(tmp_path):
    folder = layouts.isic2018(tmp_path)
    csv = folder / "ISIC2018_Task3_Validation_GroundTruth" / "ISIC2018_Task3_Validation_GroundTruth.csv"
    csv.write_text(csv.read_text().replace("ISIC_0000001,1.0", "ISIC_0000001,0.0"))
    with pytest.raises(DataLayoutError, match="row 3 is not one-hot"):
        get_task("isic").load(tmp_path)


def test_aptos_grade_out_of_range(tmp_path):
    folder = layouts.aptos(tmp_path, [0, 1])
    (folder / "train.csv").write_text("id_code,diagnosis\nimg0000,0\nimg0001,7\n")
    with pytest.raises(DataLayoutError, match="row 3: diagnosis 7 is not a grade 0-4"):
        get_task("aptos").load(tmp_path)


def test_no_normal_training_images(tmp_path):
    folder = layouts.mvtec(tmp_path)
    for p in (folder / "train" / "good").iterdir():
        p.unlink()
    result = check("mvtec:bottle", "--data-root", tmp_path)
    assert result.exit_code == 2 and "no normal training images" in result.output


def test_unknown_task_name():
    result = check("mvtec:bottel")
    assert result.exit_code == 2 and "not a MVTec AD class" in result.output and "Traceback" not in result.output


def test_truncated_image_and_missing_file_are_found_by_check(tmp_path):
    folder = layouts.mvtec(tmp_path)
    broken = folder / "test" / "crack" / "000.png"
    write_png(broken, rgb(16, 16, seed=3))
    broken.write_bytes(broken.read_bytes()[:400])  # the header survives, the pixels do not
    (folder / "train" / "good" / "001.png").write_bytes(b"not a png at all")
    shallow = json.loads(check("mvtec:bottle", "--data-root", tmp_path, "--json").stdout)
    assert not shallow["ok"] and [p["file"] for p in shallow["problems"]] == [
        str(folder / "train" / "good" / "001.png")
    ]
    result = check("mvtec:bottle", "--data-root", tmp_path, "--json", "--deep")
    report = json.loads(result.stdout)
    assert result.exit_code == 1
    assert {p["id"] for p in report["problems"]} == {"train/001", "crack/000"}
    assert any("truncated" in p["problem"] or "decode" in p["problem"] for p in report["problems"])


def test_a_truncated_image_stops_bench_before_training_and_skip_unreadable_is_gone(tmp_path, monkeypatch):
    """Issue 11 item 11: a truncated PNG passes a header check; bench decodes every image before the
    first run (once: the result is remembered by the files' fingerprint), and the half-working
    --skip-unreadable (data check said OK, bench and train did not skip) is removed."""
    monkeypatch.setenv("MEDRECONTRAST_CACHE", str(tmp_path / "cache"))
    folder = layouts.mvtec(tmp_path)
    broken = folder / "test" / "crack" / "000.png"
    broken.write_bytes(broken.read_bytes()[:400])  # the header survives, the pixels do not
    assert check_task_data(get_task("mvtec:bottle").load(tmp_path), progress=False).ok  # headers alone pass
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--tasks",
            "mvtec:bottle",
            "--data-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "runs"),
            "--profile",
            "tiny",
        ],
    )
    assert result.exit_code == 2 and "000.png" in result.output and "--deep" in result.output, result.output
    assert not (tmp_path / "runs").exists()
    result = check("mvtec:bottle", "--data-root", tmp_path, "--skip-unreadable")
    assert result.exit_code == 2 and "No such option" in result.output


def test_dicom_without_pixel_data_is_found_by_check(tmp_path):
    folder = layouts.medical_folder(tmp_path)
    write_dicom(folder / "train" / "NORMAL" / "b.dcm", np.zeros((12, 12)), with_pixels=False)
    report = json.loads(check(f"folder:{folder}", "--json").stdout)
    assert report["problems"] == [
        {
            "split": "train",
            "id": "train/b",
            "file": str(folder / "train" / "NORMAL" / "b.dcm"),
            "problem": "DICOM file has no pixel data (is it a report or a DICOMDIR?)",
        }
    ]


def test_mask_of_another_size_is_found_by_check(tmp_path):
    folder = layouts.mvtec(tmp_path)
    write_png(folder / "ground_truth" / "crack" / "001_mask.png", mask(8, 16))
    report = json.loads(check("mvtec:bottle", "--data-root", tmp_path, "--json").stdout)
    assert report["problems"][0]["problem"] == "mask is 8x16 but its image is 16x16"


def test_csv_listing_a_missing_image(tmp_path):
    folder = layouts.visa(tmp_path)
    (folder / "candle" / "Data" / "Images" / "Anomaly" / "001.JPG").unlink()
    report = json.loads(check("visa:candle", "--data-root", tmp_path, "--json").stdout)
    assert report["problems"] == [
        {
            "split": "test",
            "id": "candle/Data/Images/Anomaly/001",
            "file": str(folder / "candle/Data/Images/Anomaly/001.JPG"),
            "problem": "file does not exist",
        }
    ]


def test_no_input_file_is_modified(tmp_path):
    folder = layouts.aptos(tmp_path, [0] * 4 + [3])
    before = tree_digest(folder)
    check("aptos", "--data-root", tmp_path, "--deep")
    assert runner.invoke(app, ["data", "prepare", "aptos", "--data-root", str(tmp_path)]).exit_code == 0
    after = tree_digest(folder)
    assert {k: v for k, v in after.items() if not k.startswith("prepared_512/")} == before


def test_user_errors_are_user_input_errors():
    assert issubclass(DataLayoutError, UserInputError)


def test_files_sharing_a_stem_are_refused_with_both_names(tmp_path):
    """t000.png and t000.jpg once became one id, and --skip-unreadable could drop the good twin."""
    folder = layouts.medical_folder(tmp_path)
    first = folder / "train" / "NORMAL" / "a.png"
    twin = write_png(folder / "train" / "NORMAL" / "a.jpg", rgb(12, 12))
    with pytest.raises(UserInputError) as error:
        get_task(f"folder:{folder}").load()
    assert first.name in str(error.value) and twin.name in str(error.value)


def test_a_header_check_says_plainly_what_it_did_not_read(tmp_path):
    """Issue 23 item 4: `data check` without --deep printed a bare OK for a truncated PNG; it now says that only
    headers were read and that --deep decodes (and --deep finds the file)."""
    folder = layouts.mvtec(tmp_path)
    broken = folder / "test" / "crack" / "000.png"
    broken.write_bytes(broken.read_bytes()[:400])
    shallow = check("mvtec:bottle", "--data-root", tmp_path)
    assert shallow.exit_code == 0 and "headers and sizes only" in shallow.stdout and "--deep decodes" in shallow.stdout
    assert check("mvtec:bottle", "--data-root", tmp_path, "--deep").exit_code == 1


def test_a_folder_tasks_classes_are_listed_under_their_label(tmp_path):
    """Issue 23 item 4: the NORMAL row of the test split was printed under `test / abnormal`."""
    import re

    root = tmp_path / "scans"
    for split, name, count in (("train", "NORMAL", 3), ("test", "NORMAL", 2), ("test", "TUMOUR", 2)):
        for index in range(count):
            write_png(root / split / name / f"{index}.png", rgb(16, 16, seed=index))
    result = runner.invoke(app, ["data", "check", f"folder:{root}"], env={"COLUMNS": "120"})
    rows = [re.sub(r"[│┃]", "|", line) for line in result.stdout.splitlines() if "│" in line]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    test_rows = cells[[c[:2] for c in cells].index(["test", "normal"]) :]
    assert [c[1] for c in test_rows] == ["normal", "NORMAL", "abnormal", "TUMOUR"]


def test_tasks_json_uses_stable_snake_case_keys():
    """Issue 23 item 4: `tasks --json` used the table's display headers (`"train | test"`) as keys."""
    tasks = json.loads(runner.invoke(app, ["tasks", "--json"]).stdout)["tasks"]
    assert all(set(row) == {"task", "modality", "train", "test", "masks", "size", "patients"} for row in tasks)
    assert all(re.fullmatch(r"[a-z_]+", key) for row in tasks for key in row)


def test_a_cache_path_that_is_a_file_is_one_line(tmp_path, monkeypatch):
    """Issue 37 item 9, failed before: `MEDRECONTRAST_CACHE` naming a file ended in NotADirectoryError's traceback."""
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("MEDRECONTRAST_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(
        app,
        [
            "bench",
            "--profile",
            "tiny",
            "--tasks",
            "synth-oct",
            "--methods",
            "patchcore",
            "--seeds",
            "0",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2 and "is a file, not a folder" in result.output and "Traceback" not in result.output


def test_a_weights_file_of_random_bytes_is_said_to_be_no_weights_file(tmp_path):
    """Issue 37 item 9, failed before: PyTorch's own message advised `weights_only=False` — wrong and unsafe for a
    file of unknown origin. Now it says what the file is not; a pickled model object is told to save its
    state_dict."""
    import torch

    from medrecontrast.compute import load_torch_file

    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(UserInputError) as refused:
        load_torch_file(tmp_path / "random.pth", "weights file")
    assert "not a file written by torch.save" in str(refused.value) and "weights_only" not in str(refused.value)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pth")
    with pytest.raises(UserInputError, match="save its state_dict"):
        load_torch_file(tmp_path / "model.pth", "weights file")


def test_nan_backbone_weights_are_refused_naming_the_tensor(tmp_path):
    """Issue 37 item 9, failed before: NaN weights loaded, every score was NaN, and scikit-learn said "Input contains
    infinity" at the metrics."""
    import torch

    from medrecontrast.compute import load_torch_file

    state = torch.nn.Linear(2, 2).state_dict()
    state["bias"][1] = float("nan")
    torch.save({"state_dict": state}, tmp_path / "nan.pth")
    with pytest.raises(UserInputError, match=r"NaN or infinite values \(first in state_dict.bias\)"):
        load_torch_file(tmp_path / "nan.pth", "weights file")
