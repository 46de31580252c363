"""Label files and folders that once gave silently wrong numbers (issue 22, items 4-6)."""

import warnings

import pytest
from layouts import aptos, isic2018, visa
from writers import rgb, write_png

from medrecontrast.errors import DataLayoutError
from medrecontrast.tasks import get_task


def test_a_duplicated_aptos_id_is_refused_naming_its_rows(tmp_path):
    """Failed before: one id graded 0 and 3 put one image in train and test, and bench exited 0."""
    folder = aptos(tmp_path, [0, 0, 3])
    (folder / "train.csv").write_text("id_code,diagnosis\nimg0000,0\nimg0001,0\nimg0000,3\n")
    with pytest.raises(DataLayoutError, match=r"id_code 'img0000' appears on rows 2, 4"):
        get_task("aptos", n_train=1).load(tmp_path)


@pytest.mark.parametrize("bad", ["../secret", "/etc/passwd", "sub/img0000", ".."])
def test_an_id_that_is_not_a_plain_file_name_is_refused(tmp_path, bad):
    """Failed before: an absolute or ../ id read a PNG from outside the data root into the report."""
    folder = aptos(tmp_path, [0, 0, 3])
    (folder / "train.csv").write_text(f"id_code,diagnosis\nimg0000,0\nimg0001,0\n{bad},3\n")
    with pytest.raises(DataLayoutError, match=r"row 4: id_code .* is not a plain file name"):
        get_task("aptos", n_train=1).load(tmp_path)


def test_numeric_looking_ids_stay_text(tmp_path):
    """Failed before: the id 0002 looked for 2.png."""
    folder = aptos(tmp_path, [0, 0, 3])
    for i, name in enumerate(("0001", "0002", "0003")):
        write_png(folder / "train_images" / f"{name}.png", rgb(12, 16, seed=i))
    (folder / "train.csv").write_text("id_code,diagnosis\n0001,0\n0002,0\n0003,3\n")
    data = get_task("aptos", n_train=1).load(tmp_path)
    assert sorted(it["image"].rsplit("/", 1)[1] for it in data.train + data.test) == [
        "0001.png",
        "0002.png",
        "0003.png",
    ]


def test_the_same_rules_hold_for_isic_and_visa(tmp_path):
    folder = isic2018(tmp_path)
    csv = folder / "ISIC2018_Task3_Validation_GroundTruth" / "ISIC2018_Task3_Validation_GroundTruth.csv"
    csv.write_text(csv.read_text().replace("ISIC_0000001", "ISIC_0000000"))
    with pytest.raises(DataLayoutError, match="ISIC_0000000' appears on rows 2, 3"):
        get_task("isic").load(tmp_path)
    folder = visa(tmp_path)
    table = folder / "split_csv" / "1cls.csv"
    table.write_text(table.read_text().replace("candle/Data/Images/Normal/0100.JPG", "../../outside.JPG", 1))
    with pytest.raises(DataLayoutError, match="leaves the data folder"):
        get_task("visa:candle").load(tmp_path)


def folder_layout(root, nested: bool = True):
    for i in range(3):
        write_png(root / "train" / "NORMAL" / f"n{i}.png", rgb(8, 8, seed=i))
    write_png(root / "test" / "NORMAL" / "t0.png", rgb(8, 8, seed=10))
    for patient in ("patient7", "patient8"):
        for i in range(2):
            write_png(root / "test" / "ABN" / patient / f"img{i}.png", rgb(8, 8, seed=20 + i))
    return root


def test_a_folder_task_reads_sub_folders_and_records_them(tmp_path):
    """Failed before: images in test/ABN/patient7/ were skipped (data check said OK)."""
    data = get_task(f"folder:{folder_layout(tmp_path)}").load()
    abnormal = [it for it in data.test if it["label"] == 1]
    assert len(abnormal) == 4 and {it["subfolder"] for it in abnormal} == {"patient7", "patient8"}
    assert len({it["id"] for it in data.test}) == len(data.test)  # ids stay unique across sub-folders
    assert {it["subfolder"] for it in data.train} == {""}


def test_official_layouts_warn_about_images_they_do_not_read(tmp_path):
    from medrecontrast.tasks.folder import list_image_files

    folder_layout(tmp_path)
    with pytest.warns(UserWarning, match=r"4 image\(s\) in sub-folder\(s\) patient7, patient8 are not read"):
        assert list_image_files(tmp_path / "test" / "ABN") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list_image_files(tmp_path / "train" / "NORMAL")) == 3


def test_folders_that_differ_only_in_case_are_refused(tmp_path):
    """Failed before: with train/NORMAL and train/normal, one of them was silently ignored."""
    folder_layout(tmp_path)
    write_png(tmp_path / "train" / "normal" / "x.png", rgb(8, 8))
    with pytest.raises(DataLayoutError, match="differ only in case: NORMAL, normal"):
        get_task(f"folder:{tmp_path}").load()


@pytest.mark.parametrize("only", ["NORMAL", "ABN"])
def test_a_test_set_of_one_class_is_refused_before_training(tmp_path, only):
    """Failed before: it passed every check, trained, then failed at evaluation with a traceback."""
    import shutil

    folder_layout(tmp_path)
    shutil.rmtree(tmp_path / "test" / ("ABN" if only == "NORMAL" else "NORMAL"))
    missing = "abnormal" if only == "NORMAL" else "normal"
    with pytest.raises(DataLayoutError, match=f"none of them {missing}"):
        get_task(f"folder:{tmp_path}").load()


def test_absurd_schedules_and_seeds_are_refused_when_the_sweep_is_planned():
    """Failed before: iters = 10**30 sat `running` with no progress; a seed of 10**20 failed after planning."""
    from medrecontrast.errors import UserInputError
    from medrecontrast.run import resolve_run_config

    with pytest.raises(UserInputError, match=r"iters must be at most 100,000,000"):
        resolve_run_config("synth-oct", "rd4ad", 0, "tiny", layers=[("[options]", {"iters": 10**30})])
    with pytest.raises(UserInputError, match=r"seed must be an integer from 0 to 4,294,967,295"):
        resolve_run_config("synth-oct", "rd4ad", 10**20, "tiny")
    with pytest.raises(UserInputError, match="seed must be"):
        resolve_run_config("synth-oct", "rd4ad", -1, "tiny")
    assert resolve_run_config("synth-oct", "rd4ad", 2**32 - 1, "tiny").seed == 2**32 - 1


def test_error_messages_keep_their_brackets_and_a_bracketed_path_does_not_crash(tmp_path):
    """Failed before: messages were printed as Rich markup, so `[task.synth-fundsu]` and its did-you-mean
    vanished, and a path holding `[/x]` crashed the printer with a traceback."""
    from typer.testing import CliRunner

    from medrecontrast.cli import app

    config = tmp_path / "sweep.toml"
    config.write_text('tasks = ["synth-fundus"]\nmethods = ["patchcore"]\n[task.synth-fundsu]\niters = 1\n')
    result = CliRunner().invoke(app, ["bench", "--config", str(config), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "[task.synth-fundsu]" in result.output and "synth-fundus" in result.output
    odd = tmp_path / "a[/x]b"
    result = CliRunner().invoke(app, ["tables", str(odd)])
    assert result.exit_code == 2 and "[/x]" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped"])
def test_a_damaged_cache_entry_is_recomputed_with_a_warning_naming_the_image(tmp_path, damage):
    """Failed before: a truncated or empty entry broke every run reading that image for ever (OSError, no
    file named), and a flipped byte was read back silently."""
    import torch

    from medrecontrast.data.dataset import image_dataset

    folder_layout(tmp_path / "data")
    items = get_task(f"folder:{tmp_path / 'data'}").load().train
    cache = tmp_path / "cache"
    first = image_dataset(items, 16, cache_root=cache)[0]["image"].clone()
    entry = max(cache.glob("*.pt"), key=lambda p: p.stat().st_mtime_ns)
    entries = sorted(cache.glob("*.pt"))
    assert len(entries) == 1
    data = bytearray(entry.read_bytes())
    if damage == "empty":
        data = bytearray()
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        stored = torch.load(entry, weights_only=False)
        stored["image"] = stored["image"] + 0.25  # the checksum no longer matches
        torch.save(stored, entry)
        data = bytearray(entry.read_bytes())
    entry.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"cache entry .* of .*n0.png is damaged"):
        again = image_dataset(items, 16, cache_root=cache)[0]["image"]
    assert torch.equal(again, first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(image_dataset(items, 16, cache_root=cache)[0]["image"], first)  # repaired


def test_environment_failures_and_odd_files_are_one_line_not_tracebacks(tmp_path, monkeypatch):
    """Failed before: a non-UTF-8 TOML, a full disk during `report` and a config.json linked to another file
    each ended in a traceback; a killed `report` left its .partial file for ever."""
    import errno
    import json

    from typer.testing import CliRunner

    from medrecontrast.cli import app

    runner = CliRunner()
    toml = tmp_path / "latin1.toml"
    toml.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    result = runner.invoke(app, ["bench", "--config", str(toml)])
    assert result.exit_code == 2 and "not UTF-8 text" in result.output and "Traceback" not in result.output

    runs = tmp_path / "runs"
    run = runs / "synth-oct" / "patchcore" / "seed-0"
    run.mkdir(parents=True)
    (runs / "sweep.json").write_text(json.dumps({"format": 1, "name": "t"}))
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (run / "config.json").symlink_to(tmp_path / "picture.png")
    (run / "status.json").write_text(json.dumps({"status": "finished"}))
    result = runner.invoke(app, ["report", str(runs), "--report", str(tmp_path / "report")])
    assert result.exit_code == 2 and "a link to" in result.output and "Traceback" not in result.output

    import medrecontrast.bench.report as report_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "report" / "README.md"))

    (run / "config.json").unlink()
    monkeypatch.setattr(report_module, "collect_results", full)
    result = runner.invoke(app, ["report", str(runs), "--report", str(tmp_path / "report")])
    assert result.exit_code == 1 and "No space left on device" in result.output and "Traceback" not in result.output


def test_files_the_suite_cannot_read_are_listed_or_refused_by_name(tmp_path):
    """Issue 37 item 5, failed before: .npy, .gif and .webp files in a class folder were skipped without a word, and a
    folder of .mha volumes said "no normal training images found"."""
    import warnings

    import numpy as np
    from PIL import Image

    from medrecontrast.errors import DataLayoutError
    from medrecontrast.tasks import get_task

    root = tmp_path / "data"
    for split, cls in (("train", "NORMAL"), ("test", "NORMAL"), ("test", "ABN")):
        (root / split / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / split / cls / "a.png")
    np.save(root / "train" / "NORMAL" / "b.npy", np.zeros(3))
    (root / "train" / "NORMAL" / "c.gif").write_bytes(b"GIF89a")
    (root / "train" / "NORMAL" / "d.gif").write_bytes(b"GIF89a")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        get_task(f"folder:{root}").load()
    assert any("3 file(s) not read (.gif 2, .npy 1)" in str(w.message) for w in caught)
    (root / "test" / "ABN" / "scan.mha").write_bytes(b"ObjectType = Image")
    with pytest.raises(DataLayoutError, match=r"scan.mha\) are volumes the suite does not read; convert them to NIfTI"):
        get_task(f"folder:{root}").load()


def test_abnormal_volumes_without_masks_are_said_or_refused(tmp_path):
    """Issue 37 item 4, failed before: without a mask every slice of an abnormal volume was labelled abnormal (8 of
    25 slices held the lesion) with no word. Now `data check`, the run's data.json and the report say so, and
    unmasked_volumes = "refuse" stops it."""
    import json

    import numpy as np
    from typer.testing import CliRunner
    from writers import write_nifti

    from medrecontrast.cli import app
    from medrecontrast.errors import DataLayoutError
    from medrecontrast.tasks import get_task

    rng = np.random.default_rng(0)
    write_nifti(tmp_path / "v" / "train" / "NORMAL" / "n1.nii.gz", rng.random((8, 8, 3)))
    write_nifti(tmp_path / "v" / "test" / "NORMAL" / "n2.nii.gz", rng.random((8, 8, 3)))
    write_nifti(tmp_path / "v" / "test" / "ABN" / "a1.nii.gz", rng.random((8, 8, 4)))
    data = get_task(f"folder:{tmp_path / 'v'}").load()
    [note] = data.labelling_notes()
    assert "1 abnormal test volume(s) have no mask, so all 4 of their slices are labelled abnormal" in note
    result = CliRunner().invoke(app, ["data", "check", f"folder:{tmp_path / 'v'}", "--json"])
    assert json.loads(result.stdout)["labelling"] == [note]
    with pytest.raises(DataLayoutError, match="a1.nii.gz is an abnormal volume without a mask"):
        get_task(f"folder:{tmp_path / 'v'}", unmasked_volumes="refuse").load()
