"""Built-in synthetic tasks that stand in for each medical modality; no download needed.

* ``synth-fundus``: orange fundus disks with an optic disc, a macula and branching vessels; anomalies
  are dark-red haemorrhages or clusters of bright-yellow exudates.
* ``synth-oct``: layered retinal B-scans with a foveal pit and multiplicative speckle; anomalies are
  dark intraretinal fluid pockets or drusen that lift the bright RPE band.
* ``synth-skin``: a regular, evenly brown nevus on textured skin; anomalies are irregular,
  asymmetric, multi-coloured lesions.

Normal images vary in position, size, shape, colour, texture and noise, so a detector has to learn
what "normal" looks like rather than memorise one picture. Every abnormal image has a pixel mask.
Images are generated once per (task, size, counts, seed) into the cache folder, in the
``train/NORMAL``, ``test/<CLASS>``, ``ground_truth/<CLASS>/<stem>_mask.png`` layout of folder tasks,
each image from its own random stream so that changing a count never changes the other images.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from medrecontrast.data.readers import strip_image_suffix
from medrecontrast.errors import UserInputError
from medrecontrast.paths import cache_dir
from medrecontrast.tasks.base import Protocol, Task, TaskFamily
from medrecontrast.tasks.folder import list_class_folders

GENERATOR_VERSION = 2  # bump when a generator changes, so stale caches are not reused

Sample = tuple[np.ndarray, np.ndarray | None]  # image (H, W[, 3]) in [0, 1], mask (H, W) bool or None


# --- drawing helpers ------------------------------------------------------------------------------


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[0:size, 0:size].astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Unit-variance low-frequency noise: texture that differs from image to image."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
    return (field / (field.std() + 1e-8)).astype(np.float32)


def _irregular_blob(rng, size, cy, cx, radius, irregularity, harmonics=(2, 7)) -> np.ndarray:
    """A star-shaped region whose radius wobbles with random harmonics of the angle."""
    yy, xx = _grid(size)
    theta = np.arctan2(yy - cy, xx - cx)
    wobble = np.ones_like(theta)
    for k in range(harmonics[0], harmonics[1] + 1):
        wobble += (
            irregularity * rng.uniform(0, 1) / (k - harmonics[0] + 1) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
        )
    return np.hypot(yy - cy, xx - cx) <= radius * wobble


def _paint(image: np.ndarray, region: np.ndarray, colour, softness: float = 1.0) -> None:
    """Blend ``colour`` into ``image`` over ``region`` with a soft (Gaussian) edge."""
    alpha = ndimage.gaussian_filter(region.astype(np.float32), softness)
    if image.ndim == 3:
        alpha = alpha[..., None]
    image *= 1 - alpha
    image += alpha * np.asarray(colour, dtype=np.float32)


def _random_walk(rng, start, angle, steps, step_len, turn) -> np.ndarray:
    points = [np.asarray(start, dtype=np.float32)]
    for _ in range(steps):
        angle += rng.normal(0, turn)
        points.append(points[-1] + step_len * np.array([np.sin(angle), np.cos(angle)], dtype=np.float32))
    return np.stack(points)


def _polyline_mask(size: int, points: np.ndarray, width: float) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    dense = np.concatenate([np.linspace(a, b, 4, endpoint=False) for a, b in zip(points[:-1], points[1:])])
    rows, cols = np.round(dense).astype(int).T
    keep = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    mask[rows[keep], cols[keep]] = True
    return ndimage.binary_dilation(mask, iterations=max(int(round(width)), 0)) if width >= 1 else mask


# --- fundus ---------------------------------------------------------------------------------------


def fundus_image(rng: np.random.Generator, size: int, anomaly: str | None) -> Sample:
    yy, xx = _grid(size)
    cy, cx = size / 2 + rng.uniform(-0.04, 0.04, 2) * size
    radius = rng.uniform(0.40, 0.46) * size
    dist = np.hypot(yy - cy, xx - cx) / radius
    inside = dist <= 1
    base = np.array([rng.uniform(0.72, 0.9), rng.uniform(0.28, 0.42), rng.uniform(0.08, 0.18)], dtype=np.float32)
    shading = (1 - rng.uniform(0.25, 0.45) * dist**2) * (1 + 0.05 * _smooth_noise(rng, size, size / 16))
    image = base * shading[..., None] * inside[..., None]

    side = rng.choice([-1, 1])
    disc_y, disc_x = cy + rng.uniform(-0.05, 0.05) * size, cx + side * rng.uniform(0.18, 0.26) * size
    disc_r = rng.uniform(0.05, 0.075) * size
    _paint(image, np.hypot(yy - disc_y, xx - disc_x) <= disc_r, (1.0, 0.88, 0.6), softness=disc_r / 3)
    macula = np.hypot(yy - cy, xx - (cx - side * 0.05 * size)) <= rng.uniform(0.05, 0.08) * size
    _paint(image, macula, base * 0.6, softness=size / 40)

    vessels = np.zeros((size, size), dtype=bool)
    for angle in rng.uniform(0, 2 * np.pi, rng.integers(4, 7)):
        path = _random_walk(rng, (disc_y, disc_x), angle, steps=40, step_len=size / 70, turn=0.12)
        vessels |= _polyline_mask(size, path, width=rng.choice([0, 1]))
    _paint(image, vessels & inside, (0.5, 0.12, 0.08), softness=0.6)

    mask = None
    if anomaly is not None:
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(1, 4)):
            r = rng.uniform(0.15, 0.7) * radius
            a = rng.uniform(0, 2 * np.pi)
            by, bx = cy + r * np.sin(a), cx + r * np.cos(a)
            if anomaly == "haemorrhage":
                blob = _irregular_blob(rng, size, by, bx, rng.uniform(0.04, 0.07) * size, 0.5)
                _paint(image, blob, (0.32, 0.04, 0.03), softness=0.8)
                mask |= blob
            else:  # exudate: a cluster of small bright-yellow spots
                for _ in range(rng.integers(4, 9)):
                    spot = _irregular_blob(
                        rng,
                        size,
                        by + rng.normal(0, 0.04 * size),
                        bx + rng.normal(0, 0.04 * size),
                        rng.uniform(0.015, 0.03) * size,
                        0.3,
                    )
                    _paint(image, spot, (0.98, 0.9, 0.35), softness=0.5)
                    mask |= spot
        mask &= inside
    image += rng.normal(0, rng.uniform(0.005, 0.02), image.shape) * inside[..., None]
    return np.clip(image, 0, 1), mask


# --- OCT ------------------------------------------------------------------------------------------

# (relative thickness, mean intensity) of retinal layers from the inner limiting membrane to the RPE.
_OCT_LAYERS = ((0.12, 0.75), (0.14, 0.45), (0.12, 0.55), (0.12, 0.3), (0.1, 0.5), (0.22, 0.2), (0.08, 0.6), (0.1, 0.95))


def oct_image(rng: np.random.Generator, size: int, anomaly: str | None) -> Sample:
    yy, xx = _grid(size)
    cols = np.arange(size, dtype=np.float32)
    pit_x, pit_w = rng.uniform(0.35, 0.65) * size, rng.uniform(0.06, 0.1) * size
    top = (
        rng.uniform(0.28, 0.42) * size
        + rng.uniform(-0.12, 0.12) * (cols - size / 2)
        + rng.uniform(0, 0.04) * size * np.sin(cols / size * np.pi * rng.uniform(0.5, 1.5) + rng.uniform(0, 6))
        + rng.uniform(0.03, 0.07) * size * np.exp(-0.5 * ((cols - pit_x) / pit_w) ** 2)
    )
    thickness = rng.uniform(0.22, 0.3) * size * (1 - 0.5 * np.exp(-0.5 * ((cols - pit_x) / pit_w) ** 2))
    bumps = np.zeros(size, dtype=np.float32)
    if anomaly == "drusen":
        for _ in range(rng.integers(1, 4)):
            bumps += (
                rng.uniform(0.05, 0.09)
                * size
                * np.exp(-0.5 * ((cols - rng.uniform(0.15, 0.85) * size) / (rng.uniform(0.035, 0.06) * size)) ** 2)
            )

    image = np.full((size, size), 0.04, dtype=np.float32)
    fractions = np.array([t for t, _ in _OCT_LAYERS]) * rng.uniform(0.85, 1.15, len(_OCT_LAYERS))
    bounds = top[None] + np.cumsum(np.concatenate([[0], fractions / fractions.sum()]))[:, None] * thickness[None]
    bounds[-2:] -= bumps  # drusen push the RPE band (the last layer) up
    for k, (_, intensity) in enumerate(_OCT_LAYERS):
        image[(yy >= bounds[k]) & (yy < bounds[k + 1])] = intensity * rng.uniform(0.85, 1.15)
    choroid = (yy >= bounds[-1]) & (yy < bounds[-1] + rng.uniform(0.08, 0.14) * size)
    image[choroid] = 0.35 + 0.1 * _smooth_noise(rng, size, 2)[choroid]
    image = ndimage.gaussian_filter(image, 0.8)

    mask = None
    if anomaly == "drusen":
        mask = (yy >= bounds[-1]) & (yy < bounds[-1] + bumps[None]) & (bumps[None] > 1)
        image[mask] = 0.45
    elif anomaly == "fluid":
        mask = np.zeros((size, size), dtype=bool)
        for _ in range(rng.integers(1, 3)):
            x0 = rng.uniform(0.2, 0.8) * size
            col = int(np.clip(x0, 0, size - 1))
            y0 = bounds[2, col] + rng.uniform(0.2, 0.6) * (bounds[-2, col] - bounds[2, col])
            ry, rx = rng.uniform(0.04, 0.065) * size, rng.uniform(0.07, 0.13) * size
            mask |= ((yy - y0) / ry) ** 2 + ((xx - x0) / rx) ** 2 <= 1
        image[mask] = 0.03
    speckle = rng.gamma(8.0, 1 / 8.0, image.shape).astype(np.float32)
    image = image * speckle + rng.normal(0, 0.02, image.shape)
    return np.clip(image, 0, 1), mask


# --- skin -----------------------------------------------------------------------------------------


def skin_image(rng: np.random.Generator, size: int, anomaly: str | None) -> Sample:
    yy, xx = _grid(size)
    tone = np.array([rng.uniform(0.82, 0.95), rng.uniform(0.62, 0.76), rng.uniform(0.52, 0.66)], dtype=np.float32)
    image = tone * (1 + 0.04 * _smooth_noise(rng, size, size / 12) + 0.02 * _smooth_noise(rng, size, 1.5))[..., None]
    cy, cx = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    brown = np.array([rng.uniform(0.42, 0.58), rng.uniform(0.27, 0.38), rng.uniform(0.18, 0.26)], dtype=np.float32)
    mask = None
    if anomaly is None:
        a, b = rng.uniform(0.1, 0.18, 2) * size
        phi = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(phi) + (yy - cy) * np.sin(phi)
        v = -(xx - cx) * np.sin(phi) + (yy - cy) * np.cos(phi)
        lesion = (u / a) ** 2 + (v / b) ** 2 <= 1
        _paint(image, lesion, brown, softness=1.2)
        image[lesion] *= (1 + 0.03 * _smooth_noise(rng, size, 3))[lesion][:, None]
    else:
        lesion = _irregular_blob(rng, size, cy, cx, rng.uniform(0.12, 0.2) * size, rng.uniform(0.35, 0.6))
        _paint(image, lesion, brown * rng.uniform(0.8, 1.1), softness=0.8)
        palette = ((0.15, 0.09, 0.07), (0.42, 0.45, 0.56), (0.72, 0.3, 0.3), (0.3, 0.18, 0.12))
        for colour in rng.permutation(len(palette))[: rng.integers(2, 4)]:
            patch = (
                _irregular_blob(
                    rng,
                    size,
                    cy + rng.normal(0, 0.05 * size),
                    cx + rng.normal(0, 0.05 * size),
                    rng.uniform(0.04, 0.09) * size,
                    0.6,
                )
                & lesion
            )
            _paint(image, patch, palette[colour], softness=1.0)
        mask = lesion
    image += rng.normal(0, rng.uniform(0.005, 0.015), image.shape)
    return np.clip(image, 0, 1), mask


SYNTHETIC_GENERATORS: dict[str, tuple[Callable[..., Sample], tuple[str, str]]] = {
    "synth-fundus": (fundus_image, ("haemorrhage", "exudate")),
    "synth-oct": (oct_image, ("fluid", "drusen")),
    "synth-skin": (skin_image, ("irregular", "multicolour")),
}


# --- dataset on disk ------------------------------------------------------------------------------


def synthetic_folder(task: Task) -> Path:
    """Where this task's images live; generated atomically on first use."""
    opts = task.options
    counts = f"{opts['n_train']}-{opts['n_test_normal']}-{opts['n_test_abnormal']}"
    key = f"{task.name}-v{GENERATOR_VERSION}-{opts['size']}px-{counts}-seed{opts['seed']}"
    folder = cache_dir() / "synthetic" / key
    if not folder.is_dir():
        generate_synthetic(
            task.name,
            folder,
            opts["size"],
            opts["n_train"],
            opts["n_test_normal"],
            opts["n_test_abnormal"],
            opts["seed"],
        )
    return folder


def generate_synthetic(
    name: str, folder: Path, size: int, n_train: int, n_test_normal: int, n_test_abnormal: int, seed: int
) -> Path:
    """Write a synthetic dataset in folder-task layout; a crash leaves no half-written folder."""
    generator, anomalies = SYNTHETIC_GENERATORS[name]
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        plan = [("train", "NORMAL", None, i) for i in range(n_train)]
        plan += [("test", "NORMAL", None, i) for i in range(n_test_normal)]
        plan += [("test", anomalies[i % 2].upper(), anomalies[i % 2], i) for i in range(n_test_abnormal)]
        for split, class_name, anomaly, index in plan:
            stream = (
                seed,
                ("train", "test").index(split),
                0 if anomaly is None else 1 + anomalies.index(anomaly),
                index,
            )
            image, mask = generator(np.random.default_rng(stream), size, anomaly)
            out = staging / split / class_name
            out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(out / f"{index:04d}.png")
            if mask is not None:
                mask_dir = staging / "ground_truth" / class_name
                mask_dir.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8) * 255).save(mask_dir / f"{index:04d}_mask.png")
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished the same folder first; theirs is identical
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


SYNTHETIC_SCANS_PER_PATIENT = 3  # synth-oct: consecutive B-scans of one split and label form one patient
SYNTHETIC_PATIENTS = {
    "synth-oct": f"every {SYNTHETIC_SCANS_PER_PATIENT} consecutive B-scans of a split and label (by index; generated "
    "independently, so they are no more alike than others: the demo exercises the patient-level code)"
}


def synthetic_patient(path: Path, below: str, header_patient, unit) -> str:
    """``train-4``, ``test-normal-2``, ``test-abnormal-0``: the index of a generated image divided by
    :data:`SYNTHETIC_SCANS_PER_PATIENT`, per split and label (abnormal classes alternate by index, so a patient
    may have both kinds of lesion)."""
    split, label = path.parent.parent.name, "normal" if path.parent.name == "NORMAL" else "abnormal"
    group = int(strip_image_suffix(path.name)) // SYNTHETIC_SCANS_PER_PATIENT
    return f"{split}-{group}" if split == "train" else f"{split}-{label}-{group}"


def load_synthetic(task: Task, root: Path) -> tuple[list[dict], list[dict]]:
    if task.name in SYNTHETIC_PATIENTS:
        return list_class_folders(task, root, normal="NORMAL", patient_of=synthetic_patient)
    return list_class_folders(task, root, normal="NORMAL")


SYNTHETIC_DEFAULTS = {"size": 128, "n_train": 64, "n_test_normal": 24, "n_test_abnormal": 24, "seed": 0}
# the modality each stands for (and, in each method's own settings, the real task it mimics)
SYNTHETIC_MODALITY = {"synth-fundus": "fundus", "synth-oct": "OCT", "synth-skin": "dermoscopy"}


def synthetic_task(name: str, variant: str = "", **options) -> Task:
    """A built-in task, generated on first use; ``options`` change its size, counts and seed."""
    if variant:
        raise UserInputError(f"task '{name}' has no variants (got '{name}:{variant}')")
    modality = SYNTHETIC_MODALITY[name]
    unknown = set(options) - set(SYNTHETIC_DEFAULTS)
    if unknown:
        raise UserInputError(
            f"unknown option(s) {sorted(unknown)} for task '{name}'; known: {sorted(SYNTHETIC_DEFAULTS)}"
        )
    opts = {**SYNTHETIC_DEFAULTS, **options}
    return Task(
        name=name,
        modality=modality,
        protocol=Protocol(
            "synthetic",
            f"{opts['n_train']} normals",
            f"{opts['n_test_normal']} normal + {opts['n_test_abnormal']} abnormal, with masks",
            has_masks=True,
        ),
        image_size=opts["size"],
        crop_size=None,
        list_items=load_synthetic,
        layout="generated automatically in the cache folder",
        locate=lambda task, _: synthetic_folder(task),
        options=opts,
        patients=SYNTHETIC_PATIENTS.get(name, ""),
    )


def _family(name: str) -> TaskFamily:
    build = functools.partial(synthetic_task, name)
    return TaskFamily(name, build, listed=(name,), examples=lambda: [(name, build())])


FAMILIES = tuple(_family(name) for name in SYNTHETIC_GENERATORS)
SYNTHETIC_TASKS = tuple(SYNTHETIC_GENERATORS)  # the built-in tasks: what a sweep runs by default
