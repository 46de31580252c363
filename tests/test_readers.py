"""Decoding: orientation, channels, intensity scaling per format."""

import importlib.util

import numpy as np
import pytest
from writers import write_dicom, write_jpeg, write_nifti, write_png

from medrecontrast.data.readers import read_header, read_image, strip_image_suffix
from medrecontrast.errors import UnreadableImageError


def test_png_keeps_height_and_width(tmp_path):
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[:5, :, 0] = 255  # a red band along the top rows
    path = write_png(tmp_path / "wide.png", pixels)
    image = read_image(path)
    assert image.shape == (3, 20, 30)
    assert read_header(path).height == 20 and read_header(path).width == 30
    assert image[0, :5].min() == 1.0 and image[0, 5:].max() == 0.0 and image[1:].max() == 0.0


@pytest.mark.parametrize("mode,channels", [("L", 1), ("RGB", 3), ("RGBA", 3), ("P", 3), ("LA", 1)])
def test_png_modes_map_to_one_or_three_channels(tmp_path, mode, channels):
    from PIL import Image

    path = tmp_path / f"{mode}.png"
    Image.new(mode, (7, 5)).save(path)
    assert read_image(path).shape == (channels, 5, 7)


def test_16_bit_png_is_scaled_by_its_range(tmp_path):
    from PIL import Image

    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 65535]], dtype=np.uint16)).save(path)
    np.testing.assert_allclose(read_image(path)[0], [[0.0, 1.0]])


def test_jpeg_grey(tmp_path):
    path = write_jpeg(tmp_path / "scan.jpeg", np.full((6, 9), 200, dtype=np.uint8))
    image = read_image(path)
    assert image.shape == (1, 6, 9) and abs(image.mean() - 200 / 255) < 0.01


def test_dicom_rescale_and_orientation(tmp_path):
    pixels = np.zeros((4, 6), dtype=np.uint16)
    pixels[0] = 4095
    path = write_dicom(tmp_path / "ct.dcm", pixels, slope=2.0, intercept=-100.0)
    image = read_image(path)
    assert image.shape == (1, 4, 6)
    low, high = -100.0, 4095 * 2 - 100.0  # the stored 12 bits after slope/intercept
    np.testing.assert_allclose(image[0, 0], 1.0)
    np.testing.assert_allclose(image[0, 1], (0 * 2 - 100 - low) / (high - low))


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = np.array([[0, 4095]], dtype=np.uint16)
    normal = read_image(write_dicom(tmp_path / "m2.dcm", pixels))
    inverted = read_image(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    np.testing.assert_allclose(normal[0, 0], [0.0, 1.0])
    np.testing.assert_allclose(inverted[0, 0], [1.0, 0.0])


def test_dicom_without_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "report.dcm", np.zeros((4, 4)), with_pixels=False)
    with pytest.raises(UnreadableImageError, match="no pixel data"):
        read_header(path)
    with pytest.raises(UnreadableImageError, match="no pixel data"):
        read_image(path)


def test_nifti_2d_and_3d(tmp_path):
    flat = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = write_nifti(tmp_path / "flat.nii", flat)
    np.testing.assert_allclose(read_image(path)[0], flat / 11)
    volume = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    vpath = write_nifti(tmp_path / "vol.nii.gz", volume)
    header = read_header(vpath, slice_axis=2)
    assert (header.height, header.width, header.num_slices) == (2, 3, 4)
    np.testing.assert_allclose(read_image(vpath, 1, 2)[0], volume[:, :, 1] / volume.max())
    assert read_image(vpath, 0, 0).shape == (1, 3, 4)
    with pytest.raises(UnreadableImageError, match="without a slice index"):
        read_image(vpath)


def test_truncated_png_is_reported(tmp_path):
    path = write_png(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="ok.png"):
        read_image(path)


def test_not_an_image(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("hello")
    with pytest.raises(UnreadableImageError):
        read_header(path)
    with pytest.raises(UnreadableImageError, match="unsupported"):
        read_image(tmp_path / "notes.txt")


def test_strip_image_suffix():
    assert strip_image_suffix("vol.nii.gz") == "vol"
    assert strip_image_suffix("a.b.PNG") == "a.b"


def test_jpeg_exif_orientation_is_applied_so_masks_line_up(tmp_path):
    """A photo stored sideways with EXIF orientation 6 (shown turned a quarter clockwise) was read as
    stored: a mask drawn on the displayed image was misaligned, or refused as "96x64 but 64x96"."""
    from PIL import Image

    from medrecontrast.data.dataset import image_dataset
    from medrecontrast.tasks.base import item

    stored = np.zeros((64, 96, 3), dtype=np.uint8)  # 64 rows x 96 columns as stored
    stored[:, :16] = 255  # a bright band at the stored left edge ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... which a viewer shows at the top of a 96 x 64 (rows x columns) picture
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=95)
    shown = np.zeros((96, 64), dtype=np.uint8)
    shown[:16] = 255  # the mask drawn on the displayed picture
    Image.fromarray(shown).save(tmp_path / "photo_mask.png")

    from medrecontrast.data.readers import read_header, read_image

    pixels = read_image(tmp_path / "photo.jpg")
    header = read_header(tmp_path / "photo.jpg")
    assert pixels.shape == (3, 96, 64) and (header.height, header.width) == (96, 64)
    assert pixels[:, :16].mean() > 0.9 and pixels[:, 20:].mean() < 0.1  # the band on top, as displayed
    sample = image_dataset([item(tmp_path / "photo.jpg", 1, "DEFECT", tmp_path / "photo_mask.png")], 32, cache="none")[
        0
    ]
    band = sample["image"].float().mean(0) > 0.5
    assert (band == sample["mask"][0].bool()).float().mean() > 0.95  # image and mask line up


def test_jpeg_compressed_dicom_is_read(tmp_path):
    """Issue 11 item 21: compressed DICOM, JPEG baseline (8-bit, decoded by Pillow or libjpeg) and
    JPEG 2000 lossless (the dicom extra's openjpeg), read like any other image."""
    import io

    import pydicom
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

    from medrecontrast.data.readers import read_image

    pixels = (np.arange(48 * 64).reshape(48, 64) % 4096).astype(np.uint16)
    plain = write_dicom(tmp_path / "plain.dcm", pixels)
    if importlib.util.find_spec("openjpeg") is None:
        pytest.skip("the dicom extra (pylibjpeg-openjpeg) is not installed: pip install -e '.[dicom]'")
    ds = pydicom.dcmread(plain)
    ds.compress(JPEG2000Lossless)
    ds.save_as(tmp_path / "j2k.dcm")
    np.testing.assert_allclose(read_image(tmp_path / "j2k.dcm"), read_image(plain))

    gray = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.uint8)
    encoded = io.BytesIO()
    Image.fromarray(gray).save(encoded, format="JPEG", quality=95)
    ds = pydicom.dcmread(plain)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelData = encapsulate([encoded.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(tmp_path / "jpeg.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "jpeg.dcm").file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    decoded = read_image(tmp_path / "jpeg.dcm")
    assert decoded.shape == (3, 48, 64) or decoded.shape == (1, 48, 64)
    assert np.abs(decoded[0] * 255 - gray).max() <= 3  # lossy JPEG, quality 95


def test_a_float_tiff_with_a_nan_pixel_is_refused_naming_the_file_and_count(tmp_path):
    """Issue 37 item 2, failed before: a float TIFF with one NaN pixel passed `data check --deep` and PatchCore scored
    the image 3.4e38, ranking a normal above every abnormal. NaN/inf pixels are refused at load, as in NIfTI."""
    from PIL import Image

    from medrecontrast.data.readers import read_image
    from medrecontrast.errors import UnreadableImageError

    pixels = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    pixels[2, 3] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "scan.tif")
    with pytest.raises(UnreadableImageError, match=r"scan.tif: 1 non-finite pixel\(s\)"):
        read_image(tmp_path / "scan.tif")
    pixels[2, 3] = 0.5
    Image.fromarray(pixels, mode="F").save(tmp_path / "fine.tif")
    assert np.isfinite(read_image(tmp_path / "fine.tif")).all()


def test_a_flipped_copy_of_a_volume_gives_the_same_slices(tmp_path):
    """Issue 37 item 4, failed before: an LAS copy of an RAS volume (the same anatomy, stored mirrored, its affine
    saying so) gave other slices and other scores. Volumes are reoriented to RAS+ (nibabel's io_orientation, as
    as_closest_canonical does) before slicing; masks alike."""
    import nibabel as nib

    volume = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    ras = np.diag([2.0, 2.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(volume, ras), str(tmp_path / "ras.nii.gz"))
    las = ras.copy()
    las[0, 0], las[0, 3] = -2.0, 2.0 * (volume.shape[0] - 1)  # x runs the other way; the same voxels in space
    nib.save(nib.Nifti1Image(volume[::-1].copy(), las), str(tmp_path / "las.nii.gz"))
    swapped = np.zeros((4, 4))
    swapped[0, 1], swapped[1, 0], swapped[2, 2], swapped[3, 3] = 2.0, 2.0, 3.0, 1.0  # stored y, x, z
    nib.save(nib.Nifti1Image(volume.transpose(1, 0, 2).copy(), swapped), str(tmp_path / "yxz.nii.gz"))
    for axis in (0, 1, 2):
        for k in range(volume.shape[axis]):
            reference = read_image(tmp_path / "ras.nii.gz", k, axis)
            for other in ("las.nii.gz", "yxz.nii.gz"):
                np.testing.assert_array_equal(read_image(tmp_path / other, k, axis), reference)
    assert read_header(tmp_path / "yxz.nii.gz", 0).num_slices == 6


def test_oblique_and_anisotropic_volumes_are_said(tmp_path):
    import nibabel as nib

    angle = np.radians(10)
    oblique = np.eye(4)
    oblique[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), oblique), str(tmp_path / "oblique.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([1, 1, 5.0, 1])), str(tmp_path / "thick.nii.gz"))
    with pytest.warns(UserWarning, match="oblique"):
        read_header(tmp_path / "oblique.nii.gz")
    with pytest.warns(UserWarning, match="anisotropic voxels"):
        read_header(tmp_path / "thick.nii.gz")


def test_wide_integer_images_are_scaled_by_their_range_and_12_bit_data_is_warned(tmp_path):
    """Issue 37 item 5, failed before: an int32 TIFF (CT in HU) was divided by 65535 and clipped (93 % of a test
    image's pixels became 1.0); a 16-bit PNG holding 12-bit data said nothing of its lost contrast."""
    from PIL import Image

    from medrecontrast.data import readers

    hu = np.linspace(-1000, 3000, 64 * 64).reshape(64, 64).astype(np.int32) * 30  # beyond 16 bits
    Image.fromarray(hu, mode="I").save(tmp_path / "ct.tif")
    scaled = read_image(tmp_path / "ct.tif")[0]
    assert scaled.min() == 0 and scaled.max() == 1 and np.mean(scaled == 1) < 0.01
    readers._WARNED.discard("16-bit image")
    twelve = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    Image.fromarray(twelve).save(tmp_path / "raw.png")
    with pytest.warns(UserWarning, match=r"16-bit image holds values up to 4095 \(12-bit data\?\)"):
        read_image(tmp_path / "raw.png")
