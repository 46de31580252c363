"""A sweep's uncertainty and significance, computed from its runs' stored per-image scores.

Reads each finished run's ``scores.csv``, ``holdout_scores.csv`` and ``pixel_stats.npz`` (where the
run wrote them), never a model, so ``medrecontrast tables`` recomputes it on an old sweep. Per task,
one stratified bootstrap (:func:`medrecontrast.stats.bootstrap_counts`) is shared by every method
and seed, so that seed means and method differences are computed on the same resampled test sets.

:func:`sweep_statistics` returns one :class:`SweepStatistics` of DataFrames; ``tables.py`` and
``figures.py`` only format and draw them.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from medrecontrast import stats
from medrecontrast.bench.results import finished
from medrecontrast.bench.store import read_sweep_marker
from medrecontrast.data.items import describe_changes
from medrecontrast.errors import UserInputError
from medrecontrast.metrics import METRICS, OPERATING_POINTS
from medrecontrast.models import DETECTORS, registered_methods
from medrecontrast.run.folder import RunFolder
from medrecontrast.sweepfile import check_patient_score

ALPHA = 0.05


def reference_methods() -> list[str]:
    """The methods that declare themselves the suite's reference (``Detector.card.reference``): each is also
    compared against every other method, not only against the best."""
    return [m for m in registered_methods() if DETECTORS[m].card.reference]


MEAN = "mean"  # the ``seed`` of a seed-mean row
PATIENT_SCORES = ("max", "mean", "top<k>")  # how a patient's image scores become the patient's score
DEFAULT_PATIENT_SCORE = "max"
INTERVAL_COLUMNS = ["task", "method", "seed", "metric", "unit", "value", "low", "high", "interval", "resampled"]
COMPARISON_COLUMNS = [
    "task",
    "metric",
    "unit",
    "method",
    "against",
    "difference",
    "p",
    "test",
    "resampled",
    "p_holm",
    "significant",
]


@dataclass
class SweepStatistics:
    """Every statistic of a sweep, as tidy frames (metric values are fractions, not percent).

    ``unit`` says what a metric is computed over (``image``; ``patient``: one score per patient, the
    ``patient_score`` of its images), ``resampled`` what its interval or test treats as independent
    (``patients`` where the task names them: a patient bootstrap, Obuchowski's clustered DeLong; else
    ``images``). The ``patient_*`` frames hold the patient-level results of tasks with patients."""

    intervals: pd.DataFrame  # INTERVAL_COLUMNS; interval "bootstrap" | "DeLong"
    comparisons: pd.DataFrame  # COMPARISON_COLUMNS
    operating_points: pd.DataFrame  # task, method, seed, every OPERATING_POINTS key
    subtypes: pd.DataFrame  # task, subtype, method, abnormal, normal, auroc, auroc_std, low, high, resampled
    # task, normal, abnormal, holdout, prevalence, and the patients behind each (None where the task names none)
    counts: pd.DataFrame
    patient_intervals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INTERVAL_COLUMNS))
    patient_comparisons: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COMPARISON_COLUMNS))
    patient_points: pd.DataFrame = field(default_factory=pd.DataFrame)
    patient_score: str = DEFAULT_PATIENT_SCORE
    resamples: int = stats.N_BOOTSTRAP
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def interval(
        self, task: str, method: str, metric: str, seed="mean", kind: str = "bootstrap", unit: str = "image"
    ) -> tuple[float, float] | None:
        rows = self.intervals if unit == "image" else self.patient_intervals
        rows = rows[
            (rows["task"] == task)
            & (rows["method"] == method)
            & (rows["metric"] == metric)
            & (rows["seed"] == seed)
            & (rows["interval"] == kind)
        ]
        return None if rows.empty else (float(rows["low"].iloc[0]), float(rows["high"].iloc[0]))

    def patient_values(self) -> pd.DataFrame:
        """Each run's patient-level point values, indexed ``(task, method, seed)``, one column per metric (empty
        where no task names its patients): what ``patients.md`` and ``results.csv``'s patient rows show."""
        rows = self.patient_intervals
        rows = rows[(rows["seed"] != MEAN) & (rows["interval"] == "bootstrap")]
        if rows.empty:
            return pd.DataFrame()
        return rows.pivot_table(index=["task", "method", "seed"], columns="metric", values="value", sort=False)

    def all_intervals(self) -> pd.DataFrame:
        """``intervals.csv``: the image-level rows, then the patient-level ones (``unit`` tells them apart)."""
        return _both(self.intervals, self.patient_intervals)

    def all_comparisons(self) -> pd.DataFrame:
        """``comparisons.csv``: the image-level tests, then the patient-level ones."""
        return _both(self.comparisons, self.patient_comparisons)

    def has_patients(self, task: str) -> bool:
        rows = self.counts[self.counts["task"] == task]
        return bool(len(rows)) and pd.notna(rows["normal_patients"].iloc[0])

    def sizes(self, task: str) -> str:
        """``234 normal + 390 abnormal test images from 225 + 202 patients`` (or without patients)."""
        rows = self.counts[self.counts["task"] == task]
        if rows.empty:
            return "–"
        r = rows.iloc[0]
        text = f"{int(r['normal'])} normal + {int(r['abnormal'])} abnormal test images"
        if pd.notna(r["normal_patients"]):
            text += f" from {int(r['normal_patients'])} + {int(r['abnormal_patients'])} patients"
        return text


def _both(image: pd.DataFrame, patient: pd.DataFrame) -> pd.DataFrame:
    """One frame of the two units' rows (the image frame, columns and all, where there are no patient rows)."""
    return pd.concat([image, patient], ignore_index=True) if len(patient) else image


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
    patients: np.ndarray | None = None  # each test image's patient (None: the task names none)
    holdout_patients: np.ndarray | None = None
    leaks: list[str] = field(default_factory=list)  # what data.json says the splits share
    changed: dict | None = None  # files added, removed or changed between training and the last evaluation


@dataclass
class _Sampling:
    """One task's shared resamples: image weights (and patient weights where the task has patients)."""

    weights: np.ndarray  # (B, images)
    holdout: np.ndarray | None  # (B, held-out images)
    clusters: np.ndarray | None = None  # each test image's patient
    patient_weights: np.ndarray | None = None  # (B, patients), patients in first-appearance order
    patient_holdout: np.ndarray | None = None  # (B, held-out patients)


def sweep_statistics(
    results: pd.DataFrame,
    resamples: int = stats.N_BOOTSTRAP,
    seed: int = 0,
    level: float = stats.LEVEL,
    patient_score: str | None = None,
    by_patient: bool = True,
) -> SweepStatistics:
    """Intervals, paired comparisons, operating points, per-subtype AUROC and test-set sizes of every task, at the
    image level and, for tasks whose images name their patients, at the patient level (``patient_score``: how a
    patient's image scores combine; None: what the sweep recorded, else max). ``by_patient=False`` ignores the
    patients and resamples images, as if each image were a patient (only to measure what the patients change:
    ``benchmarks/patient_intervals.py``)."""
    began = time.perf_counter()
    done = finished(results)
    patient_score = check_patient_score(patient_score or recorded_patient_score(results))
    image, patient = _Frames(), _Frames()
    subtypes, counts, notes = [], [], []
    for task in done["task"].unique():
        runs, task_notes = _task_runs(task, done, by_patient)
        notes += [line for line in task_notes if line not in notes]
        sampling = _sampling(task, runs[0], resamples, seed)
        counts.append(_counts(task, runs[0]))
        _image_statistics(task, runs, sampling, level, image)
        subtypes += _subtypes(task, _by_method(runs), level, sampling.clusters)
        if sampling.clusters is not None:  # the same statistics of the patients' scores, resampling patients
            patient_runs = [_patient_run(run, patient_score) for run in runs]
            patient_sampling = _Sampling(sampling.patient_weights, sampling.patient_holdout)
            _image_statistics(task, patient_runs, patient_sampling, level, patient, unit="patient")
    return SweepStatistics(
        intervals=image.interval_frame(),
        comparisons=image.comparison_frame(),
        operating_points=image.point_frame(),
        subtypes=pd.DataFrame(subtypes, columns=SUBTYPE_COLUMNS),
        counts=pd.DataFrame(counts, columns=COUNT_COLUMNS),
        patient_intervals=patient.interval_frame(),
        patient_comparisons=patient.comparison_frame(),
        patient_points=patient.point_frame(),
        patient_score=patient_score,
        resamples=resamples,
        seconds=time.perf_counter() - began,
        notes=notes,
    )


SUBTYPE_COLUMNS = [
    "task",
    "subtype",
    "method",
    "abnormal",
    "normal",
    "auroc",
    "auroc_std",
    "low",
    "high",
    "resampled",
    "abnormal_patients",
    "normal_patients",
]
COUNT_COLUMNS = [
    "task",
    "normal",
    "abnormal",
    "holdout",
    "prevalence",
    "normal_patients",
    "abnormal_patients",
    "holdout_patients",
]


def _task_runs(task: str, done: pd.DataFrame, by_patient: bool) -> tuple[list[_Run], list[str]]:
    """The finished runs of ``task`` that scored the same test set (loaded once), and what the report must say of
    them: runs left out, the task's leaks (one task's runs read the same files) and runs evaluated on changed files.
    ``by_patient=False`` forgets the patients."""
    runs = [_load(row) for row in done[done["task"] == task].itertuples()]
    runs, left_out = _same_test_set(runs)
    notes = []
    if left_out:
        notes.append(f"{task}: {left_out} run(s) scored a different test set and were left out of its statistics")
    if not by_patient:
        runs = [replace(r, patients=None, holdout_patients=None) for r in runs]
    notes += list(runs[0].leaks)
    notes += [
        f"{task} · {run.method} · seed {run.seed}: evaluated on files that changed since it was trained "
        f"({describe_changes(run.changed)})"
        for run in runs
        if run.changed
    ]
    return runs, notes


def recorded_patient_score(results: pd.DataFrame) -> str:
    """The ``patient_score`` the sweep of ``results`` recorded in its ``sweep.json`` (max where none is)."""
    if results.empty:
        return DEFAULT_PATIENT_SCORE
    marker = read_sweep_marker(Path(results["folder"].iloc[0]).parents[2])
    return ((marker or {}).get("config") or {}).get("patient_score") or DEFAULT_PATIENT_SCORE


@dataclass
class _Frames:
    """The rows one unit's statistics collect, as frames at the end."""

    intervals: list = field(default_factory=list)
    comparisons: list = field(default_factory=list)
    points: list = field(default_factory=list)

    def interval_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.intervals, columns=INTERVAL_COLUMNS)

    def point_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.points, columns=["task", "method", "seed", *OPERATING_POINTS])

    def comparison_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.comparisons, columns=COMPARISON_COLUMNS)
        if len(frame):
            for _, rows in frame.groupby(["metric", "test"]):  # one family per metric column and test
                frame.loc[rows.index, "p_holm"] = stats.holm(rows["p"].to_numpy())
            frame["significant"] = frame["p_holm"].astype(float) < ALPHA
        return frame


def _same_test_set(runs: list[_Run]) -> tuple[list[_Run], int]:
    reference = runs[0]
    same = [r for r in runs if len(r.labels) == len(reference.labels) and np.array_equal(r.labels, reference.labels)]
    return same, len(runs) - len(same)


def _by_method(runs: list[_Run]) -> dict[str, list[_Run]]:
    return {m: [r for r in runs if r.method == m] for m in dict.fromkeys(r.method for r in runs)}


def _sampling(task: str, reference: _Run, resamples: int, seed: int) -> _Sampling:
    """The task's resamples, shared by every method and seed: stratified by label (and a unified task's member);
    patients, not images, where the test images name them (:func:`medrecontrast.stats.cluster_bootstrap`)."""
    task_seed = seed + zlib.crc32(task.encode())
    strata = (
        reference.labels
        if reference.groups is None
        else np.char.add(reference.groups.astype(str), reference.labels.astype(str))
    )
    held = None if reference.holdout is None else np.zeros(len(reference.holdout), int)
    if reference.patients is None:
        return _Sampling(
            stats.bootstrap_counts(strata, resamples, task_seed),
            None if held is None else stats.bootstrap_counts(held, resamples, task_seed + 1),
        )
    weights, patient_weights, _ = stats.cluster_bootstrap(strata, reference.patients, resamples, task_seed)
    holdout = patient_holdout = None
    if held is not None:
        held_patients = (
            reference.holdout_patients
            if reference.holdout_patients is not None
            else np.array([f"held:{i}" for i in range(len(held))])
        )
        holdout, patient_holdout, _ = stats.cluster_bootstrap(held, held_patients, resamples, task_seed + 1)
    return _Sampling(weights, holdout, reference.patients, patient_weights, patient_holdout)


def _counts(task: str, reference: _Run) -> dict:
    labels, patients = reference.labels, reference.patients
    row = {
        "task": task,
        "normal": int((labels == 0).sum()),
        "abnormal": int((labels == 1).sum()),
        "holdout": 0 if reference.holdout is None else len(reference.holdout),
        "prevalence": float(labels.mean()),
        "normal_patients": None,
        "abnormal_patients": None,
        "holdout_patients": None,
    }
    if patients is not None:
        abnormal = set(patients[labels == 1])
        if reference.holdout is None:
            held = 0
        elif reference.holdout_patients is not None:
            held = len(set(reference.holdout_patients))
        else:  # held-out normals without patient names (runs of earlier versions): one each
            held = len(reference.holdout)
        # a patient is abnormal when any of its images is; the others are normal patients
        row.update(
            normal_patients=len(set(patients) - abnormal), abnormal_patients=len(abnormal), holdout_patients=held
        )
    return row


def _patient_run(run: _Run, how: str) -> _Run:
    """The run at the patient level: one score per patient (``how`` of its image scores), a patient abnormal when
    any of its images is, the held-out normals' patients reduced the same way."""
    names, scores = stats.reduce_by_cluster(run.scores, run.patients, how)
    _, labels = stats.reduce_by_cluster(run.labels, run.patients, "max")
    groups = None
    if run.groups is not None:
        first = {}
        for patient, group in zip(run.patients, run.groups):
            first.setdefault(patient, group)
        groups = np.array([first[n] for n in names])
    holdout = None
    if run.holdout is not None:
        held = run.holdout_patients if run.holdout_patients is not None else np.arange(len(run.holdout)).astype(str)
        holdout = stats.reduce_by_cluster(run.holdout, held, how)[1]
    return _Run(
        method=run.method,
        seed=run.seed,
        labels=labels.astype(int),
        scores=scores,
        groups=groups,
        categories=None,
        holdout=holdout,
        quantile=run.quantile,
        pixels=None,
        stored={},
    )


def _image_statistics(
    task: str, runs: list[_Run], sampling: _Sampling, level: float, out: _Frames, unit: str = "image"
) -> None:
    """Per-seed and seed-mean intervals, operating points and paired comparisons of one task's runs at one unit
    (``runs`` already reduced to patients for ``unit="patient"``)."""
    clusters = sampling.clusters
    resampled = "patients" if clusters is not None or unit == "patient" else "images"
    row = dict(task=task, unit=unit, resampled=resampled)
    samples: dict[str, dict[str, list[np.ndarray]]] = {}  # method -> metric -> per-seed samples (B,)
    values: dict[str, dict[str, list[float]]] = {}  # method -> metric -> per-seed point values
    for run in runs:
        point = _run_metrics(
            run,
            np.ones((1, len(run.labels)), np.int32),
            None if run.holdout is None else np.ones((1, len(run.holdout)), np.int32),
        )
        sampled = _run_metrics(run, sampling.weights, sampling.holdout)
        for metric, resampled_values in sampled.items():
            # the table's point value is the stored, exact metric where the run has it
            value = run.stored.get(metric, float(point[metric][0]))
            low, high = stats.percentile_interval(resampled_values, level)
            out.intervals.append(
                dict(
                    row,
                    method=run.method,
                    seed=run.seed,
                    metric=metric,
                    value=value,
                    low=low,
                    high=high,
                    interval="bootstrap",
                )
            )
            samples.setdefault(run.method, {}).setdefault(metric, []).append(resampled_values)
            values.setdefault(run.method, {}).setdefault(metric, []).append(value)
        auroc, low, high = stats.delong_interval(run.labels, run.scores, level, clusters)
        out.intervals.append(
            dict(
                row,
                method=run.method,
                seed=run.seed,
                metric="image_auroc",
                value=auroc,
                low=low,
                high=high,
                interval="DeLong",
            )
        )
        out.points.append(
            {
                "task": task,
                "method": run.method,
                "seed": run.seed,
                **{k: float(point[k][0]) for k in OPERATING_POINTS if k in point},
            }
        )
    by_method = _by_method(runs)
    labels = runs[0].labels
    for method, method_runs in by_method.items():
        for metric, per_seed in samples[method].items():
            low, high = stats.percentile_interval(np.mean(per_seed, axis=0), level)
            value = float(np.mean(values[method][metric]))
            out.intervals.append(
                dict(
                    row, method=method, seed=MEAN, metric=metric, value=value, low=low, high=high, interval="bootstrap"
                )
            )
        auroc, low, high = stats.delong_interval(labels, [r.scores for r in method_runs], level, clusters)
        out.intervals.append(
            dict(
                row, method=method, seed=MEAN, metric="image_auroc", value=auroc, low=low, high=high, interval="DeLong"
            )
        )
    out.comparisons += [
        dict(c, unit=unit, resampled=resampled) for c in _compare(task, by_method, samples, values, labels, clusters)
    ]


def _load(row) -> _Run:
    folder = RunFolder(row.folder)
    scores = folder.scores().sort_values("id", kind="stable")
    pixels = folder.pixel_statistics()
    if pixels is not None:
        order = np.argsort(pixels.pop("ids"), kind="stable")  # the same id order as the scores
        pixels = {k: (v[order] if k != "thresholds" else v) for k, v in pixels.items()}
    config = folder.config()
    stored = folder.metrics()
    held = folder.holdout_scores()
    for name, frame in ((folder.SCORES, scores), (folder.HOLDOUT_SCORES, held)):
        if frame is not None and not np.isfinite(frame["score"].to_numpy(dtype=np.float64)).all():
            bad = int((~np.isfinite(frame["score"].to_numpy(dtype=np.float64))).sum())
            raise UserInputError(
                f"{folder}: {name} holds {bad} score(s) that are not finite numbers (NaN or inf), which would rank "
                "those images arbitrarily in every interval and figure. Check the images they belong to (`data check "
                "--deep`), then re-evaluate the run (`medrecontrast evaluate --run ... --force`)."
            )
    record = folder.data_record() or {}
    return _Run(
        method=row.method,
        seed=int(row.seed),
        labels=scores["label"].to_numpy().astype(int),
        scores=scores["score"].to_numpy(dtype=np.float64),
        groups=scores["group"].to_numpy() if "group" in scores else None,
        categories=scores["category"].astype(str).to_numpy() if "category" in scores else None,
        holdout=None if held is None else held["score"].to_numpy(dtype=np.float64),
        holdout_patients=None if held is None or "patient" not in held else held["patient"].astype(str).to_numpy(),
        patients=scores["patient"].astype(str).to_numpy() if "patient" in scores else None,
        leaks=list(record.get("leaks", [])),
        changed=record.get("changed_since_training"),
        quantile=float(config.threshold_quantile),
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


def _compare(
    task: str, by_method: dict, samples: dict, values: dict, labels: np.ndarray, clusters: np.ndarray | None = None
) -> list[dict]:
    """Each method against the best one of each metric (and ReContrast against each baseline):
    DeLong for image AUROC (Obuchowski's clustered DeLong with ``clusters``), the paired bootstrap (of the
    task's resamples: patients where it has them) for every metric; p-values before Holm."""
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
                rows.append({**base, "p": stats.delong_test(labels, first, second, clusters), "test": "DeLong"})
    return rows


def _subtypes(task: str, by_method: dict, level: float, clusters: np.ndarray | None = None) -> list[dict]:
    """Image AUROC of each abnormal subtype against every test normal, with DeLong's interval of the seed mean
    (Obuchowski's, over patients, with ``clusters``)."""
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
            auroc, low, high = stats.delong_interval(
                labels, [r.scores[rows_of] for r in runs], level, None if clusters is None else clusters[rows_of]
            )
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
                    resampled="images" if clusters is None else "patients",
                    abnormal_patients=None if clusters is None else len(set(clusters[rows_of][labels == 1])),
                    normal_patients=None
                    if clusters is None
                    else len(set(clusters[rows_of][labels == 0]) - set(clusters[rows_of][labels == 1])),
                )
            )
    return rows
