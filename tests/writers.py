"""Write tiny image files of every supported format, for fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)
    return path


def write_jpeg(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path, format="JPEG", quality=95)
    return path


def rgb(height: int, width: int, value: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(value + rng.integers(-20, 20, (height, width, 3)), 0, 255).astype(np.uint8)


def mask(height: int, width: int, box=(0, 0, 2, 2)) -> np.ndarray:
    out = np.zeros((height, width), dtype=np.uint8)
    top, left, h, w = box
    out[top : top + h, left : left + w] = 255
    return out


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    photometric: str = "MONOCHROME2",
    with_pixels: bool = True,
    patient_id: str | None = None,
) -> Path:
    """A 12-bit DICOM file; its PatientID is ``patient_id``, by default one of its own (``<split>/<class>/<stem>``),
    so that files of a folder task are distinct patients unless a test says otherwise."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = patient_id if patient_id is not None else f"{path.parent.parent.name}/{path.parent.name}/{path.stem}"
    ds.Modality = "OT"
    pixels = np.asarray(pixels, dtype=np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if with_pixels:
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path: Path, array: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.float32), affine=np.eye(4)), str(path))
    return path
