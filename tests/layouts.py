"""Tiny datasets in each official layout, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from writers import mask, rgb, write_dicom, write_jpeg, write_nifti, write_png

ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


def aptos(root: Path, grades: list[int], image_size=(12, 16)) -> Path:
    folder = root / "aptos"
    (folder / "train_images").mkdir(parents=True)
    lines = ["id_code,diagnosis"]
    for i, grade in enumerate(grades):
        lines.append(f"img{i:04d},{grade}")
        write_png(folder / "train_images" / f"img{i:04d}.png", rgb(*image_size, seed=i))
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return folder


def oct2017(root: Path, per_class: int = 2) -> Path:
    folder = root / "oct2017"
    for split in ("train", "test"):
        for cls in ("NORMAL", "CNV", "DME", "DRUSEN"):
            for i in range(per_class + (3 if split == "train" and cls == "NORMAL" else 0)):
                # official names: <CLASS>-<patient>-<k>.jpeg; two scans per patient, train and test patients apart
                patient = (1000 if split == "train" else 2000) + i // 2
                write_jpeg(folder / split / cls / f"{cls}-{patient}-{i % 2 + 1}.jpeg", rgb(10, 14, seed=i)[..., 0])
    return folder


def isic_csv(path: Path, classes: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["image," + ",".join(ISIC_CLASSES)]
    for i, cls in enumerate(classes):
        rows.append(f"ISIC_{i:07d}," + ",".join("1.0" if c == cls else "0.0" for c in ISIC_CLASSES))
    path.write_text("\n".join(rows) + "\n")
    return path


def isic2018(root: Path) -> Path:
    folder = root / "isic2018"
    for subset, classes in (
        ("Training", ["NV", "NV", "NV", "MEL", "BKL"]),
        ("Validation", ["NV", "MEL", "DF"]),
        ("Test", ["NV", "NV", "VASC", "BCC"]),
    ):
        name = f"ISIC2018_Task3_{subset}_GroundTruth"
        isic_csv(folder / name / f"{name}.csv", classes)
        for i in range(len(classes)):
            write_jpeg(folder / f"ISIC2018_Task3_{subset}_Input" / f"ISIC_{i:07d}.jpg", rgb(8, 8, seed=i))
    return folder


def mvtec(root: Path, cls: str = "bottle", size=(16, 16)) -> Path:
    folder = root / "mvtec" / cls
    for i in range(4):
        write_png(folder / "train" / "good" / f"{i:03d}.png", rgb(*size, seed=i))
    for i in range(2):
        write_png(folder / "test" / "good" / f"{i:03d}.png", rgb(*size, seed=10 + i))
    for defect in ("crack", "scratch"):
        for i in range(2):
            write_png(folder / "test" / defect / f"{i:03d}.png", rgb(*size, seed=20 + i))
            write_png(folder / "ground_truth" / defect / f"{i:03d}_mask.png", mask(*size))
    return folder


def visa(root: Path, objects=("candle", "pcb1"), size=(10, 12)) -> Path:
    folder = root / "visa"
    rows = ["object,split,label,image,mask"]
    for obj in objects:
        for i in range(3):
            rows.append(f"{obj},train,normal,{obj}/Data/Images/Normal/{i:04d}.JPG,")
            write_jpeg(folder / obj / "Data" / "Images" / "Normal" / f"{i:04d}.JPG", rgb(*size, seed=i))
        rows.append(f"{obj},test,normal,{obj}/Data/Images/Normal/0100.JPG,")
        write_jpeg(folder / obj / "Data" / "Images" / "Normal" / "0100.JPG", rgb(*size))
        for i in range(2):
            rows.append(
                f"{obj},test,anomaly,{obj}/Data/Images/Anomaly/{i:03d}.JPG,{obj}/Data/Masks/Anomaly/{i:03d}.png"
            )
            write_jpeg(folder / obj / "Data" / "Images" / "Anomaly" / f"{i:03d}.JPG", rgb(*size, seed=5 + i))
            write_png(
                folder / obj / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png", (mask(*size) > 0).astype(np.uint8) * 7
            )
    (folder / "split_csv").mkdir(parents=True)
    (folder / "split_csv" / "1cls.csv").write_text("\n".join(rows) + "\n")
    return folder


def medical_folder(root: Path) -> Path:
    """A folder task with PNG, DICOM and NIfTI files, a 3-D volume with a mask volume among them."""
    folder = root / "mydata"
    write_png(folder / "train" / "NORMAL" / "a.png", rgb(12, 12)[..., 0])
    write_dicom(folder / "train" / "NORMAL" / "b.dcm", np.full((12, 12), 300))
    write_nifti(folder / "train" / "NORMAL" / "c.nii.gz", np.random.default_rng(0).random((12, 12)))
    write_dicom(folder / "test" / "NORMAL" / "d.dcm", np.full((12, 12), 100))
    write_dicom(folder / "test" / "TUMOUR" / "e.dcm", np.full((12, 12), 900))
    write_png(folder / "ground_truth" / "TUMOUR" / "e_mask.png", mask(12, 12))
    volume = np.random.default_rng(1).random((12, 12, 4))
    lesion = np.zeros((12, 12, 4))
    lesion[2:5, 2:5, 1:3] = 1  # slices 1 and 2 hold the lesion, 0 and 3 do not
    write_nifti(folder / "test" / "TUMOUR" / "vol.nii.gz", volume)
    write_nifti(folder / "ground_truth" / "TUMOUR" / "vol_mask.nii.gz", lesion)
    return folder


def folder(root: Path, train: int = 6, normal: int = 3, abnormal: int = 3, size: int = 24, seed: int = 0) -> Path:
    """A user's `folder:` layout (train/NORMAL, test/NORMAL, test/ABN) of random grey PNGs, the abnormal ones
    brighter on average; every file differs from every other (no byte-identical pair across the splits)."""
    rng = np.random.default_rng(seed)
    for split, cls, count in (("train", "NORMAL", train), ("test", "NORMAL", normal), ("test", "ABN", abnormal)):
        for i in range(count):
            high = 255 if cls == "ABN" else 120
            write_png(root / split / cls / f"{i}.png", rng.integers(0, high, (size, size)).astype(np.uint8))
    return root
