"""One training run (task, method, seed) in its own folder: the API behind `train` and `evaluate`.

A run folder holds everything needed to trust and reproduce a number: ``config.json`` (the whole
resolved configuration), ``environment.json`` (package versions, device, git revision),
``checkpoint.pt`` (training state, for ``--resume``), ``model.pt`` (the fitted detector),
``loss.csv``, ``scores.csv`` (per test image), ``metrics.json`` (metrics and timings) and
``status.json``. A finished run is never overwritten unless asked (``force``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medrecontrast.data.dataset import task_datasets
from medrecontrast.errors import UserInputError, require_format
from medrecontrast.metrics import THRESHOLD_QUANTILE, aupro_image_values, evaluate
from medrecontrast.models import Detector, build_detector
from medrecontrast.models.base import detector_class
from medrecontrast.paths import atomic_path, remove_stale_partials, write_csv, write_json
from medrecontrast.resources import peak_memory
from medrecontrast.stats import pixel_statistics
from medrecontrast.tasks import Task, get_task
from medrecontrast.tasks.base import TaskData

PROFILES = {
    # The paper's settings: WRN50-2 with ImageNet weights, each task's own sizes and each method's
    # own per-task settings, and every training normal trains, as the authors' code does
    # (``holdout = 0.05`` holds 5 % out to fix a decision threshold without test labels; the report
    # says which protocol each run used).
    "paper": {"backbone": "wide_resnet50_2", "pretrained": True, "holdout": 0.0},
    # Minutes on 2 CPU cores: small backbone, no download, small images; each method adds its own
    # demo settings (``Detector.profile_options["demo"]``, e.g. a short schedule).
    "demo": {"backbone": "resnet18", "pretrained": False, "image_size": 64, "holdout": 0.15},
}


def default_profile(tasks) -> str:
    """The profile a sweep or a run gets when none is named: ``demo`` for the built-in synthetic tasks
    (minutes on a CPU, no download), ``paper`` for real data; a mix must name one (no silent choice)."""
    from medrecontrast.tasks.synthetic import SYNTHETIC_TASKS

    names = [str(t).split(":")[0].lower() for t in tasks]
    built_in = [n in SYNTHETIC_TASKS for n in names]
    if all(built_in):
        return "demo"
    if not any(built_in):
        return "paper"
    raise UserInputError(
        f"tasks {', '.join(map(str, tasks))} mix built-in tasks (demo profile by default) and real data (paper profile by default); "
        "name one with --profile demo or --profile paper (TOML: profile = ...)."
    )


RUN_FORMAT = 3  # 3: config.json holds every resolved option (2 held only those that differ from the defaults)
RUN_KEYS = ("image_size", "crop_size", "holdout", "threshold_quantile")  # overrides that are not detector options
HOLDOUT_SEED = 0  # the held-out normals are the same for every method and seed of a task
EXAMPLES = 4  # test images whose maps are kept for the qualitative figure
DATA_RECORD = "data.json"  # fingerprint of the task's files the run last trained or evaluated on
EVALUATIONS = "evaluations.json"  # every re-evaluation: when, on which data, where the previous results went
PIXEL_STATISTICS = "pixel_stats.npz"  # per-image pixel-metric statistics, for intervals of the pixel metrics


def run_config(
    task: Task,
    method: str,
    seed: int,
    profile: str = "demo",
    overrides: dict | None = None,
    weights: str | None = None,
    variant: str | None = None,
) -> dict:
    """The full, resolved configuration of a run: every detector option, the task's protocol and the
    data settings, so that a changed default can never silently change what a run folder means.

    ``overrides`` (from ``--iters``, ``--holdout`` or a sweep's TOML) hold run keys (``image_size``,
    ``crop_size``, ``holdout``, ``threshold_quantile``) or options of the method's detector; others
    are refused. ``variant`` names a sweep's method variant (a method plus overrides).
    """
    if profile not in PROFILES:
        raise UserInputError(f"unknown profile '{profile}'; choose one of {', '.join(PROFILES)}")
    p = PROFILES[profile]
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(RUN_KEYS) - set(detector_options(method)))
    if unknown:
        raise UserInputError(f"unknown option(s) {', '.join(unknown)} for method '{method}'; known: {', '.join(RUN_KEYS + detector_options(method))}")
    cls = detector_class(method)
    detector = {"backbone": p["backbone"], "pretrained": p["pretrained"], "weights": weights, "seed": seed}
    detector.update(cls.task_options(task))  # the method's per-task settings (its own module says which)
    detector.update(cls.profile_options.get(profile, {}))
    sizes = {"image_size": p.get("image_size", task.image_size), "crop_size": None if "image_size" in p else task.crop_size}
    sizes.update(cls.profile_sizes.get(profile, {}))
    if "iters" in overrides and "epochs" in detector_options(method):
        detector["epochs"] = None  # an explicit schedule replaces the profile's
    elif "epochs" in overrides:
        detector["iters"] = None
    detector.update({k: v for k, v in overrides.items() if k not in RUN_KEYS})
    config = {
        "format": RUN_FORMAT,
        "task": task.name,
        "task_options": task.user_options,
        "task_protocol": _task_protocol(task),
        "method": method,
        "variant": variant,
        "seed": seed,
        "profile": profile,
        **sizes,
        "holdout": p["holdout"],
        "threshold_quantile": THRESHOLD_QUANTILE,
        "overrides": overrides,
        "detector": resolved_detector_options(method, detector),
    }
    config.update({k: v for k, v in overrides.items() if k in RUN_KEYS})
    if not isinstance(config["holdout"], (int, float)) or isinstance(config["holdout"], bool) or not 0 <= config["holdout"] < 1:
        raise UserInputError(f"holdout must be a fraction in [0, 1), got {config['holdout']!r}")
    for key in ("image_size", "crop_size"):
        value = config[key]
        if (value is not None or key == "image_size") and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserInputError(f"{key} must be a positive integer (pixels), got {value!r}")
    if config["crop_size"] is not None and config["crop_size"] > config["image_size"]:
        source = (
            "set"
            if "crop_size" in overrides
            else f"{method}'s {profile}-profile crop"
            if "crop_size" in cls.profile_sizes.get(profile, {})
            else f"task {task.name}'s crop"
        )
        raise UserInputError(
            f"crop_size must not exceed image_size, got {config['crop_size']} ({source}) > {config['image_size']}; set crop_size too (or null for no crop)"
        )
    quantile = config["threshold_quantile"]
    if not isinstance(quantile, (int, float)) or isinstance(quantile, bool) or not 0 < quantile <= 1:
        raise UserInputError(f"threshold_quantile must be a fraction in (0, 1], got {quantile!r}")
    side = config["crop_size"] or config["image_size"]
    if side % cls.size_multiple:
        raise UserInputError(f"{method} needs an input size that is a multiple of {cls.size_multiple}, got {side}")
    return json.loads(json.dumps(config))  # as config.json will hold it (tuples become lists)


def resolved_detector_options(method: str, options: dict) -> dict:
    """Every option of ``method``'s detector with ``options`` applied, checked as the detector checks them."""
    Config = detector_class(method).Config
    try:
        return dataclasses.asdict(Config(**options))
    except TypeError as exc:
        raise UserInputError(f"bad option for method '{method}': {exc}") from None


def _task_protocol(task: Task) -> dict:
    """What fixes the task's split: its protocol's name and resolved options (e.g. APTOS n_train,
    split_seed), its sizes and whether it is unified (not the protocol's wording, which may be edited)."""
    return {"name": task.protocol.name, "options": task.options, "image_size": task.image_size, "crop_size": task.crop_size, "unified": task.hparams.unified}


def protocol_label(holdout: float) -> str:
    """The training protocol of a run in words, for tables and the report."""
    if not holdout:
        return "all training normals train (as the papers)"
    return f"{holdout:.0%} of training normals held out for the label-free threshold"


def detector_options(method: str) -> tuple[str, ...]:
    """Option names of ``method``'s detector (its Config fields); an unknown method is a user error."""
    return tuple(f.name for f in dataclasses.fields(detector_class(method).Config))


def environment() -> dict:
    """Exact versions, device, CPU (model, instruction set torch uses, threads) and code revision a
    result was produced with: CPU results depend on the instruction set oneDNN picks and on the
    thread count (README "Reproducibility")."""
    packages = {name: _version(name) for name in ("medrecontrast", "torch", "torchvision", "monai", "numpy", "scikit-learn", "pandas")}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": platform.node(),
        "packages": packages,
        "device": device,
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_revision": _git_revision(),
    }


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo`` on Linux, else what the platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def split_holdout(items: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """``(train, holdout)``: a fixed random ``fraction`` of the normal training items is held out.

    The draw depends only on the items' ids (``HOLDOUT_SEED``), so every method and seed of a task
    trains on the same images and calibrates on the same held-out ones.
    """
    if fraction <= 0:
        return list(items), []
    count = max(1, round(len(items) * fraction))
    if count >= len(items):
        raise UserInputError(f"holdout {fraction} would leave no training images out of {len(items)}")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(items))
    held = set(order[:count].tolist())
    return [it for i, it in enumerate(items) if i not in held], [it for i, it in enumerate(items) if i in held]


def groups_of_test_images(data: TaskData) -> list[str] | None:
    """The member task of each test image of a unified task (None for other tasks)."""
    return [it["group"] for it in data.test] if data.task.members else None


def run_datasets(data: TaskData, config: dict) -> tuple[Dataset, Dataset, Dataset | None]:
    """``(train, test, holdout)`` datasets of a run: the training normals minus the held-out ones,
    the test set, and the held-out normals (None with ``holdout = 0``), at the run's sizes."""
    fit_items, holdout_items = split_holdout(data.train, config["holdout"])

    def datasets(train_items: list[dict]) -> tuple[Dataset, Dataset]:
        return task_datasets(dataclasses.replace(data, train=train_items), image_size=config["image_size"], crop_size=config["crop_size"])

    train, test = datasets(fit_items)
    return train, test, datasets(holdout_items)[0] if holdout_items else None


def train_run(
    task: str | Task,
    method: str,
    out: str | os.PathLike,
    seed: int = 0,
    profile: str = "demo",
    overrides: dict | None = None,
    resume: bool = False,
    force: bool = False,
    data_root: str | os.PathLike | None = None,
    weights: str | None = None,
    progress: bool = True,
    variant: str | None = None,
) -> dict:
    """Train ``method`` on ``task`` with ``seed`` into ``out`` and evaluate it; returns the metrics.

    An exception marks the run ``failed`` (with its error) in ``status.json`` and is re-raised; an
    interrupted process leaves it ``running``, which a later ``resume`` continues.
    """
    task = get_task(task) if isinstance(task, str) else task
    out = Path(out)
    config = run_config(task, method, seed, profile, overrides, weights, variant)
    _claim_folder(out, config, resume, force)
    remove_stale_partials(out)  # temporaries of a killed process (a full disk keeps them otherwise)
    write_json(out / "config.json", config)
    write_json(out / "environment.json", environment())
    write_json(out / "status.json", {"status": "running", "started": _now()})
    try:
        metrics = _train_and_evaluate(task, config, out, resume, data_root, progress)
    except Exception as exc:
        _record_failure(out, exc)
        raise
    write_json(out / "status.json", {"status": "finished", "finished": _now()})
    return metrics


def _record_failure(out: Path, exc: BaseException) -> None:
    """Mark the run ``failed`` even on a full disk: the atomic write needs room for a second copy, so
    after freeing this run's temporaries a plain in-place write of the small status is tried."""
    status = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(), "finished": _now()}
    try:
        write_json(out / "status.json", status)
    except OSError:
        remove_stale_partials(out, including_own=True)
        try:
            (out / "status.json").write_text(json.dumps({k: v for k, v in status.items() if k != "traceback"}))
        except OSError:
            pass  # nothing can be written: the report counts the run as unknown (status "running", no live claim)


def _train_and_evaluate(task: Task, config: dict, out: Path, resume: bool, data_root, progress: bool) -> dict:
    data = task.load(data_root)
    write_json(out / DATA_RECORD, _data_record(data, data_root))
    train, test, holdout = run_datasets(data, config)
    detector = build_detector(config["method"], **config["detector"])
    with peak_memory(detector.device) as memory:
        began = time.perf_counter()
        detector.fit(train, checkpoint=out / "checkpoint.pt" if detector.trains else None, resume=resume, progress=progress)
        train_seconds = detector.train_seconds_ if detector.train_seconds_ is not None else time.perf_counter() - began
    if detector.losses_ is not None:
        losses = detector.losses_
        write_csv(out / "loss.csv", pd.DataFrame({"iteration": range(len(losses)), "loss": losses}))
    images_seen, iterations = detector.images_seen_, detector.iters_
    detector.save(out / "model.pt")
    metrics = evaluate_detector(detector, test, holdout, out, config["threshold_quantile"], groups_of_test_images(data))
    metrics["timings"].update(
        train_s=train_seconds,
        train_images_per_s=images_seen / train_seconds if train_seconds else None,
        train_iterations=iterations,
        train_peak_memory_mb=memory["peak_memory_mb"],
        peak_memory_kind=memory["peak_memory_kind"],
    )
    write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_run(run: str | os.PathLike, data_root: str | os.PathLike | None = None, force: bool = False) -> dict:
    """Re-score a finished run's saved detector on its test set, without retraining.

    Refused (unless ``force``) when the run's recorded options no longer resolve to the same values
    with this version of the suite, e.g. after a default changed: its numbers would mean something else.
    """
    run = Path(run)
    config_path, model_path = run / "config.json", run / "model.pt"
    if not config_path.is_file() or not model_path.is_file():
        raise UserInputError(f"{run} is not a finished run folder (expected config.json and model.pt).")
    config = read_run_config(run)
    task = get_task(config["task"], **config.get("task_options", {}))
    current = run_config(
        task, config["method"], config["seed"], config["profile"], config.get("overrides"), config["detector"].get("weights"), config.get("variant")
    )
    if current != config and not force:
        changed = changed_keys(current, config)
        details = changed if changed != ["detector"] else [f"detector.{k}" for k in changed_keys(current["detector"], config["detector"])]
        raise UserInputError(
            f"{run} was trained with options that no longer resolve to the same values ({', '.join(details)} differ); pass --force to re-evaluate it anyway."
        )
    detector = Detector.load(model_path, backbone=config["detector"]["backbone"])
    if detector.name != config["method"]:
        raise UserInputError(f"{model_path} holds a '{detector.name}' detector but the run is '{config['method']}'.")
    data = task.load(data_root)
    fingerprint = _data_record(data, data_root)
    recorded = json.loads((run / DATA_RECORD).read_text()) if (run / DATA_RECORD).is_file() else None
    has_results = (run / "metrics.json").is_file()
    if has_results and not force:
        same = recorded is not None and recorded.get("sha256") == fingerprint["sha256"]
        raise UserInputError(
            f"{run} already holds results; re-evaluating replaces its scores.csv and metrics.json, which a sweep's report reads"
            + ("" if same else " (and the task's files differ from those it was trained on)")
            + ". Pass --force to re-evaluate: the previous results are kept under previous/ and the re-evaluation is recorded in evaluations.json."
        )
    previous = json.loads((run / "metrics.json").read_text()) if has_results else {}
    kept_in = _keep_previous_results(run) if has_results else None
    _, test, holdout = run_datasets(data, config)
    metrics = evaluate_detector(detector, test, holdout, run, config["threshold_quantile"], groups_of_test_images(data))
    kept = {k: v for k, v in previous.get("timings", {}).items() if k.startswith("train")}
    metrics["timings"].update(kept)
    write_json(run / "metrics.json", metrics)
    write_json(run / DATA_RECORD, fingerprint)
    history = json.loads((run / EVALUATIONS).read_text()) if (run / EVALUATIONS).is_file() else []
    history.append(
        {
            "when": _now(),
            "data": fingerprint,
            "trained_on": recorded,
            "same_data_as_training": recorded is not None and recorded.get("sha256") == fingerprint["sha256"],
            "previous_results": None if kept_in is None else str(kept_in.relative_to(run)),
            "forced": force,
        }
    )
    write_json(run / EVALUATIONS, history)
    return metrics


def _data_record(data: TaskData, data_root) -> dict:
    """What ``data.json`` (and each entry of ``evaluations.json``) says about the files a run read."""
    return {**data.fingerprint(), "data_root": None if data_root is None else str(data_root)}


def _keep_previous_results(run: Path) -> Path:
    """Copy a run's results into ``previous/<UTC time>/`` before a re-evaluation replaces them."""
    folder = run / "previous" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    folder.mkdir(parents=True)
    for name in ("scores.csv", "metrics.json", "holdout_scores.csv", "examples.npz", PIXEL_STATISTICS, DATA_RECORD):
        if (run / name).is_file():
            shutil.copy2(run / name, folder / name)
    return folder


def predict_images(run: str | os.PathLike, inputs: list[str | os.PathLike], out: str | os.PathLike | None = None, batch_size: int = 16) -> Path:
    """Score new images with a finished run's saved detector, without retraining.

    ``inputs`` are image files or folders (searched recursively for every format the suite reads).
    Each image is resized like the run's test images. Writes into ``out`` (default
    ``<run>/predictions/<UTC time>``; it must be new or empty): ``scores.csv`` (one row per image:
    id, path, score and, where the run fixed a label-free threshold from held-out normals, that
    threshold and the label it gives) and ``overlays/<id>.png`` (the image with its anomaly map, one
    colour scale for all images). Returns ``out``.
    """
    from medrecontrast.data.dataset import image_dataset
    from medrecontrast.data.readers import image_format, strip_image_suffix

    run = Path(run)
    if not (run / "config.json").is_file() or not (run / "model.pt").is_file():
        raise UserInputError(f"{run} is not a finished run folder (expected config.json and model.pt).")
    config = read_run_config(run)
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
    ids = [strip_image_suffix(p.name) for p in files]
    if len(set(ids)) < len(ids):  # several folders hold the same name: the path below their common folder
        root = Path(os.path.commonpath([str(p.resolve().parent) for p in files]))
        ids = [strip_image_suffix(p.resolve().relative_to(root).as_posix()).replace("/", "__") for p in files]
    if len(set(ids)) < len(ids):
        raise UserInputError("some inputs are the same image file given twice; give each once.")
    out = Path(out) if out else run / "predictions" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if out.exists() and any(out.iterdir()):
        raise UserInputError(f"{out} is not empty; choose a new or empty --out (predict never overwrites files).")
    detector = Detector.load(run / "model.pt", backbone=config["detector"]["backbone"])
    items = [{"image": str(p), "label": 0, "id": i} for p, i in zip(files, ids)]
    dataset = image_dataset(items, config["image_size"], config["crop_size"], masks=False, cache="none")
    predictions = detector.predict(dataset, batch_size=batch_size)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    threshold = metrics.get("threshold_holdout")
    frame = pd.DataFrame({"id": predictions.ids, "path": [str(p) for p in files], "score": predictions.scores})
    if threshold is not None:
        frame["threshold_holdout"] = threshold
        frame["label"] = np.where(predictions.scores >= threshold, "abnormal", "normal")
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "scores.csv", frame)
    _save_overlays(dataset, predictions, out / "overlays")
    return out


def _save_overlays(dataset, predictions, folder: Path) -> None:
    """Each image with its anomaly map over it (inferno, one colour scale for all images) as PNG."""
    from matplotlib import colormaps
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    low, high = float(predictions.maps.min()), float(predictions.maps.max())
    colour = colormaps["inferno"]
    for index, identifier in enumerate(predictions.ids):
        image = display_image(dataset[index]["image"]).astype(np.float32)
        scaled = (predictions.maps[index] - low) / max(high - low, 1e-12)
        heat = colour(scaled)[..., :3] * 255
        blended = (0.5 * image + 0.5 * heat).round().astype(np.uint8)
        with atomic_path(folder / f"{identifier}.png") as partial:
            Image.fromarray(blended).save(partial, format="PNG")


def changed_keys(recorded: dict, resolved: dict) -> list[str]:
    """The keys whose values differ between two run configurations, sorted (for error messages)."""
    return sorted(k for k in set(recorded) | set(resolved) if recorded.get(k) != resolved.get(k))


def read_run_config(folder: str | os.PathLike) -> dict:
    """A run folder's ``config.json``, refused if written with another run format."""
    config = json.loads((Path(folder) / "config.json").read_text())
    require_format(config.get("format"), RUN_FORMAT, "a run", folder, "Choose another --out or rerun it with this version.")
    return config


def evaluate_detector(detector: Detector, test, holdout, out: Path, quantile: float = THRESHOLD_QUANTILE, groups: list[str] | None = None) -> dict:
    """Score the test set, write ``scores.csv`` and ``examples.npz`` into ``out``, return every metric.

    ``holdout`` (normal training images the detector never saw, or None) fixes the label-free threshold.
    ``groups`` (a unified task's member of each test image) gives metrics per member under
    ``per_class`` and their mean at the top level, as the unified scripts report the class mean.
    """
    with peak_memory(detector.device) as memory:
        began = time.perf_counter()
        predictions = detector.predict(test)
        seconds = time.perf_counter() - began
    frame = {"id": predictions.ids, "label": predictions.labels, "score": predictions.scores}
    if groups is not None:
        frame["group"] = groups
    if predictions.categories is not None:
        frame["category"] = predictions.categories  # the subtype (e.g. CNV, MEL) for per-subtype AUROC
    write_csv(out / "scores.csv", pd.DataFrame(frame))
    _save_pixel_statistics(predictions, out / PIXEL_STATISTICS)
    held_scores = None
    if holdout is not None:
        held_scores = detector.predict(holdout).scores
        write_csv(out / "holdout_scores.csv", pd.DataFrame({"score": held_scores}))
    metrics = evaluate(predictions, held_scores, quantile, groups)
    _save_examples(test, predictions, out / "examples.npz")
    metrics["timings"] = {
        "inference_s": seconds,
        "images_per_s": len(predictions.ids) / seconds if seconds else None,
        "inference_peak_memory_mb": memory["peak_memory_mb"],
    }
    return metrics


def _save_pixel_statistics(predictions, path: Path) -> None:
    """Per-image sufficient statistics of the pixel metrics (``stats.pixel_statistics``), so that the
    report can resample test images for pixel AUROC and AUPRO intervals without the full maps; the
    per-image AUPRO of each abnormal image rides along. Nothing is written for a task without masks."""
    if predictions.masks is None or not np.asarray(predictions.masks).any():
        return
    known = np.ones(len(predictions.ids), bool) if predictions.mask_known is None else np.asarray(predictions.mask_known, bool)
    statistics = pixel_statistics(predictions.masks, predictions.maps)
    for key in ("normal_above", "abnormal_above", "region_overlap", "normal_pixels", "abnormal_pixels", "regions"):
        statistics[key][~known] = 0  # an image without its mask takes no part in the pixel metrics
    per_image = np.full(len(known), np.nan)
    counted = known & (np.asarray(predictions.labels) == 1)
    per_image[counted] = aupro_image_values(predictions.masks[counted], predictions.maps[counted])
    with atomic_path(path) as partial, open(partial, "wb") as handle:
        np.savez_compressed(handle, ids=np.array(predictions.ids), aupro_per_image=per_image, **statistics)


def example_indices(labels: np.ndarray, categories: list[str], count: int = EXAMPLES) -> list[int]:
    """One normal test image, then abnormal ones taking each abnormality class in turn.

    A pure function of the test set, so every method and seed of a task shows the same images.
    """
    normal = [int(i) for i in np.flatnonzero(labels == 0)[:1]]
    by_class: dict[str, list[int]] = {}
    for i in np.flatnonzero(labels == 1):
        by_class.setdefault(categories[i], []).append(int(i))
    abnormal: list[int] = []
    while len(abnormal) < count - len(normal) and any(by_class.values()):
        for queue in by_class.values():
            if queue and len(abnormal) < count - len(normal):
                abnormal.append(queue.pop(0))
    return normal + sorted(abnormal)


def _save_examples(test, predictions, path: Path) -> None:
    """A few test images (uint8 RGB), their masks and anomaly maps, for the qualitative figure."""
    chosen = example_indices(predictions.labels, predictions.categories or [""] * len(predictions.ids))
    images = np.stack([display_image(test[i]["image"]) for i in chosen])
    masks = predictions.masks[chosen] if predictions.masks is not None else np.zeros((len(chosen), *images.shape[1:3]), np.uint8)
    with atomic_path(path) as partial, open(partial, "wb") as handle:  # a file object: numpy adds no ".npz"
        np.savez_compressed(
            handle,
            ids=np.array([predictions.ids[i] for i in chosen]),
            labels=predictions.labels[chosen],
            images=images,
            masks=masks,
            maps=predictions.maps[chosen].astype(np.float16),
            scores=predictions.scores[chosen],
        )


def display_image(image) -> np.ndarray:
    """A dataset's (3, H, W) image (pixels in [0, 1]) as (H, W, 3) uint8 for display."""
    array = np.asarray(image, dtype=np.float32)
    return (np.clip(array, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def _claim_folder(out: Path, config: dict, resume: bool, force: bool) -> None:
    status_file = out / "status.json"
    if out.exists() and any(out.iterdir()):
        if not status_file.is_file():
            raise UserInputError(f"{out} is not empty and is not a run folder; choose an empty or new --out.")
        status = json.loads(status_file.read_text()).get("status")
        if force:
            shutil.rmtree(out)
        elif status == "finished":
            raise UserInputError(f"{out} already holds a finished run; pass --force to overwrite it or choose another --out.")
        elif not resume:
            raise UserInputError(f"{out} holds an unfinished run; pass --resume to continue it or --force to start again.")
        else:
            previous = json.loads((out / "config.json").read_text()) if (out / "config.json").is_file() else None
            if previous is not None and previous != config:
                changed = changed_keys(previous, config)
                raise UserInputError(
                    f"{out} holds a run whose recorded options differ from what this command resolves to ({', '.join(changed)} differ; "
                    f"a default may have changed); --resume needs the same task, method, seed, profile and options. Pass --force to start it again."
                )
    out.mkdir(parents=True, exist_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        if name == "medrecontrast":  # on the path but not installed (``python -m medrecontrast`` from a checkout)
            from medrecontrast import __version__

            return __version__
        return None


def _git_revision() -> str | None:
    """The package's commit, with ``+changes`` when its files differ from it (None outside a checkout)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip()

    try:
        revision = git("rev-parse", "HEAD")
        return (revision + ("+changes" if git("status", "--porcelain", "--untracked-files=no", "--", ".") else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None
