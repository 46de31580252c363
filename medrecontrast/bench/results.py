"""A sweep's runs as one tidy pandas DataFrame: one row per (task, method, seed), every metric a column.

Every table and figure is a ``groupby``/``pivot`` of this frame or reads the run folders it points
to (``folder``), never a separate computation.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from medrecontrast.bench.store import read_sweep_marker
from medrecontrast.errors import UserInputError
from medrecontrast.metrics import METRICS, check_metric_keys
from medrecontrast.models import backbone_of, registered_methods
from medrecontrast.run.artefacts import check_evaluation
from medrecontrast.run.folder import RunFolder, run_folders

UNKNOWN = "unknown"  # a planned run that recorded no configuration: never started, or killed before it wrote one

TIMINGS = (
    "train_s",
    "train_images_per_s",
    "train_peak_memory_mb",
    "inference_s",
    "images_per_s",
    "inference_peak_memory_mb",
)


def collect_results(out: str | Path) -> pd.DataFrame:
    """Every run folder under a sweep folder ``out``, finished or not, as one row each."""
    out = Path(out)
    marker = read_sweep_marker(out)
    if marker is None:
        raise UserInputError(
            f"{out} is not a sweep folder (no sweep.json); run `medrecontrast bench --out {out}` first."
        )
    rows = [_row(folder) for folder in run_folders(out)]
    present = {Path(row["folder"]).resolve() for row in rows}
    # planned runs that left no configuration (killed before it, or a full disk) are counted, not lost
    rows += [
        {
            "task": p["task"],
            "method": p["method"],
            "base_method": p["method"],
            "seed": p["seed"],
            "status": UNKNOWN,
            "folder": str(out / p["folder"]),
        }
        for p in marker.get("planned", [])
        if (out / p["folder"]).resolve() not in present
    ]
    frame = pd.DataFrame(rows, columns=_columns())
    _refuse_mixed_data(frame)
    # methods and variants in the order the sweep lists them (an ablation reads top to bottom), then any others
    listed = marker.get("config", {}).get("methods") or registered_methods()
    order = {m: i for i, m in enumerate(dict.fromkeys([*listed, *registered_methods()]))}
    frame = frame.sort_values(
        ["task", "method", "seed"],
        key=lambda c: c.map(order).fillna(len(order)) if c.name == "method" else c,
        kind="stable",
    )
    return frame.reset_index(drop=True)


def _refuse_mixed_data(frame: pd.DataFrame) -> None:
    """One table never mixes runs of one task that read different files (their data records' fingerprint)."""
    known = frame[frame["status"].eq("finished") & frame["data_fingerprint"].notna()]
    for task, runs in known.groupby("task"):
        if runs["data_fingerprint"].nunique() > 1:
            groups = runs.groupby("data_fingerprint")["folder"].apply(
                lambda f: ", ".join(Path(x).relative_to(Path(x).parents[2]).as_posix() for x in f)
            )
            listing = "; ".join(f"data {digest[:10]}: {folders}" for digest, folders in groups.items())
            raise UserInputError(
                f"task {task}: its runs were trained or evaluated on different files ({listing}); a table would mix "
                "them. "
                "Re-evaluate the odd runs on the same data (`medrecontrast evaluate --run DIR --force`) or rerun them "
                "(`bench --force`)."
            )


def ordered_methods(names) -> list[str]:
    """The methods (and variants) present in ``names``, in their first-appearance order: a frame from
    :func:`collect_results` is already in the sweep's order."""
    return list(dict.fromkeys(names))


def sweep_of(results: pd.DataFrame) -> Path | None:
    """The sweep folder of a results frame (its run folders are ``<sweep>/<task>/<method>/seed-<n>``)."""
    return Path(results["folder"].iloc[0]).parents[2] if len(results) else None


def finished(results: pd.DataFrame) -> pd.DataFrame:
    return results[results["status"] == "finished"].reset_index(drop=True)


def _columns() -> list[str]:
    return [
        "task",
        "method",
        "base_method",
        "seed",
        "status",
        "profile",
        "holdout",
        "backbone",
        "pretrained",
        "image_size",
        "iters",
        "batch_size",
        *METRICS,
        *TIMINGS,
        "disk_mb",
        "device",
        "error",
        "data_fingerprint",
        "folder",
    ]


def _row(folder: RunFolder) -> dict:
    config = folder.config()
    status = folder.status()
    metrics = folder.metrics() if status["status"] == "finished" else {}
    check_metric_keys(metrics, str(folder.metrics_path))
    if metrics and folder.has_scores():  # the two files of one evaluation, or an error
        check_evaluation(folder, folder.scores(columns=lambda c: c == "evaluation"), metrics)
    record = folder.data_record()
    row = {
        "task": config.task,
        "method": config.name,
        "base_method": config.method,
        "seed": config.seed,
        "status": status["status"],
        "profile": config.profile,
        "holdout": config.holdout,
        "backbone": backbone_of(config.method, config.detector),
        "pretrained": bool(config.detector.get("pretrained", False)),  # a method that has no weights to load (AE)
        "image_size": config.input_size,
        "iters": config.detector.get("iters") or metrics.get("timings", {}).get("train_iterations"),
        "batch_size": config.detector.get("batch_size"),
        "device": folder.environment().get("device"),
        "error": status.get("error"),
        "data_fingerprint": record.get("sha256") if record else None,
        "folder": str(folder),
        # what the finished run keeps on disk (its model, scores, maps; its checkpoint with keep_checkpoints)
        "disk_mb": folder.disk_mb(),
    }
    for name in METRICS:  # a NaN would become a table cell of the other seeds, labelled with every seed
        value = metrics.get(name)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise UserInputError(
                f"{folder}: {folder.METRICS} holds {name} = {value!r}, not a finite number, so no table, interval or "
                f"figure can use this run. Re-evaluate it (`medrecontrast evaluate --run {folder} --force`) or "
                "rerun it (`bench --force`)."
            )
    row.update({name: metrics.get(name) for name in METRICS})
    row.update({name: metrics.get("timings", {}).get(name) for name in TIMINGS})
    return row
