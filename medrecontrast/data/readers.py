"""Decode PNG/JPEG, DICOM and NIfTI files into channel-first float arrays in [0, 1].

One reader for every format, so that the orientation rule is the same everywhere: an array is
indexed ``[channel, row, column]`` exactly as the file stores its rows (PIL's ``H x W``; DICOM's
``Rows x Columns``; for NIfTI the array axes as stored, without reorientation). MONAI's own PIL reader
transposes H and W by default, which is why the suite does not use it.

Intensity scaling happens here because the right rule depends on the format (docs/data.md, "How pixels
become the network's input"):

* 8-bit PNG/JPEG: divided by 255; 16-bit PNG/TIFF: divided by 65535 (12-bit data in it warned); a signed or
  32-bit integer image, and a float TIFF, by its own range (never clipped); NaN/inf pixels refused.
* DICOM, as a viewer shows it: the modality LUT (rescale slope/intercept or LUT, pydicom's
  ``apply_modality_lut``), then the VOI: the task's ``window`` when one is set (``[center, width]`` or a
  preset of :data:`WINDOW_PRESETS`), else the file's own VOI LUT or window (pydicom's ``apply_voi_lut``),
  mapped from pydicom's output range to [0, 1]; a file with neither is scaled by the range its
  stored bits can hold after the modality LUT, with a warning when an image uses under
  :data:`LOW_CONTRAST` of it. MONOCHROME1 is inverted.
* NIfTI: one rule per task: the task's ``window``, else the robust range (0.5th-99.5th percentile)
  of the task's training normals (:func:`robust_range`), so every volume of a task is scaled alike.
  Volumes with non-finite voxels are refused, naming the file and the count; a header asking for
  more than :data:`MAX_VOXELS` voxels is refused before decoding.

``intensity`` (in a task's items) is ``{"window": [center, width]}`` or ``{"range": [low, high]}``.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medrecontrast.errors import UnreadableImageError, UserInputError

# Common radiology windows (center, width) in Hounsfield units, for ``window = "<name>"``.
WINDOW_PRESETS = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "soft-tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}
LOW_CONTRAST = 0.05  # an image spread over less than this share of [0, 1] gets a warning
MAX_VOXELS = 2**28  # 268 M voxels (1 GiB as float32): a larger NIfTI header is refused before decoding
ROBUST_PERCENTILES = (0.5, 99.5)

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
    # DICOM: the patient the file belongs to, PatientID, else StudyInstanceUID (None where both are empty)
    patient: str | None = None


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


def read_image(
    path: str | os.PathLike, slice_index: int | None = None, slice_axis: int = 2, intensity: dict | None = None
) -> np.ndarray:
    """Decode ``path`` to a float32 array ``(C, H, W)`` in [0, 1], C = 1 (grey) or 3 (RGB).

    ``slice_index`` picks one slice of a 3-D NIfTI volume (along ``slice_axis``) or one frame of a
    multi-frame DICOM; ``intensity`` is the task's rule for DICOM and NIfTI (module docstring).
    """
    fmt = image_format(path)
    try:
        if fmt == "pil":
            return _read_pil(path)
        if fmt == "dicom":
            return _read_dicom(path, slice_index, intensity)
        if fmt == "nifti":
            return _read_nifti(path, slice_index, slice_axis, intensity)
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


def require_finite(path, array: np.ndarray) -> np.ndarray:
    """``array`` if every value is finite; else :class:`UnreadableImageError` with the count (a float TIFF or DICOM
    with one NaN pixel was scaled into a normal-looking image and PatchCore scored it 3.4e38)."""
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise UnreadableImageError(path, f"{bad:,} non-finite pixel(s) (NaN or ±inf) of {array.size:,}")
    return array


def _scale_integer_image(path, values: np.ndarray) -> np.ndarray:
    """16- and 32-bit integer PNG/TIFF into [0, 1]: values within [0, 65535] (16-bit data) are divided by 65535,
    as before; anything else (a signed or 32-bit image, e.g. CT in HU stored as int32) by its own range, never
    clipped (93 % of one such test image's pixels were clipped to 1). A 16-bit image holding 12-bit data (a
    detector's raw counts) spreads over a sliver of [0, 1]: warned, as DICOM is."""
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low >= 0 and high <= 65535:
        if 0 < high < 2**12 and "16-bit image" not in _WARNED:  # 12-bit (or less) data in a 16-bit file
            _WARNED.add("16-bit image")
            warnings.warn(
                f"{path}: the 16-bit image holds values up to {high:g} (12-bit data?), so it uses {high / 65535:.1%} "
                "of the intensity range and its contrast is nearly lost; rescale it to its full range (or to 8 bits) "
                "before use. Further images are not listed.",
                stacklevel=3,
            )
        return (values / 65535.0).astype(np.float32)
    return ((values - low) / max(high - low, 1e-12)).astype(np.float32)


def _read_pil(path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        opened.load()  # raises on truncated files instead of returning grey padding
        # As viewers show it: a photo's EXIF orientation applied (a mask drawn on the displayed
        # image then lines up with it); PIL's exif_transpose does it and drops the tag.
        im = ImageOps.exif_transpose(opened) if _exif_orientation(opened) != 1 else opened
        if im.mode == "I" or im.mode.startswith("I;16"):
            array = _scale_integer_image(path, np.asarray(im, dtype=np.float64))
        elif im.mode == "F":
            array = _min_max(require_finite(path, np.asarray(im, dtype=np.float32)))
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
        patient=dicom_patient(ds),
    )


def dicom_patient(ds) -> str | None:
    """Who a DICOM file belongs to: its PatientID, else its StudyInstanceUID (an anonymised export often blanks
    the first), else None (the caller then takes the file itself as the unit)."""
    for keyword in ("PatientID", "StudyInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return value
    return None


def _read_dicom(path, frame: int | None, intensity: dict | None = None) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnreadableImageError(path, "DICOM file has no pixel data (is it a report or a DICOMDIR?)")
    try:
        pixels = ds.pixel_array
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
    pixels = require_finite(path, pixels)  # float pixel data (FloatPixelData) may hold NaN or inf
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        pixels = pixels.astype(np.float32) / float(2 ** int(ds.get("BitsStored", 8)) - 1)
        return _channel_first(np.clip(pixels, 0.0, 1.0))
    return _channel_first(dicom_display_values(ds, pixels, intensity, path))


def dicom_display_values(ds, pixels: np.ndarray, intensity: dict | None = None, path=None) -> np.ndarray:
    """A grey DICOM frame as a viewer shows it, in [0, 1]: pydicom's modality LUT, then the task's window
    (``intensity``) or else the file's own VOI LUT / window, each mapped from the output range pydicom gives
    it (the VOI applied to the lowest and highest possible inputs) to [0, 1]. Without any VOI, the
    range the stored bits can hold after the modality LUT (float data: the frame's own range)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(pixels, ds).astype(np.float64)
    window = (intensity or {}).get("window")
    if window is not None:
        ds = ds.copy()
        for keyword in ("VOILUTSequence", "VOILUTFunction"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.WindowCenter, ds.WindowWidth = float(window[0]), float(window[1])
    has_voi = window is not None or "VOILUTSequence" in ds or "WindowCenter" in ds
    if has_voi:
        low, high = (float(v) for v in apply_voi_lut(np.array([-1e30, 1e30]), ds))
        values = apply_voi_lut(values, ds)
    elif "BitsStored" in ds and "PixelData" in ds:
        bits, signed = int(ds.BitsStored), int(ds.get("PixelRepresentation", 0)) == 1
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        low, high = sorted(float(v) for v in apply_modality_lut(np.array([low, high]), ds))
    else:  # float pixel data: no stored-bits range exists
        low, high = float(np.min(values)), float(np.max(values))
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0).astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled  # MONOCHROME1: the lowest value is white
    if not has_voi:
        _warn_low_contrast(path, scaled)
    return scaled


_WARNED: set = set()


def _warn_low_contrast(path, scaled: np.ndarray) -> None:
    """Warn (once per process) when an image without a window spreads over less than LOW_CONTRAST of [0, 1]."""
    spread = float(np.quantile(scaled, 0.995) - np.quantile(scaled, 0.005)) if scaled.size else 1.0
    if spread < LOW_CONTRAST and "dicom" not in _WARNED:
        _WARNED.add("dicom")
        warnings.warn(
            f"{path}: the DICOM image has no window and uses {spread:.1%} of the intensity range after the "
            'modality LUT, so its contrast is nearly lost; set the task\'s window (e.g. window = "brain" or '
            "[40, 80] for CT in HU). Further images are not listed.",
            stacklevel=3,
        )


def resolve_window(value) -> tuple[float, float] | None:
    """A task's ``window`` option: None, a preset name (:data:`WINDOW_PRESETS`), ``[center, width]`` or
    ``"center,width"``; the width must be positive."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in WINDOW_PRESETS:
            return WINDOW_PRESETS[value]
        parts = value.split(",")
    else:
        parts = list(value)
    try:
        center, width = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise UserInputError(
            f"window must be [center, width] or one of {', '.join(WINDOW_PRESETS)}, got {value!r}"
        ) from None
    if not (np.isfinite(center) and np.isfinite(width)) or width <= 0:
        raise UserInputError(f"window width must be positive and both values finite, got {value!r}")
    return center, width


# --- NIfTI ----------------------------------------------------------------------------------------


OBLIQUE_RADIANS = 0.05  # an axis more than ~3 degrees off the scanner's: resampling it to the grid is the user's call
ANISOTROPY = 3.0  # voxels whose longest side is over 3x the shortest: slices along different axes differ in detail


def _canonical_orientation(img, path=None, warn: bool = False):
    """nibabel's orientation of ``img`` onto RAS+ (``io_orientation`` of its affine, the transform
    ``as_closest_canonical`` applies), so that every volume of a task is sliced along the same anatomical axis
    whatever order and direction its file stores the voxels in (an LAS copy of an RAS volume gave other slices and
    other scores). Oblique and strongly anisotropic volumes are kept as they are and said (``warn``)."""
    import nibabel as nib
    from nibabel.orientations import io_orientation

    affine = np.asarray(img.affine, dtype=np.float64)
    if warn:
        oblique = float(np.max(nib.affines.obliquity(affine)))
        zooms = [float(z) for z in img.header.get_zooms()[:3] if z > 0]
        if oblique > OBLIQUE_RADIANS:
            warnings.warn(
                f"{path}: the volume is oblique ({np.degrees(oblique):.1f} degrees off the scanner axes); it is sliced "
                "along its nearest anatomical axis without resampling",
                stacklevel=3,
            )
        if len(zooms) == 3 and max(zooms) / min(zooms) > ANISOTROPY:
            warnings.warn(
                f"{path}: anisotropic voxels ({' x '.join(f'{z:g}' for z in zooms)} mm); slices along the coarse axis "
                "hold much less detail than the others",
                stacklevel=3,
            )
    return io_orientation(affine)


def _nifti_shape(path) -> tuple[int, ...]:
    import nibabel as nib

    img = nib.load(path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) >= 3:  # the shape after reorientation to RAS+ (axes permuted, never resampled)
        ornt = _canonical_orientation(img)
        shape = tuple(shape[int(axis)] for axis in np.argsort(ornt[:, 0])) + shape[3:]
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) not in (2, 3):
        raise UnreadableImageError(path, f"NIfTI image of shape {shape}; expected a 2-D image or a 3-D volume")
    voxels = int(np.prod(shape, dtype=np.int64))
    if voxels > MAX_VOXELS:  # checked on the header, before a small compressed file can ask for gigabytes
        raise UnreadableImageError(
            path, f"NIfTI header declares {shape} = {voxels:,} voxels, over the limit of {MAX_VOXELS:,}"
        )
    return shape


def nifti_geometry(path) -> tuple[tuple[int, ...], np.ndarray]:
    """The shape (trailing 1s dropped) and the voxel-to-world affine of a NIfTI file after reorientation to RAS+,
    from its header."""
    import nibabel as nib
    from nibabel.orientations import inv_ornt_aff

    img = nib.load(path)
    affine = np.asarray(img.affine, dtype=np.float64)
    if len(img.shape) >= 3:
        ornt = _canonical_orientation(img)
        affine = affine @ inv_ornt_aff(ornt, img.shape[:3])
    return _nifti_shape(path), affine


def check_nifti_mask(image, mask, tolerance: float = 1e-3) -> None:
    """Refuse a NIfTI mask whose shape or orientation (affine, to ``tolerance``) differs from its image's."""
    image_shape, image_affine = nifti_geometry(image)
    mask_shape, mask_affine = nifti_geometry(mask)
    if image_shape != mask_shape:
        raise UserInputError(
            f"mask {mask} has shape {mask_shape} but its image {image} has {image_shape}; a mask must have "
            "its image's shape (same slices, rows and columns)."
        )
    if not np.allclose(image_affine, mask_affine, atol=tolerance):
        raise UserInputError(
            f"mask {mask} and its image {image} have different orientations (affines differ by up to "
            f"{np.abs(image_affine - mask_affine).max():.3g}): the mask would be misaligned. Resample the mask "
            "onto the image's grid."
        )


def _nifti_header(path, slice_axis: int) -> ImageHeader:
    import nibabel as nib

    shape = _nifti_shape(path)
    if len(shape) == 3:
        _canonical_orientation(nib.load(path), path, warn=True)
    if len(shape) == 2:
        return ImageHeader(height=shape[0], width=shape[1], channels=1)
    if not 0 <= slice_axis <= 2:
        raise UnreadableImageError(path, f"slice axis {slice_axis} is not 0, 1 or 2")
    height, width = (s for axis, s in enumerate(shape) if axis != slice_axis)
    return ImageHeader(height=height, width=width, channels=1, num_slices=shape[slice_axis])


@functools.lru_cache(maxsize=8)
def _nifti_volume(path: str, mtime_ns: int) -> np.ndarray | UnreadableImageError:
    """The whole volume as stored (float32), or the error decoding it gave: cached, both, because its
    slices are read one after another (a broken volume is decoded once, not once per slice)."""
    import nibabel as nib

    try:
        shape = _nifti_shape(path)
        img = nib.load(path)
        volume = np.asarray(img.get_fdata(dtype=np.float32))
        if volume.ndim >= 3:  # RAS+, as _nifti_shape promised (nibabel's apply_orientation: flips and transposes)
            from nibabel.orientations import apply_orientation

            volume = apply_orientation(volume, _canonical_orientation(img))
        volume = np.ascontiguousarray(volume).reshape(shape)
    except UnreadableImageError as exc:
        return exc
    except Exception as exc:
        return UnreadableImageError(path, f"cannot decode ({type(exc).__name__}: {exc})")
    bad = int(np.count_nonzero(~np.isfinite(volume)))
    if bad:
        return UnreadableImageError(path, f"{bad:,} non-finite voxel(s) (NaN or ±inf) of {volume.size:,}")
    return volume


def nifti_volume(path) -> np.ndarray:
    """The stored voxels of a NIfTI file (float32); raises :class:`UnreadableImageError` for a broken one."""
    volume = _nifti_volume(str(path), os.stat(path).st_mtime_ns)
    if isinstance(volume, UnreadableImageError):
        raise volume
    return volume


def robust_range(paths, percentiles: tuple[float, float] = ROBUST_PERCENTILES, per_volume: int = 2**20):
    """``[low, high]``: the given percentiles of the voxels of the NIfTI ``paths`` together (each volume
    contributes at most ``per_volume`` evenly strided voxels), or None when none can be read."""
    samples = []
    for path in paths:
        try:
            volume = nifti_volume(path).ravel()
        except (UnreadableImageError, OSError):
            continue  # listed as broken by `data check`, refused when the sweep is planned
        samples.append(volume[:: max(1, volume.size // per_volume)])
    if not samples:
        return None
    low, high = (float(v) for v in np.percentile(np.concatenate(samples), percentiles))
    return [low, high] if high > low else [low, low + 1.0]


def _read_nifti(path, slice_index: int | None, slice_axis: int, intensity: dict | None = None) -> np.ndarray:
    volume = nifti_volume(path)
    intensity = intensity or {}
    if intensity.get("window") is not None:
        center, width = intensity["window"]
        low, high = center - width / 2, center + width / 2
    elif intensity.get("range") is not None:
        low, high = intensity["range"]
    else:  # a mask, or a volume read outside a task: the whole volume's own range
        low, high = _own_range(volume)
    if volume.ndim == 3:
        if slice_index is None:
            raise UnreadableImageError(path, "3-D NIfTI volume read without a slice index")
        volume = np.take(volume, slice_index, axis=slice_axis)
    return np.clip((volume - low) / max(high - low, 1e-12), 0.0, 1.0).astype(np.float32)[None].copy()


# --- helpers --------------------------------------------------------------------------------------


def _own_range(array: np.ndarray) -> tuple[float, float]:
    """``(low, high)`` that map ``array`` onto [0, 1]: its min and max; a constant array maps to black if it
    is zero or less, to white otherwise (keeps all-ones masks)."""
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    if high <= low:
        return (high - 1.0, high) if high > 0 else (high, high + 1.0)
    return low, high


def _min_max(array: np.ndarray) -> np.ndarray:
    low, high = _own_range(array)
    return np.clip((array - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _channel_first(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array[None].astype(np.float32, copy=False)
    if array.ndim == 3:
        return np.ascontiguousarray(np.moveaxis(array, -1, 0), dtype=np.float32)
    raise ValueError(f"expected a 2-D or 3-D pixel array, got shape {array.shape}")
