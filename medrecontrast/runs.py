"""One training run (task, method, seed) in its own folder: the API behind `train` and `evaluate`.

A run folder holds everything needed to trust and reproduce a number: ``config.json`` (the whole
resolved configuration), ``environment.json`` (package versions, device, git revision),
``checkpoint.pt`` (training state, for ``--resume``), ``model.pt`` (the fitted detector),
``loss.csv``, ``scores.csv`` (per test image), ``metrics.json`` (metrics and timings) and
``status.json``. A finished run is never overwritten unless asked (``force``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from medrecontrast.data.dataset import task_datasets
from medrecontrast.errors import UserInputError
from medrecontrast.metrics import image_metrics, pixel_auroc
from medrecontrast.models import Detector, build_detector
from medrecontrast.tasks import Task, get_task

PROFILES = {
    # The paper's settings: WRN50-2 with ImageNet weights, each task's own sizes and schedule.
    "paper": {"backbone": "wide_resnet50_2", "pretrained": True},
    # Minutes on 2 CPU cores: small backbone, no download, small images, few iterations.
    "demo": {"backbone": "resnet18", "pretrained": False, "image_size": 64, "iters": 150, "batch_size": 16, "embed_dim": 256},
}
TRAINABLE = ("recontrast", "rd4ad")
RUN_FORMAT = 1


def run_config(task: Task, method: str, seed: int, profile: str = "demo", iters: int | None = None, weights: str | None = None) -> dict:
    """The full configuration of a run: detector options plus the data sizes."""
    if profile not in PROFILES:
        raise UserInputError(f"unknown profile '{profile}'; choose one of {', '.join(PROFILES)}")
    p = PROFILES[profile]
    image_size = p.get("image_size", task.image_size)
    crop_size = None if "image_size" in p else task.crop_size
    detector = {"backbone": p["backbone"], "pretrained": p["pretrained"], "weights": weights, "seed": seed}
    if method in TRAINABLE:
        detector.update(
            iters=iters or p.get("iters", task.hparams.iters),
            batch_size=p.get("batch_size", task.hparams.batch_size),
            image_score=task.hparams.image_score,
        )
        if method == "recontrast":
            detector["encoder_bn_train"] = task.hparams.encoder_bn_train
    elif "embed_dim" in p:
        detector["embed_dim"] = p["embed_dim"]
    return {
        "format": RUN_FORMAT, "task": task.name, "task_options": task.user_options, "method": method, "seed": seed, "profile": profile,
        "image_size": image_size, "crop_size": crop_size, "detector": detector,
    }


def environment() -> dict:
    """Exact versions, device and code revision a result was produced with."""
    packages = {name: _version(name) for name in ("medrecontrast", "torch", "torchvision", "monai", "numpy", "scikit-learn", "pandas")}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "packages": packages, "device": device,
        "torch_threads": torch.get_num_threads(), "git_revision": _git_revision(),
    }


def train_run(
    task: str | Task,
    method: str,
    out: str | os.PathLike,
    seed: int = 0,
    profile: str = "demo",
    iters: int | None = None,
    resume: bool = False,
    force: bool = False,
    data_root: str | os.PathLike | None = None,
    weights: str | None = None,
    progress: bool = True,
) -> dict:
    """Train ``method`` on ``task`` with ``seed`` into ``out`` and evaluate it; returns the metrics."""
    task = get_task(task) if isinstance(task, str) else task
    out = Path(out)
    config = run_config(task, method, seed, profile, iters, weights)
    _claim_folder(out, config, resume, force)
    data = task.load(data_root)
    train, test = task_datasets(data, image_size=config["image_size"], crop_size=config["crop_size"])
    detector = build_detector(method, **config["detector"])
    _write_json(out / "config.json", config)
    _write_json(out / "environment.json", environment())
    _write_json(out / "status.json", {"status": "running"})
    began = time.perf_counter()
    if method in TRAINABLE:
        detector.fit(train, checkpoint=out / "checkpoint.pt", resume=resume, progress=progress)
        pd.DataFrame({"iteration": range(len(detector.training_.losses)), "loss": detector.training_.losses}).to_csv(out / "loss.csv", index=False)
    else:
        detector.fit(train, progress=progress)
    train_seconds = time.perf_counter() - began
    detector.save(out / "model.pt")
    metrics = _evaluate(detector, test, out)
    metrics["timings"]["train_s"] = train_seconds
    _write_json(out / "metrics.json", metrics)
    _write_json(out / "status.json", {"status": "finished"})
    return metrics


def evaluate_run(run: str | os.PathLike, data_root: str | os.PathLike | None = None) -> dict:
    """Re-score a finished run's saved detector on its test set, without retraining."""
    run = Path(run)
    config_path, model_path = run / "config.json", run / "model.pt"
    if not config_path.is_file() or not model_path.is_file():
        raise UserInputError(f"{run} is not a finished run folder (expected config.json and model.pt).")
    config = json.loads(config_path.read_text())
    if config.get("format") != RUN_FORMAT:
        raise UserInputError(f"{run} was written by an incompatible version (run format {config.get('format')}, expected {RUN_FORMAT}).")
    detector = Detector.load(model_path, backbone=config["detector"]["backbone"])
    if detector.name != config["method"]:
        raise UserInputError(f"{model_path} holds a '{detector.name}' detector but the run is '{config['method']}'.")
    data = get_task(config["task"], **config.get("task_options", {})).load(data_root)
    _, test = task_datasets(data, image_size=config["image_size"], crop_size=config["crop_size"])
    previous = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    metrics = _evaluate(detector, test, run)
    metrics["timings"]["train_s"] = previous.get("timings", {}).get("train_s")
    _write_json(run / "metrics.json", metrics)
    return metrics


def _evaluate(detector: Detector, test, out: Path) -> dict:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    predictions = detector.predict(test)
    seconds = time.perf_counter() - began
    frame = pd.DataFrame({"id": predictions.ids, "label": predictions.labels, "score": predictions.scores})
    frame.to_csv(out / "scores.csv", index=False)
    metrics = image_metrics(predictions.labels, predictions.scores)
    if predictions.masks is not None and predictions.masks.any():
        metrics["pixel_auroc"] = pixel_auroc(predictions.masks, predictions.maps)
    metrics["timings"] = {
        "inference_s": seconds,
        "images_per_s": len(frame) / seconds if seconds else None,
        "peak_memory_mb": (torch.cuda.max_memory_allocated() if torch.cuda.is_available() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20,
    }
    return metrics


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
                raise UserInputError(f"{out} holds a run with another configuration; --resume needs the same task, method, seed, profile and options.")
    out.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, payload: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(partial, path)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
