"""Decode PNG/JPEG, DICOM and NIfTI files into channel-first float arrays in [0, 1].

One reader for every format, so that the orientation rule is the same everywhere: an array is
indexed ``[channel, row, column]`` exactly as the file stores its rows (PIL's ``H x W``; DICOM's
``Rows x Columns``; for NIfTI the array axes as stored, without reorientation). MONAI's own PIL reader
transposes H and W by default, which is why the suite does not use it.

Intensity scaling happens here because the right rule depends on the format:

* 8-bit PNG/JPEG: divided by 255; 16-bit PNG: divided by 65535.
* DICOM: rescale slope/intercept applied, then scaled by the range the stored bits can hold (so
  intensities stay comparable across images of one scanner); MONOCHROME1 is inverted.
* NIfTI: min-max over the whole volume (slices of one volume stay comparable).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrecontrast.errors import UnreadableImageError

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = PIL_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES


def image_format(path: str | os.PathLike) -> str | None:
    """``"pil"``, ``"dicom"``, ``"nifti"`` by file name, or None for files that are not images."""
    name = str(path).lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(PIL_SUFFIXES):
        return "pil"
    return None


def strip_image_suffix(name: str) -> str:
    """File name without its image suffix (``a.nii.gz`` -> ``a``)."""
    lower = name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


@dataclass(frozen=True)
class ImageHeader:
    """What can be known about an image file without decoding its pixels."""

    height: int
    width: int
    channels: int
    num_slices: int | None = None  # slices of a 3-D volume (NIfTI) or frames (multi-frame DICOM)


def read_header(path: str | os.PathLike, slice_axis: int = 2) -> ImageHeader:
    """Open ``path`` far enough to learn its size; raise :class:`UnreadableImageError` if it is broken."""
    fmt = image_format(path)
    try:
        if fmt == "pil":
            return _pil_header(path)
        if fmt == "dicom":
            return _dicom_header(path)
        if fmt == "nifti":
            return _nifti_header(path, slice_axis)
    except UnreadableImageError:
        raise
    except Exception as exc:  # every decoder has its own exception types
        raise UnreadableImageError(path, f"cannot read header ({type(exc).__name__}: {exc})") from exc
    raise UnreadableImageError(path, f"unsupported file type; expected one of {', '.join(IMAGE_SUFFIXES)}")


def read_image(path: str | os.PathLike, slice_index: int | None = None, slice_axis: int = 2) -> np.ndarray:
    """Decode ``path`` to a float32 array ``(C, H, W)`` in [0, 1], C = 1 (grey) or 3 (RGB).

    ``slice_index`` picks one slice of a 3-D NIfTI volume (along ``slice_axis``) or one frame of a
    multi-frame DICOM.
    """
    fmt = image_format(path)
    try:
        if fmt == "pil":
            return _read_pil(path)
        if fmt == "dicom":
            return _read_dicom(path, slice_index)
        if fmt == "nifti":
            return _read_nifti(path, slice_index, slice_axis)
    except UnreadableImageError:
        raise
    except Exception as exc:
        raise UnreadableImageError(path, f"cannot decode ({type(exc).__name__}: {exc})") from exc
    raise UnreadableImageError(path, f"unsupported file type; expected one of {', '.join(IMAGE_SUFFIXES)}")


# --- PNG / JPEG ---------------------------------------------------------------------------------


def _pil_header(path) -> ImageHeader:
    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
        if _exif_orientation(im) in TRANSPOSING_ORIENTATIONS:
            width, height = height, width  # shown (and read) rotated by a quarter turn
        channels = 1 if im.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F") else 3
    return ImageHeader(height=height, width=width, channels=channels)


# EXIF orientations 5-8 turn the stored pixels by a quarter turn (2-4 flip or rotate by a half)
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def _exif_orientation(im) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))  # 0x0112: the EXIF Orientation tag
    except Exception:  # a malformed EXIF block: the pixels as stored
        return 1


def _read_pil(path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()  # raises on truncated files instead of returning grey padding
        # As viewers show it: a photo's EXIF orientation applied (a mask drawn on the displayed
        # image then lines up with it); PIL's exif_transpose does it and drops the tag.
        im = ImageOps.exif_transpose(opened) if _exif_orientation(opened) != 1 else opened
        if im.mode == "I" or im.mode.startswith("I;16"):
            array = np.asarray(im, dtype=np.float32) / 65535.0
        elif im.mode == "F":
            array = _min_max(np.asarray(im, dtype=np.float32))
        else:
            grey = im.mode in ("1", "L", "LA")
            array = np.asarray(im.convert("L" if grey else "RGB"), dtype=np.float32) / 255.0
    return _channel_first(np.clip(array, 0.0, 1.0))


# --- DICOM ----------------------------------------------------------------------------------------


def _dicom_header(path) -> ImageHeader:
    import pydicom

    ds = pydicom.dcmread(path, defer_size=1024)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnreadableImageError(path, "DICOM file has no pixel data (is it a report or a DICOMDIR?)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return ImageHeader(
        height=int(ds.Rows),
        width=int(ds.Columns),
        channels=int(ds.get("SamplesPerPixel", 1)),
        num_slices=frames if frames > 1 else None,
    )


def _read_dicom(path, frame: int | None) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnreadableImageError(path, "DICOM file has no pixel data (is it a report or a DICOMDIR?)")
    try:
        pixels = ds.pixel_array.astype(np.float32)
    except (RuntimeError, NotImplementedError, ValueError) as exc:  # pydicom: no plugin decodes this transfer syntax
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        raise UnreadableImageError(
            path,
            f"cannot decode DICOM pixel data in transfer syntax {name} ({exc}); compressed DICOM needs the decoders "
            "of pip install 'medrecontrast[dicom]'",
        ) from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[0 if frame is None else frame]
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples == 1:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        bits = int(ds.get("BitsStored", 8))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
        pixels = (pixels * slope + intercept - low) / max(high - low, 1e-12)
        if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
            pixels = 1.0 - pixels  # MONOCHROME1: the lowest value is white
    else:
        pixels = pixels / float(2 ** int(ds.get("BitsStored", 8)) - 1)
    return _channel_first(np.clip(pixels, 0.0, 1.0))


# --- NIfTI ----------------------------------------------------------------------------------------


def _nifti_shape(path) -> tuple[int, ...]:
    import nibabel as nib

    shape = tuple(int(s) for s in nib.load(path).shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3):
        raise UnreadableImageError(path, f"NIfTI image of shape {shape}; expected a 2-D image or a 3-D volume")
    return shape


def _nifti_header(path, slice_axis: int) -> ImageHeader:
    shape = _nifti_shape(path)
    if len(shape) == 2:
        return ImageHeader(height=shape[0], width=shape[1], channels=1)
    if not 0 <= slice_axis <= 2:
        raise UnreadableImageError(path, f"slice axis {slice_axis} is not 0, 1 or 2")
    height, width = (s for axis, s in enumerate(shape) if axis != slice_axis)
    return ImageHeader(height=height, width=width, channels=1, num_slices=shape[slice_axis])


@functools.lru_cache(maxsize=2)
def _nifti_volume(path: str, mtime_ns: int) -> np.ndarray:
    """The whole volume, min-max scaled; cached because its slices are read one after another."""
    import nibabel as nib

    volume = np.asarray(nib.load(path).get_fdata(dtype=np.float32))
    return _min_max(volume.reshape(_nifti_shape(path)))


def _read_nifti(path, slice_index: int | None, slice_axis: int) -> np.ndarray:
    volume = _nifti_volume(str(path), os.stat(path).st_mtime_ns)
    if volume.ndim == 3:
        if slice_index is None:
            raise UnreadableImageError(path, "3-D NIfTI volume read without a slice index")
        volume = np.take(volume, slice_index, axis=slice_axis)
    return volume[None].copy()


# --- helpers --------------------------------------------------------------------------------------


def _min_max(array: np.ndarray) -> np.ndarray:
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    if high <= low:  # a constant image: black if it is zero, white otherwise (keeps all-ones masks)
        return np.full(array.shape, 1.0 if high > 0 else 0.0, dtype=np.float32)
    return ((array - low) / (high - low)).astype(np.float32)


def _channel_first(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array[None].astype(np.float32, copy=False)
    if array.ndim == 3:
        return np.ascontiguousarray(np.moveaxis(array, -1, 0), dtype=np.float32)
    raise ValueError(f"expected a 2-D or 3-D pixel array, got shape {array.shape}")
