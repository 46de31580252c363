"""The run folder's format: the only code that knows a run folder's file names and how each is read and written.

A run folder (one task, method and seed) holds everything needed to trust and reproduce a number::

    config.json          the resolved RunConfig (its "format": RUN_FORMAT), written when the run starts
    environment.json     package versions, device, git revision of the process that ran it
    status.json          running | interrupted | failed | evaluating | finished, with times and the error
    checkpoint.pt        training state for resume (deleted when the run finishes unless keep_checkpoints)
    model.pt             the fitted detector
    loss.csv             the training loss per iteration (written at each checkpoint and at the end)
    tensorboard/         TensorBoard event files (tensorboard = true)
    fit_stats.json       what a detector measured while fitting (e.g. PatchCore's coreset)
    scores.csv           one row per test image: id, label, score, evaluation id (+ group, patient, category)
    holdout_scores.csv   the held-out training normals' scores (the label-free threshold)
    metrics.json         every metric, the timings and the evaluation id shared with scores.csv
    examples.npz         a few test images with masks and maps, for the qualitative figures
    pixel_stats.npz      per-image pixel-metric statistics, for intervals of the pixel metrics
    data.json            fingerprint of the task's files the run last trained or evaluated on
    training_data.json   every file the run was trained on (never rewritten by a re-evaluation)
    evaluations.json     every re-evaluation: when, on which data, where the previous results went
    previous/<time>/     the results a re-evaluation replaced
    predictions/<time>/  what ``predict --run`` wrote (its default output folder)
    export/              exported files (``medrecontrast export``'s default) with export.json, one entry per file

Every writer goes through :func:`medrecontrast.paths.atomic_path` (a reader sees the old file or the new one).
An architecture test forbids these names anywhere else in the package.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from medrecontrast.errors import UserInputError
from medrecontrast.paths import atomic_path, read_json, write_csv, write_json

if TYPE_CHECKING:  # imported where used: the CLI's quick checks read a folder before torch is imported
    from medrecontrast.engine import TrainingFiles
    from medrecontrast.run import RunConfig

# the run folder's format version, written into config.json (RunConfig.to_json) and checked when a run is read;
# 4: identity and Runtime apart, provenance in "sources"; 3: every option in "detector" (read, see from_json)
RUN_FORMAT = 4
# the file a folder of exported models describes its files in (``medrecontrast export``)
EXPORT_RECORD = "export.json"


class RunFolder:
    """One run folder: its paths, its readers and its writers (the module docstring lists the files)."""

    CONFIG = "config.json"
    ENVIRONMENT = "environment.json"
    STATUS = "status.json"
    CHECKPOINT = "checkpoint.pt"
    MODEL = "model.pt"
    LOSS = "loss.csv"
    TENSORBOARD = "tensorboard"
    FIT_STATS = "fit_stats.json"
    SCORES = "scores.csv"
    HOLDOUT_SCORES = "holdout_scores.csv"
    METRICS = "metrics.json"
    EXAMPLES = "examples.npz"
    PIXEL_STATISTICS = "pixel_stats.npz"
    DATA_RECORD = "data.json"
    TRAINING_DATA = "training_data.json"
    EVALUATIONS = "evaluations.json"
    PREVIOUS = "previous"
    PREDICTIONS = "predictions"
    EXPORTS = "export"
    # what a re-evaluation replaces, kept under previous/<time>/ first
    RESULT_FILES = (SCORES, METRICS, HOLDOUT_SCORES, EXAMPLES, PIXEL_STATISTICS, DATA_RECORD)

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    # -- paths --------------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def model_path(self) -> Path:
        return self.path / self.MODEL

    @property
    def loss_path(self) -> Path:
        return self.path / self.LOSS

    def training_files(self) -> TrainingFiles:
        """Where a trainer writes while it trains: checkpoint, loss log, TensorBoard folder."""
        from medrecontrast.engine import TrainingFiles

        return TrainingFiles(self.checkpoint_path, self.loss_path, self.path / self.TENSORBOARD)

    @property
    def predictions_folder(self) -> Path:
        return self.path / self.PREDICTIONS

    @property
    def export_folder(self) -> Path:
        return self.path / self.EXPORTS

    @property
    def scores_path(self) -> Path:
        return self.path / self.SCORES

    @property
    def metrics_path(self) -> Path:
        return self.path / self.METRICS

    @property
    def examples_path(self) -> Path:
        return self.path / self.EXAMPLES

    # -- what the folder is -------------------------------------------------------------------------------------
    def has_config(self) -> bool:
        """A run started here (its config.json was written)."""
        return (self.path / self.CONFIG).is_file()

    def has_model(self) -> bool:
        return self.model_path.is_file()

    def has_results(self) -> bool:
        return self.metrics_path.is_file()

    def has_loss(self) -> bool:
        return self.loss_path.is_file()

    def require_trained(self) -> None:
        """A user error unless the folder holds a trained run (its config.json and model.pt)."""
        if not self.has_config() or not self.has_model():
            raise UserInputError(f"{self.path} is not a finished run folder (expected {self.CONFIG} and {self.MODEL}).")

    def is_run_folder(self) -> bool:
        """The folder was claimed by a run (its status.json exists)."""
        return (self.path / self.STATUS).is_file()

    # -- readers ------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """``{"status": "absent" | "running" | "failed" | "evaluating" | "interrupted" | "finished", ...}``
        (``evaluating``: a re-evaluation replacing its results, or one killed doing so; ``interrupted``: stopped
        by Ctrl-C or SIGTERM, its last checkpoint kept)."""
        path = self.path / self.STATUS
        if not path.is_file():
            return {"status": "absent"}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {"status": "running"}  # cut off mid-write by a crash: treat as interrupted

    def config(self) -> RunConfig:
        """``config.json`` as a :class:`RunConfig` (its format: ``RUN_FORMAT``; format 3 is read too, others
        refused by :meth:`RunConfig.from_json`)."""
        from medrecontrast.run import RunConfig  # lazily bound by the package (run.config imports this module)

        return RunConfig.from_json(read_json(self.path / self.CONFIG), where=str(self.path))

    def metrics(self) -> dict:
        """``metrics.json`` ({} before the run has results)."""
        return read_json(self.metrics_path) if self.has_results() else {}

    def environment(self) -> dict:
        path = self.path / self.ENVIRONMENT
        return read_json(path) if path.is_file() else {}

    def scores(self, columns=None) -> pd.DataFrame:
        """``scores.csv`` (``columns``: pandas' ``usecols``)."""
        return pd.read_csv(self.scores_path, usecols=columns)

    def has_scores(self) -> bool:
        return self.scores_path.is_file()

    def holdout_scores(self) -> pd.DataFrame | None:
        path = self.path / self.HOLDOUT_SCORES
        return pd.read_csv(path) if path.is_file() else None

    def pixel_statistics(self) -> dict | None:
        """``pixel_stats.npz`` as a dict of arrays (None for a task without masks)."""
        path = self.path / self.PIXEL_STATISTICS
        if not path.is_file():
            return None
        with np.load(path) as stored:
            return dict(stored)

    def examples(self) -> dict:
        """``examples.npz`` as a dict of arrays."""
        with np.load(self.examples_path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}

    def loss(self) -> pd.Series:
        """The training loss per iteration (``loss.csv``)."""
        return pd.read_csv(self.loss_path).set_index("iteration")["loss"]

    def data_record(self) -> dict | None:
        path = self.path / self.DATA_RECORD
        return read_json(path) if path.is_file() else None

    def training_data(self) -> dict | None:
        path = self.path / self.TRAINING_DATA
        return read_json(path) if path.is_file() else None

    def evaluations(self) -> list:
        path = self.path / self.EVALUATIONS
        return read_json(path) if path.is_file() else []

    def disk_mb(self) -> float:
        """What the folder keeps on disk, in MiB."""
        return round(sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file()) / 2**20, 1)

    # -- writers ------------------------------------------------------------------------------------------------
    def write_config(self, config: RunConfig) -> None:
        write_json(self.path / self.CONFIG, config.to_json())

    def write_environment(self, environment: dict) -> None:
        write_json(self.path / self.ENVIRONMENT, environment)

    def write_status(self, status: dict) -> None:
        write_json(self.path / self.STATUS, status)

    def write_status_in_place(self, status: dict) -> None:
        """A plain (not atomic) write of a small status, for a full disk where the atomic one has no room."""
        (self.path / self.STATUS).write_text(json.dumps(status))

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.metrics_path, metrics)

    def write_scores(self, frame: pd.DataFrame) -> None:
        write_csv(self.scores_path, frame)

    def write_holdout_scores(self, frame: pd.DataFrame) -> None:
        write_csv(self.path / self.HOLDOUT_SCORES, frame)

    def write_pixel_statistics(self, **arrays) -> None:
        _write_npz(self.path / self.PIXEL_STATISTICS, arrays)

    def write_examples(self, **arrays) -> None:
        _write_npz(self.examples_path, arrays)

    def write_loss(self, losses) -> None:
        from medrecontrast.engine import write_loss_log  # the trainer's format, as it writes it while training

        write_loss_log(self.loss_path, losses)

    def write_fit_stats(self, stats: dict) -> None:
        write_json(self.path / self.FIT_STATS, stats)

    def write_data_record(self, record: dict) -> None:
        write_json(self.path / self.DATA_RECORD, record)

    def write_training_data(self, record: dict) -> None:
        write_json(self.path / self.TRAINING_DATA, record)

    def write_evaluations(self, history: list) -> None:
        write_json(self.path / self.EVALUATIONS, history)

    def remove_checkpoint(self) -> None:
        self.checkpoint_path.unlink(missing_ok=True)

    def keep_previous_results(self) -> Path:
        """Copy the run's results into ``previous/<UTC time>/`` before a re-evaluation replaces them."""
        folder = self.path / self.PREVIOUS / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        folder.mkdir(parents=True)
        for name in self.RESULT_FILES:
            if (self.path / name).is_file():
                shutil.copy2(self.path / name, folder / name)
        return folder


def _write_npz(path: Path, arrays: dict) -> None:
    with atomic_path(path) as partial, open(partial, "wb") as handle:  # a file object: numpy adds no ".npz"
        np.savez_compressed(handle, **arrays)


def run_folders(sweep: str | os.PathLike) -> list[RunFolder]:
    """Every run folder of a sweep folder that recorded its configuration, in path order."""
    return [RunFolder(path.parent) for path in sorted(Path(sweep).glob(f"*/*/seed-*/{RunFolder.CONFIG}"))]


def read_run_config(folder: str | os.PathLike) -> RunConfig:
    """A run folder's ``config.json`` as a :class:`RunConfig` (:meth:`RunFolder.config`)."""
    return RunFolder(folder).config()
