"""A sweep's uncertainty and significance, computed from its runs' stored per-image scores.

Reads each finished run's ``scores.csv``, ``holdout_scores.csv`` and ``pixel_stats.npz`` (where the
run wrote them), never a model, so ``medrecontrast tables`` recomputes it on an old sweep. Per task,
one stratified bootstrap (:func:`medrecontrast.stats.bootstrap_counts`) is shared by every method
and seed, so that seed means and method differences are computed on the same resampled test sets.

:func:`sweep_statistics` returns one :class:`SweepStatistics` of DataFrames; ``tables.py`` and
``figures.py`` only format and draw them.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medrecontrast import stats
from medrecontrast.bench.results import finished
from medrecontrast.metrics import METRICS, OPERATING_POINTS, THRESHOLD_QUANTILE
from medrecontrast.models import DETECTORS, registered_methods
from medrecontrast.run import PIXEL_STATISTICS

ALPHA = 0.05


def reference_methods() -> list[str]:
    """The methods that declare themselves the suite's reference (``Detector.reference``): each is also
    compared against every other method, not only against the best."""
    return [m for m in registered_methods() if DETECTORS[m].reference]


MEAN = "mean"  # the ``seed`` of a seed-mean row


@dataclass
class SweepStatistics:
    """Every statistic of a sweep, as tidy frames (metric values are fractions, not percent)."""

    intervals: (
        pd.DataFrame
    )  # task, method, seed (int or "mean"), metric, value, low, high, interval ("bootstrap" | "DeLong")
    comparisons: pd.DataFrame  # task, metric, method, against, difference, p, p_holm, test, significant
    operating_points: pd.DataFrame  # task, method, seed, every OPERATING_POINTS key
    subtypes: pd.DataFrame  # task, subtype, method, abnormal, normal, auroc, auroc_std, low, high
    counts: pd.DataFrame  # task, normal, abnormal, holdout, prevalence
    resamples: int = stats.N_BOOTSTRAP
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def interval(
        self, task: str, method: str, metric: str, seed="mean", kind: str = "bootstrap"
    ) -> tuple[float, float] | None:
        rows = self.intervals
        rows = rows[
            (rows["task"] == task)
            & (rows["method"] == method)
            & (rows["metric"] == metric)
            & (rows["seed"] == seed)
            & (rows["interval"] == kind)
        ]
        return None if rows.empty else (float(rows["low"].iloc[0]), float(rows["high"].iloc[0]))


@dataclass
class _Run:
    method: str
    seed: int
    labels: np.ndarray
    scores: np.ndarray
    groups: np.ndarray | None
    categories: np.ndarray | None
    holdout: np.ndarray | None
    quantile: float
    pixels: dict | None
    stored: dict  # the run's stored metrics (exact point values)


def sweep_statistics(
    results: pd.DataFrame, resamples: int = stats.N_BOOTSTRAP, seed: int = 0, level: float = stats.LEVEL
) -> SweepStatistics:
    """Intervals, paired comparisons, operating points, per-subtype AUROC and test-set sizes of every task."""
    began = time.perf_counter()
    done = finished(results)
    intervals, comparisons, points, subtypes, counts, notes = [], [], [], [], [], []
    for task in done["task"].unique():
        runs = [_load(row) for row in done[done["task"] == task].itertuples()]
        reference = runs[0]
        same = [
            r for r in runs if len(r.labels) == len(reference.labels) and np.array_equal(r.labels, reference.labels)
        ]
        if len(same) < len(runs):
            notes.append(
                f"{task}: {len(runs) - len(same)} run(s) scored a different test set and were left out of its "
                "statistics"
            )
        runs = same
        task_seed = seed + zlib.crc32(task.encode())
        strata = (
            reference.labels
            if reference.groups is None
            else np.char.add(reference.groups.astype(str), reference.labels.astype(str))
        )
        weights = stats.bootstrap_counts(strata, resamples, task_seed)
        holdout_weights = None
        if reference.holdout is not None:
            holdout_weights = stats.bootstrap_counts(np.zeros(len(reference.holdout), int), resamples, task_seed + 1)
        counts.append(
            {
                "task": task,
                "normal": int((reference.labels == 0).sum()),
                "abnormal": int((reference.labels == 1).sum()),
                "holdout": 0 if reference.holdout is None else len(reference.holdout),
                "prevalence": float(reference.labels.mean()),
            }
        )
        samples: dict[str, dict[str, list[np.ndarray]]] = {}  # method -> metric -> per-seed samples (B,)
        values: dict[str, dict[str, list[float]]] = {}  # method -> metric -> per-seed point values
        for run in runs:
            point = _run_metrics(
                run,
                np.ones((1, len(run.labels)), np.int32),
                None if run.holdout is None else np.ones((1, len(run.holdout)), np.int32),
            )
            sampled = _run_metrics(run, weights, holdout_weights)
            for metric, resampled in sampled.items():
                # the table's point value is the stored, exact metric where the run has it
                value = run.stored.get(metric, float(point[metric][0]))
                low, high = stats.percentile_interval(resampled, level)
                intervals.append(
                    dict(
                        task=task,
                        method=run.method,
                        seed=run.seed,
                        metric=metric,
                        value=value,
                        low=low,
                        high=high,
                        interval="bootstrap",
                    )
                )
                samples.setdefault(run.method, {}).setdefault(metric, []).append(resampled)
                values.setdefault(run.method, {}).setdefault(metric, []).append(value)
            auroc, low, high = stats.delong_interval(run.labels, run.scores, level)
            intervals.append(
                dict(
                    task=task,
                    method=run.method,
                    seed=run.seed,
                    metric="image_auroc",
                    value=auroc,
                    low=low,
                    high=high,
                    interval="DeLong",
                )
            )
            points.append(
                {
                    "task": task,
                    "method": run.method,
                    "seed": run.seed,
                    **{k: float(point[k][0]) for k in OPERATING_POINTS if k in point},
                }
            )
        by_method = {m: [r for r in runs if r.method == m] for m in dict.fromkeys(r.method for r in runs)}
        for method, method_runs in by_method.items():
            for metric, per_seed in samples[method].items():
                low, high = stats.percentile_interval(np.mean(per_seed, axis=0), level)
                value = float(np.mean(values[method][metric]))
                intervals.append(
                    dict(
                        task=task,
                        method=method,
                        seed=MEAN,
                        metric=metric,
                        value=value,
                        low=low,
                        high=high,
                        interval="bootstrap",
                    )
                )
            auroc, low, high = stats.delong_interval(reference.labels, [r.scores for r in method_runs], level)
            intervals.append(
                dict(
                    task=task,
                    method=method,
                    seed=MEAN,
                    metric="image_auroc",
                    value=auroc,
                    low=low,
                    high=high,
                    interval="DeLong",
                )
            )
        comparisons += _compare(task, by_method, samples, values, reference.labels)
        subtypes += _subtypes(task, by_method, level)
    comparisons_frame = pd.DataFrame(
        comparisons, columns=["task", "metric", "method", "against", "difference", "p", "test", "p_holm", "significant"]
    )
    if len(comparisons_frame):
        for (metric, test), rows in comparisons_frame.groupby(
            ["metric", "test"]
        ):  # one family per metric column and test
            comparisons_frame.loc[rows.index, "p_holm"] = stats.holm(rows["p"].to_numpy())
        comparisons_frame["significant"] = comparisons_frame["p_holm"] < ALPHA
    return SweepStatistics(
        intervals=pd.DataFrame(
            intervals, columns=["task", "method", "seed", "metric", "value", "low", "high", "interval"]
        ),
        comparisons=comparisons_frame,
        operating_points=pd.DataFrame(points, columns=["task", "method", "seed", *OPERATING_POINTS]),
        subtypes=pd.DataFrame(
            subtypes, columns=["task", "subtype", "method", "abnormal", "normal", "auroc", "auroc_std", "low", "high"]
        ),
        counts=pd.DataFrame(counts, columns=["task", "normal", "abnormal", "holdout", "prevalence"]),
        resamples=resamples,
        seconds=time.perf_counter() - began,
        notes=notes,
    )


def _load(row) -> _Run:
    folder = Path(row.folder)
    scores = pd.read_csv(folder / "scores.csv").sort_values("id", kind="stable")
    holdout_file = folder / "holdout_scores.csv"
    pixels = None
    if (folder / PIXEL_STATISTICS).is_file():
        with np.load(folder / PIXEL_STATISTICS) as stored:
            pixels = dict(stored)
        order = np.argsort(pixels.pop("ids"), kind="stable")  # the same id order as the scores
        pixels = {k: (v[order] if k != "thresholds" else v) for k, v in pixels.items()}
    config = json.loads((folder / "config.json").read_text())
    metrics_file = folder / "metrics.json"
    stored = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return _Run(
        method=row.method,
        seed=int(row.seed),
        labels=scores["label"].to_numpy().astype(int),
        scores=scores["score"].to_numpy(dtype=np.float64),
        groups=scores["group"].to_numpy() if "group" in scores else None,
        categories=scores["category"].astype(str).to_numpy() if "category" in scores else None,
        holdout=pd.read_csv(holdout_file)["score"].to_numpy(dtype=np.float64) if holdout_file.is_file() else None,
        quantile=float(config.get("threshold_quantile", THRESHOLD_QUANTILE)),
        pixels=pixels,
        stored={k: float(v) for k, v in stored.items() if k in METRICS and isinstance(v, (int, float))},
    )


def _run_metrics(run: _Run, weights: np.ndarray, holdout_weights: np.ndarray | None) -> dict[str, np.ndarray]:
    """Every resampled metric of one run (one value per row of ``weights``); a unified task's metrics
    are the mean over its member tasks, as its stored metrics are."""
    groups = [None] if run.groups is None else list(dict.fromkeys(run.groups.tolist()))
    parts = []
    for group in groups:
        rows = np.ones(len(run.labels), bool) if group is None else run.groups == group
        parts.append(_metrics_of(run, rows, weights, holdout_weights))
    return {k: np.mean([p[k] for p in parts], axis=0) for k in parts[0] if all(k in p for p in parts)}


def _metrics_of(
    run: _Run, rows: np.ndarray, weights: np.ndarray, holdout_weights: np.ndarray | None
) -> dict[str, np.ndarray]:
    labels, scores, w = run.labels[rows], run.scores[rows], weights[:, rows]
    out = stats.curve_metrics(labels, scores, w)
    if run.holdout is not None:
        threshold = stats.weighted_quantile_rows(run.holdout, holdout_weights, run.quantile)
        fixed = stats.fixed_threshold_metrics(labels, scores, threshold, w)
        out["f1_holdout"], out["acc_holdout"] = fixed["f1"], fixed["acc"]
        out["threshold_gap"] = out["f1_oracle"] - out["f1_holdout"]
        for specificity in stats.SPECIFICITIES:
            at = stats.weighted_quantile_rows(run.holdout, holdout_weights, specificity)
            out[f"sens_at_spec{round(specificity * 100)}_holdout"] = stats.fixed_threshold_metrics(
                labels, scores, at, w
            )["sensitivity"]
    if run.pixels is not None:
        pixels = {k: (v[rows] if k != "thresholds" else v) for k, v in run.pixels.items()}
        if pixels["abnormal_pixels"].sum() > 0:
            out.update(stats.pixel_curve_metrics(pixels, w))
            per_image = pixels["aupro_per_image"]
            has = np.isfinite(per_image)
            if has.any():
                counted = w[:, has]
                out["aupro_per_image"] = (counted @ per_image[has]) / np.maximum(counted.sum(1), 1)
    return out


def _compare(task: str, by_method: dict, samples: dict, values: dict, labels: np.ndarray) -> list[dict]:
    """Each method against the best one of each metric (and ReContrast against each baseline):
    DeLong for image AUROC, the paired bootstrap for every metric; p-values before Holm."""
    rows = []
    methods = list(by_method)
    if len(methods) < 2:
        return rows
    for metric in METRICS:
        present = [m for m in methods if metric in samples[m]]
        if len(present) < 2:
            continue
        means = {m: float(np.mean(values[m][metric])) for m in present}
        best = max(present, key=lambda m: means[m])
        pairs = [(m, best) for m in present if m != best]
        for reference in (m for m in reference_methods() if m in present):
            pairs += [
                (reference, m)
                for m in present
                if m != reference and (reference, m) not in pairs and (m, reference) not in pairs
            ]
        for method, against in pairs:
            difference = np.mean(samples[method][metric], axis=0) - np.mean(samples[against][metric], axis=0)
            base = dict(
                task=task, metric=metric, method=method, against=against, difference=means[method] - means[against]
            )
            rows.append({**base, "p": stats.paired_p_value(difference), "test": "paired bootstrap"})
            if metric == "image_auroc":
                first, second = [r.scores for r in by_method[method]], [r.scores for r in by_method[against]]
                rows.append({**base, "p": stats.delong_test(labels, first, second), "test": "DeLong"})
    return rows


def _subtypes(task: str, by_method: dict, level: float) -> list[dict]:
    """Image AUROC of each abnormal subtype against every test normal, with DeLong's interval of the seed mean."""
    rows = []
    for method, runs in by_method.items():
        first = runs[0]
        if first.categories is None:
            continue
        abnormal = first.categories[first.labels == 1]
        kinds = list(dict.fromkeys(abnormal.tolist()))
        if len(kinds) < 2:
            continue  # one subtype is the whole abnormal class: nothing to break down
        for kind in kinds:
            rows_of = (first.labels == 0) | ((first.labels == 1) & (first.categories == kind))
            labels = first.labels[rows_of]
            per_seed = [stats.delong_components(labels, r.scores[rows_of])[0] for r in runs]
            auroc, low, high = stats.delong_interval(labels, [r.scores[rows_of] for r in runs], level)
            rows.append(
                dict(
                    task=task,
                    subtype=kind,
                    method=method,
                    abnormal=int(labels.sum()),
                    normal=int((labels == 0).sum()),
                    auroc=auroc,
                    auroc_std=float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan"),
                    low=low,
                    high=high,
                )
            )
    return rows
