"""DICOM and NIfTI pixels as a clinician's viewer shows them, one rule per task (issue 22, items 1-3 and 9).

Real files where they exist (pydicom's CT_small.dcm and MR_small.dcm), the rest written here."""

import gzip
import warnings

import numpy as np
import pytest
from writers import write_nifti

from medrecontrast.data import readers
from medrecontrast.data.readers import dicom_display_values, read_header, read_image, resolve_window
from medrecontrast.errors import UnreadableImageError, UserInputError
from medrecontrast.tasks import get_task

pydicom = pytest.importorskip("pydicom")
nib = pytest.importorskip("nibabel")


def real_dicom(name: str):
    from pydicom.data import get_testdata_file

    return pydicom.dcmread(get_testdata_file(name))


def ct_with_hu(tmp_path, values) -> str:
    """pydicom's real CT_small.dcm (signed 16-bit, intercept -1024, no window) with its first pixels set to
    the given Hounsfield units."""
    ds = real_dicom("CT_small.dcm")
    pixels = ds.pixel_array.copy()
    pixels.flat[: len(values)] = np.asarray(values) + 1024  # stored = HU - intercept
    ds.PixelData = pixels.tobytes()
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    return str(path)


def test_ct_window_separates_grey_and_white_matter(tmp_path):
    """Failed before: signed CT was scaled by the stored bits' range, 40 vs 80 HU differed by 0.0006."""
    path = ct_with_hu(tmp_path, [40, 80, 30, -1000])
    brain = read_image(path, intensity={"window": list(resolve_window("brain"))})[0].ravel()
    assert brain[0] == pytest.approx(0.5, abs=0.01)  # the window's centre is mid-grey, as a viewer shows it
    assert brain[1] == 1.0 and brain[3] == 0.0  # above and below the window
    assert brain[0] - brain[2] == pytest.approx(10 / 79, abs=1e-3)  # 10 HU = 1/8 of the 80 HU window
    stored = read_image(path)[0].ravel()  # no window anywhere: the stored bits' range, as before
    assert abs(stored[1] - stored[0]) < 0.001


def test_the_files_own_window_is_applied_as_pydicom_applies_it():
    """MR_small.dcm carries WindowCenter 600 / WindowWidth 1600; failed before (ignored)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = real_dicom("MR_small.dcm")
    ours = read_image(pydicom.data.get_testdata_file("MR_small.dcm"))[0]
    voi = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    np.testing.assert_allclose(ours, (voi + 32768) / 65535, atol=1e-6)  # pydicom's signed 16-bit output range
    assert float(ours.max() - ours.min()) > 0.5


def test_a_task_window_wins_over_the_files_own():
    ds = real_dicom("MR_small.dcm")
    own = dicom_display_values(ds, ds.pixel_array)
    narrow = dicom_display_values(ds, ds.pixel_array, {"window": [600, 200]})
    assert not np.allclose(own, narrow) and (narrow == 1.0).mean() > (own == 1.0).mean()


def test_low_contrast_dicom_without_a_window_warns(tmp_path, monkeypatch):
    """uint16 MR stored 0..2000 with 16 bits and no window used [0, 0.03] silently."""
    monkeypatch.setattr(readers, "_WARNED", set())
    ds = real_dicom("MR_small.dcm")
    for keyword in ("WindowCenter", "WindowWidth"):
        delattr(ds, keyword)
    ds.PixelRepresentation = 0
    pixels = (np.linspace(0, 2000, ds.Rows * ds.Columns).reshape(ds.Rows, ds.Columns)).astype(np.uint16)
    with pytest.warns(UserWarning, match="set the task's window"):
        scaled = dicom_display_values(ds, pixels)
    assert scaled.max() < 0.05


def test_window_option_is_checked_and_given_to_every_dicom_and_nifti_item(tmp_path):
    for split, cls in (("train", "NORMAL"), ("test", "NORMAL"), ("test", "BLEED")):
        write_nifti(tmp_path / split / cls / "a.nii.gz", np.zeros((8, 8, 2), np.float32))
    data = get_task(f"folder:{tmp_path}", window="brain").load()
    assert all(it["intensity"] == {"window": [40.0, 80.0]} for it in data.train + data.test)
    with pytest.raises(UserInputError, match="window must be"):
        get_task(f"folder:{tmp_path}", window="brian")
    with pytest.raises(UserInputError, match="width must be positive"):
        get_task(f"folder:{tmp_path}", window=[40, 0])


def test_nifti_volumes_of_one_task_share_one_scale(tmp_path):
    """Failed before: each volume by its own min/max, so one 30,000-HU metal voxel moved 40 HU from 0.26 to 0.03."""
    rng = np.random.default_rng(0)
    for index in range(3):
        volume = rng.uniform(-1000, 1000, (16, 16, 2)).astype(np.float32)
        volume[0, 0, 0] = 40.0
        if index == 1:
            volume[5, 5, 1] = 30000.0  # metal
        write_nifti(tmp_path / "train" / "NORMAL" / f"v{index}.nii.gz", volume)
    write_nifti(tmp_path / "test" / "NORMAL" / "t.nii.gz", np.full((16, 16, 2), 40.0, np.float32))
    write_nifti(tmp_path / "test" / "BLEED" / "b.nii.gz", np.full((16, 16, 2), 40.0, np.float32))
    data = get_task(f"folder:{tmp_path}").load()
    rules = {str(it["intensity"]) for it in data.train + data.test}
    assert len(rules) == 1  # one rule for the whole task
    low, high = data.train[0]["intensity"]["range"]
    assert -1000 <= low < -950 and 950 < high <= 1000  # robust: the metal voxel does not stretch it
    values = [
        read_image(it["image"], it["slice"], 2, it["intensity"])[0, 0, 0] for it in data.train if it["slice"] == 0
    ]
    assert np.ptp(values) < 1e-6 and values[0] == pytest.approx((40 - low) / (high - low), abs=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_refused_naming_the_file_and_count(tmp_path, bad):
    volume = np.zeros((8, 8, 3), np.float32)
    volume[1, 1, 1] = bad
    volume[2, 2, 2] = bad
    path = write_nifti(tmp_path / "v.nii.gz", volume)
    with pytest.raises(UnreadableImageError, match=r"2 non-finite voxel\(s\)") as error:
        read_image(path, 0)
    assert "v.nii.gz" in str(error.value)


def test_a_nifti_mask_of_another_shape_or_orientation_is_refused(tmp_path):
    """Failed before: a 10-slice mask for a 6-slice volume relabelled every abnormal slice and passed."""
    write_nifti(tmp_path / "train" / "NORMAL" / "n.nii.gz", np.zeros((8, 8, 6), np.float32))
    write_nifti(tmp_path / "test" / "NORMAL" / "n.nii.gz", np.zeros((8, 8, 6), np.float32))
    write_nifti(tmp_path / "test" / "BLEED" / "b.nii.gz", np.ones((8, 8, 6), np.float32))
    mask = tmp_path / "ground_truth" / "BLEED" / "b_mask.nii.gz"
    write_nifti(mask, np.ones((8, 8, 10), np.float32))
    with pytest.raises(UserInputError, match=r"shape \(8, 8, 10\) but its image .*b.nii.gz has \(8, 8, 6\)"):
        get_task(f"folder:{tmp_path}").load()
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    nib.save(nib.Nifti1Image(np.ones((8, 8, 6), np.float32), affine=shifted), str(mask))
    with pytest.raises(UserInputError, match="different orientations"):
        get_task(f"folder:{tmp_path}").load()
    write_nifti(mask, np.ones((8, 8, 6), np.float32))
    assert get_task(f"folder:{tmp_path}").load().counts()["test"]["abnormal"] == 6


def test_a_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    """A ~1 KB .nii.gz declaring 1024^3 voxels asked for 4 GiB; now the header is checked first."""
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.float32)
    path = tmp_path / "bomb.nii.gz"
    with gzip.open(path, "wb") as out:
        out.write(header.binaryblock + b"\0" * 4 + b"\0" * 1024)
    assert path.stat().st_size < 10_000
    with pytest.raises(UnreadableImageError, match="over the limit"):
        read_header(path)
    with pytest.raises(UnreadableImageError, match="over the limit"):
        read_image(path, 0)


def test_a_broken_volume_is_decoded_once_not_once_per_slice(tmp_path, monkeypatch):
    """Failed before: each slice retried the decode (20 s each for a large volume)."""
    path = write_nifti(tmp_path / "v.nii.gz", np.random.default_rng(0).random((32, 32, 8)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    calls = []
    original = nib.dataobj_images.DataobjImage.get_fdata
    monkeypatch.setattr(
        nib.dataobj_images.DataobjImage, "get_fdata", lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    )
    for index in range(8):
        with pytest.raises(UnreadableImageError):
            read_image(path, index)
    assert len(calls) == 1


def test_no_warning_for_windowed_images(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_WARNED", set())
    path = ct_with_hu(tmp_path, [40])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(path, intensity={"window": [40, 80]})


def test_a_run_records_the_intensity_rule_its_files_were_read_with(tmp_path):
    from medrecontrast.run.artefacts import data_record

    for split, cls in (("train", "NORMAL"), ("test", "NORMAL"), ("test", "BLEED")):
        write_nifti(tmp_path / split / cls / "a.nii.gz", np.arange(8 * 8 * 2, dtype=np.float32).reshape(8, 8, 2))
    record = data_record(get_task(f"folder:{tmp_path}").load(), None)
    assert len(record["intensity"]) == 1 and set(record["intensity"][0]) == {"range"}
    record = data_record(get_task(f"folder:{tmp_path}", window=[40, 80]).load(), None)
    assert record["intensity"] == [{"window": [40.0, 80.0]}]


def test_nibabels_real_anatomical_volume_reads_on_the_tasks_scale(tmp_path):
    """nibabel's shipped anatomical.nii (a real MR volume) through a folder task: one robust scale, values in
    [0, 1] with real contrast, every slice readable."""
    import shutil

    from nibabel.testing import data_path

    source = f"{data_path}/anatomical.nii"
    for split, cls in (("train", "NORMAL"), ("test", "NORMAL"), ("test", "ABN")):
        (tmp_path / split / cls).mkdir(parents=True)
        shutil.copy(source, tmp_path / split / cls / "anatomical.nii")
    data = get_task(f"folder:{tmp_path}").load()
    low, high = data.train[0]["intensity"]["range"]
    volume = nib.load(source).get_fdata()
    assert np.percentile(volume, 0.5) == pytest.approx(low, rel=0.05, abs=1.0) and high > low
    middle = data.train[len(data.train) // 2]
    pixels = read_image(middle["image"], middle["slice"], 2, middle["intensity"])
    assert 0 <= pixels.min() and pixels.max() <= 1 and np.ptp(pixels) > 0.3


def test_the_tasks_nifti_scale_is_computed_once_then_remembered(tmp_path, monkeypatch):
    import medrecontrast.tasks.folder as folder

    for split, cls in (("train", "NORMAL"), ("test", "NORMAL"), ("test", "ABN")):
        write_nifti(tmp_path / split / cls / "v.nii.gz", np.arange(4 * 4 * 2, dtype=np.float32).reshape(4, 4, 2))
    calls = []
    real = folder.robust_range
    monkeypatch.setattr(folder, "robust_range", lambda paths: calls.append(1) or real(paths))
    first = get_task(f"folder:{tmp_path}").load().train[0]["intensity"]
    again = get_task(f"folder:{tmp_path}").load().train[0]["intensity"]
    assert first == again and len(calls) == 1
