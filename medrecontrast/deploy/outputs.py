"""What a prediction writes, from a run's checkpoint (``predict --run``) or an exported file (``predict --model``):
the images given (files and folders), ``scores.csv``, ``unreadable.csv``, one overlay PNG per image and
``index.html``. Imports no training code (an exported file is run without it)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from medrecontrast.errors import UserInputError
from medrecontrast.paths import atomic_path, write_csv


def collect_images(inputs: list[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """The image files of ``inputs`` (files, or folders searched recursively for every format the suite reads) and
    an id for each (its name without the suffix; the path below the common folder where names repeat)."""
    from medrecontrast.data.readers import image_format, strip_image_suffix

    files: list[Path] = []
    for given in map(Path, inputs):
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.is_file() and image_format(p))
            if not found:
                raise UserInputError(f"{given} holds no image the suite reads (PNG, JPEG, BMP, TIFF, DICOM, NIfTI).")
            files += found
        elif given.is_file():
            if not image_format(given):
                raise UserInputError(f"{given} is not an image the suite reads (PNG, JPEG, BMP, TIFF, DICOM, NIfTI).")
            files.append(given)
        else:
            raise UserInputError(f"{given} does not exist.")
    _refuse_extension_twins(files)
    ids = [strip_image_suffix(p.name) for p in files]
    if len(set(ids)) < len(ids):  # several folders hold the same name: the path below their common folder
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in files]))
        ids = [strip_image_suffix(p.resolve().relative_to(root).as_posix()).replace("/", "__") for p in files]
    if len(set(ids)) < len(ids):
        raise UserInputError("some inputs are the same image file given twice; give each once.")
    return files, ids


def claim_output(out: Path) -> Path:
    """``out`` if it is new or empty; predict never overwrites files."""
    if out.exists() and any(out.iterdir()):
        raise UserInputError(f"{out} is not empty; choose a new or empty out=DIR (predict never overwrites files).")
    return out


def write_prediction(
    out: Path,
    files: list[Path],
    ids: list[str],
    scores: np.ndarray,
    maps: np.ndarray,
    unreadable: list[dict],
    *,
    image_size: int,
    crop_size: int | None,
    threshold: float | None,
    source: str,
) -> None:
    """``scores.csv`` (id, path, score and, with a label-free ``threshold``, it and the label it gives),
    ``unreadable.csv`` (with a warning) where some inputs could not be read, the overlays and ``index.html``."""
    frame = pd.DataFrame({"id": ids, "path": [str(p) for p in files], "score": scores})
    if threshold is not None:
        frame["threshold_holdout"] = threshold
        frame["label"] = np.where(scores >= threshold, "abnormal", "normal")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / PREDICTION_SCORES, frame)
    if unreadable:
        write_csv(out / UNREADABLE, pd.DataFrame(unreadable, columns=["path", "problem"]))
        warnings.warn(
            f"{len(unreadable)} of {len(unreadable) + len(files)} input image(s) could not be read and were not scored "
            f"(listed in {out / UNREADABLE}), e.g. {unreadable[0]['path']}: {unreadable[0]['problem']}",
            stacklevel=3,
        )
    _save_overlays(files, ids, scores, maps, image_size, crop_size, threshold, out / "overlays")
    _save_index(frame, threshold, source, out / "index.html")


# predict's output folder (not a run folder: `predict --model` runs without the suite's run and training code, so
# this module owns its file names): one row per scored image, and the inputs it could not read
PREDICTION_SCORES = "scores.csv"
UNREADABLE = "unreadable.csv"  # the inputs predict could not read, with the reason (written only when there are any)


def _refuse_extension_twins(files: list[Path]) -> None:
    """``img.png`` beside ``img.jpg``: one image id for two files, named both (the message said "the same image file
    given twice")."""
    from medrecontrast.data.readers import strip_image_suffix

    seen: dict[tuple[str, str], Path] = {}
    for path in files:
        key = (str(path.resolve().parent), strip_image_suffix(path.name))
        if key in seen and seen[key].resolve() != path.resolve():
            raise UserInputError(
                f"{seen[key]} and {path} are two files with one name (only the extension differs), so their scores and "
                "overlays would share a name; rename or remove one of them."
            )
        seen.setdefault(key, path)


def readable(files: list[Path], ids: list[str]) -> tuple[list[Path], list[str], list[dict]]:
    """The files that decode (every pixel read once, as `data check --deep` does), their ids, and the others with
    the reason."""
    from medrecontrast.data.readers import read_image
    from medrecontrast.errors import UnreadableImageError

    good, good_ids, bad = [], [], []
    for path, identifier in zip(files, ids):
        try:
            read_image(path)
        except UnreadableImageError as exc:
            bad.append({"path": str(path), "problem": exc.reason})
            continue
        good.append(path)
        good_ids.append(identifier)
    return good, good_ids, bad


def readable_dataset(files: list[Path], ids: list[str], image_size: int, crop_size: int | None):
    """``(files, ids, unreadable, dataset)``: the inputs that decode, as a dataset resized like the run's test images,
    and the others with the reason; refused where none can be read."""
    from medrecontrast.data.dataset import image_dataset

    files, ids, unreadable = readable(files, ids)  # one bad file no longer stops every other from being scored
    if not files:
        listed = "; ".join(f"{u['path']}: {u['problem']}" for u in unreadable[:5])
        raise UserInputError(f"none of the {len(unreadable)} input image(s) can be read: {listed}")
    items = [{"image": str(p), "label": 0, "id": i} for p, i in zip(files, ids)]
    return files, ids, unreadable, image_dataset(items, image_size, crop_size, masks=False, cache="none")


MAX_SIDE = 2048  # overlays keep the image's own size and aspect up to this long side (a 4000 px photo is halved)


def map_on_original(heat: np.ndarray, height: int, width: int, image_size: int, crop_size: int | None) -> np.ndarray:
    """The anomaly map of the network's input (``crop_size`` or ``image_size`` square) placed back on the original
    ``height`` x ``width`` image: the input was the image resized to ``image_size`` square and centre-cropped, so
    the map is put at the crop's place (NaN outside it: nothing was scored there) and resized back to the original
    size and aspect (bilinear)."""
    import torch
    import torch.nn.functional as F

    frame = np.full((image_size, image_size), np.nan, dtype=np.float32)
    side = heat.shape[0]
    start = (image_size - side) // 2
    frame[start : start + side, start : start + side] = heat
    valid = np.isfinite(frame).astype(np.float32)
    values = torch.from_numpy(np.nan_to_num(frame))[None, None]
    weights = torch.from_numpy(valid)[None, None]
    values = F.interpolate(values, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()
    weights = F.interpolate(weights, size=(height, width), mode="bilinear", align_corners=False)[0, 0].numpy()
    return np.where(weights > 0.5, values / np.maximum(weights, 1e-6), np.nan)


def _save_overlays(files, ids, scores, maps, image_size, crop_size, threshold, folder: Path) -> None:
    """One PNG per image at its own resolution and aspect (up to :data:`MAX_SIDE`): the original as a viewer shows
    it, beside its anomaly map (inferno on ONE colour scale for all the images of this prediction, with its colour
    bar), titled with the image's score and, where the run fixed a label-free threshold, the label it gives."""
    from matplotlib.figure import Figure

    from medrecontrast.data.readers import read_image

    folder.mkdir(parents=True, exist_ok=True)
    low, high = float(np.nanmin(maps)), float(np.nanmax(maps))
    for index, (path, identifier) in enumerate(zip(files, ids)):
        original = read_image(path)
        original = np.clip(original.transpose(1, 2, 0), 0, 1)
        height, width = original.shape[:2]
        scale = min(1.0, MAX_SIDE / max(height, width))
        if scale < 1:
            from PIL import Image

            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            original = (
                np.asarray(
                    Image.fromarray((original * 255).astype(np.uint8).squeeze()).resize(size, Image.BILINEAR)
                ).astype(np.float32)
                / 255
            )
            original = original if original.ndim == 3 else original[..., None]
            height, width = original.shape[:2]
        heat = map_on_original(maps[index], height, width, image_size, crop_size)
        score = float(scores[index])
        verdict = (
            f"{'abnormal' if score >= threshold else 'normal'} at the run's threshold {threshold:.4g}"
            if threshold is not None
            else "no label: the run fixed no label-free threshold (holdout 0)"
        )
        dpi = 100
        figure = Figure(figsize=(max(2 * width / dpi + 1.2, 4.0), max(height / dpi + 0.9, 2.2)), dpi=dpi)
        left, right = figure.subplots(1, 2)
        left.imshow(original.squeeze(), cmap="gray" if original.shape[2] == 1 else None, vmin=0, vmax=1)
        shown = right.imshow(heat, cmap="inferno", vmin=low, vmax=high)
        figure.colorbar(shown, ax=right, fraction=0.046, pad=0.02, label="anomaly score (one scale for all images)")
        left.set_title("image", fontsize=8)
        right.set_title("anomaly map", fontsize=8)
        for ax in (left, right):
            ax.set_axis_off()
        figure.suptitle(f"{identifier}: score {score:.4g}, {verdict}", fontsize=9)
        with atomic_path(folder / f"{identifier}.png") as partial:
            figure.savefig(partial, format="png", dpi=dpi, bbox_inches="tight")


def _save_index(frame: pd.DataFrame, threshold, source: str, path: Path) -> None:
    """``index.html``: every prediction sorted by score (highest first), each row its overlay, score and label; one
    file that opens offline (the overlays are beside it); names are escaped (jinja2 autoescape)."""
    import jinja2

    template = jinja2.Environment(autoescape=True).from_string(INDEX_TEMPLATE)
    rows = frame.sort_values("score", ascending=False).to_dict("records")
    html = template.render(rows=rows, threshold=threshold, source=source)
    with atomic_path(path) as partial:
        partial.write_text(html, encoding="utf-8")


INDEX_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medrecontrast predictions</title>
<style>body{font-family:sans-serif;margin:1.5em;max-width:75em}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ccc;padding:.4em;text-align:left;vertical-align:top}
img{max-width:40em;height:auto}</style>
</head><body>
<h1>Predictions of {{ source }}</h1>
<p>{{ rows|length }} image(s), highest score first.
{% if threshold is not none %}Label: abnormal where the score reaches the run's label-free threshold
{{ "%.4g"|format(threshold) }} (the 95th percentile of held-out normal training images).
{% else %}No label: the run held out no normals, so it has no label-free threshold.{% endif %}
Scores are comparable only within one run.</p>
<table><tr><th>rank</th><th>image</th><th>score</th><th>label</th><th>overlay</th></tr>
{% for row in rows %}<tr><td>{{ loop.index }}</td><td>{{ row.id }}<br><small>{{ row.path }}</small></td>
<td>{{ "%.4g"|format(row.score) }}</td><td>{{ row.label if row.label is defined else "–" }}</td>
<td><a href="overlays/{{ row.id|urlencode }}.png"><img loading="lazy" src="overlays/{{ row.id|urlencode }}.png"
alt="{{ row.id }}"></a></td></tr>
{% endfor %}</table></body></html>
"""
