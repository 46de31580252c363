"""Paper-style tables from the results frame: mean ± std over seeds, best per task in bold.

Numbers are percentages with two decimals, as the paper prints them. The comparison with the
paper puts each method's rows beside the numbers its module declares (``paper_results``: for ReContrast
its own training logs; docs/tasks.md, "Paper fidelity").
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from medrecontrast.bench.results import METRICS, TIMINGS, finished, sweep_of
from medrecontrast.bench.statistics import SweepStatistics, sweep_statistics
from medrecontrast.metrics import OPERATING_POINTS, chance_level
from medrecontrast.models import DETECTORS, display_name, registered_methods
from medrecontrast.paths import atomic_path, claim_report_folder
from medrecontrast.run.folder import RunFolder
from medrecontrast.tasks import family_classes


def summary_frame(results: pd.DataFrame, statistics: SweepStatistics | None = None) -> pd.DataFrame:
    """Mean and std (over seeds, in percent) of every metric per (task, method), plus the seed count;
    with ``statistics``, the bootstrap interval of the seed mean as ``low``/``high`` (and DeLong's for
    image AUROC as ``delong_low``/``delong_high``)."""
    done = finished(results)
    present = [m for m in METRICS if m in done and done[m].notna().any()]
    scaled = done[["task", "method", *present]].copy()
    scaled[present] = scaled[present].astype(float) * 100
    grouped = scaled.groupby(["task", "method"], sort=False)
    summary = grouped[present].agg(["mean", "std"])
    if statistics is not None:
        for metric in present:
            for kind, prefix in (("bootstrap", ""), ("DeLong", "delong_")):
                bounds = [statistics.interval(t, m, metric, kind=kind) for t, m in summary.index]
                if any(b is not None for b in bounds):
                    summary[(metric, f"{prefix}low")] = [100 * b[0] if b else np.nan for b in bounds]
                    summary[(metric, f"{prefix}high")] = [100 * b[1] if b else np.nan for b in bounds]
        summary = summary[[c for m in present for c in summary.columns if c[0] == m]]
    summary[("seeds", "n")] = grouped.size()
    return summary


MAIN_METRICS = ("image_auroc", "pixel_auroc", "aupro")  # the main table's columns; every metric: table_all.tex


def paper_table(
    results: pd.DataFrame,
    fmt: str = "markdown",
    statistics: SweepStatistics | None = None,
    metrics: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Task × method rows, one ``mean ± std`` column per metric, the best mean per task in bold.

    With ``statistics``: each cell adds the 95 % bootstrap interval of the seed mean ``[lo, hi]``;
    ``†`` marks a method not significantly worse than the best of its task (Holm-adjusted p ≥ 0.05;
    DeLong for image AUROC, paired bootstrap otherwise), ``°`` a value whose interval includes chance
    (:func:`medrecontrast.metrics.chance_level`); an ``n`` column gives the test (and hold-out) sizes.
    ``metrics`` limits the columns (e.g. :data:`MAIN_METRICS`). In LaTeX, methods are their display names and
    every text cell is escaped (:func:`latex_escape`).
    """
    summary = summary_frame(results, statistics)
    metrics = [m for m in METRICS if (m, "mean") in summary and (metrics is None or m in metrics)]
    table = pd.DataFrame(index=summary.index)
    for metric in metrics:
        means, stds = summary[(metric, "mean")], summary[(metric, "std")]
        best = means.groupby(level="task").transform("max")
        best_method = best_per_task(means)
        cells = []
        for (task, method), m, sd, b in zip(means.index, means, stds, best):
            several = len(means.xs(task, level="task")) > 1
            cell = _cell(m, sd, bold=several and np.isclose(m, b), fmt=fmt)
            if statistics is not None and not np.isnan(m):
                against = best_method[task][1] if several and not np.isclose(m, b) else None
                cell += _marks(statistics, task, method, metric, fmt, against)
            cells.append(cell)
        table[METRICS[metric]] = cells
    table["seeds"] = summary[("seeds", "n")].astype(int)
    if statistics is not None:
        table[SIZES] = _sizes(statistics, [t for t, _ in summary.index])
    table = table.reset_index()
    if fmt == "latex":
        table["task"] = table["task"].map(latex_escape)
        table["method"] = table["method"].map(lambda m: latex_escape(display_name(m)))
    if fmt == "rich":  # a terminal: display names, the user's text escaped from Rich markup, best cells bold
        from rich.markup import escape

        table["task"] = table["task"].map(lambda t: escape(str(t)))
        table["method"] = table["method"].map(lambda m: escape(display_name(m)))
    return table


def best_per_task(means: pd.Series) -> dict:
    """``task -> (task, method)`` of the highest mean of each task, for a ``(task, method)``-indexed series; a task
    whose every value is NaN (a pixel metric of a task without masks) has none and is left out (pandas' ``idxmax``
    raises on an all-NaN group)."""
    present = means.dropna()
    return present.groupby(level="task").idxmax().to_dict() if len(present) else {}


def latex_escape(text) -> str:
    """``text`` safe in a LaTeX text cell: ``\\ & % $ # _ { } ~ ^`` escaped (a task ``mvtec:metal_nut``, a variant
    ``pc_k3`` or a folder with ``% & #`` in its path broke pdflatex). Written here because pandas' own
    ``escape=True`` would also escape the table's deliberate math (``$\\pm$``, ``$^\\dagger$``)."""
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(replacements.get(character, character) for character in str(text))


def markdown_escape(text) -> str:
    """``text`` safe in a Markdown table cell and in a rendered README: ``|`` would split the row, ``<``/``>`` would
    pass HTML through (a class folder named ``<img src=x onerror=...>``)."""
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def markdown(frame: pd.DataFrame) -> str:
    """A frame as a Markdown table, every text cell and header escaped (:func:`markdown_escape`)."""
    escaped = frame.rename(columns=lambda c: markdown_escape(c))
    for column in escaped.columns:  # text columns are object or (pandas 3) str dtype: test each cell
        escaped[column] = escaped[column].map(lambda v: markdown_escape(v) if isinstance(v, str) else v)
    return escaped.to_markdown(index=False)


def latex_table(
    results: pd.DataFrame, statistics: SweepStatistics | None = None, metrics: tuple[str, ...] | None = MAIN_METRICS
) -> str:
    """A booktabs ``tabular`` of :func:`paper_table` (``metrics`` columns) for ``\\input`` in a paper (needs
    ``\\usepackage{booktabs}``); every text cell and header escaped."""
    frame = paper_table(results, "latex", statistics, metrics=metrics)
    frame = frame.rename(columns=lambda c: latex_escape(c))
    columns = "ll" + "c" * (len(frame.columns) - 2)
    return frame.style.hide(axis="index").to_latex(hrules=True, column_format=columns)


SIZES = "n (normal/abnormal/hold-out)"


def _sizes(statistics: SweepStatistics, tasks: list[str], unit: str = "image") -> list[str]:
    """The test normals, test abnormals and hold-out normals of each task, as the tables print them: images
    ``234/390/35``, and the patients they come from where the task names them (``from 225/202/33 patients``);
    with ``unit="patient"`` the patients alone."""
    sizes = statistics.counts.set_index("task")
    cells = []
    for t in tasks:
        if t not in sizes.index:
            cells.append("–")
            continue
        images = f"{sizes.at[t, 'normal']}/{sizes.at[t, 'abnormal']}/{sizes.at[t, 'holdout']}"
        if pd.isna(sizes.at[t, "normal_patients"]):
            cells.append(images)
            continue
        patients = "/".join(
            str(int(sizes.at[t, k])) for k in ("normal_patients", "abnormal_patients", "holdout_patients")
        )
        cells.append(f"{patients} patients" if unit == "patient" else f"{images} from {patients} patients")
    return cells


def _interval(low: float, high: float, fmt: str = "markdown") -> str:
    """`` [lo, hi]`` of fractions, in percent with one decimal (LaTeX: small)."""
    text = f"[{100 * low:.1f}, {100 * high:.1f}]"
    return f" {{\\scriptsize{text}}}" if fmt == "latex" else f" {text}"


def _marks(statistics: SweepStatistics, task: str, method: str, metric: str, fmt: str, best: str | None) -> str:
    """`` [lo, hi]`` of the seed mean, ``†`` where not significantly worse than the best, ``°`` where the interval
    includes chance."""
    bounds = statistics.interval(task, method, metric)
    text = ""
    if bounds is not None and not np.isnan(bounds[0]):
        text = _interval(*bounds, fmt)
        prevalence = (
            statistics.counts.set_index("task").at[task, "prevalence"]
            if task in set(statistics.counts["task"])
            else 0.5
        )
        chance = chance_level(metric, prevalence)
        if chance is not None and bounds[0] <= chance:
            text += "$^\\circ$" if fmt == "latex" else "°"
    if best is not None:
        rows = statistics.comparisons
        test = "DeLong" if metric == "image_auroc" else "paired bootstrap"
        rows = rows[
            (rows["task"] == task)
            & (rows["metric"] == metric)
            & (rows["method"] == method)
            & (rows["against"] == best)
            & (rows["test"] == test)
        ]
        if len(rows) and not bool(rows["significant"].iloc[0]):
            text += "$^\\dagger$" if fmt == "latex" else "†"
    return text


def operating_point_table(statistics: SweepStatistics) -> pd.DataFrame:
    """Sensitivity at 90/95/99 % specificity and specificity at 95 % sensitivity (oracle and hold-out
    thresholds) and the threshold gap, per task and method: seed mean [95 % bootstrap interval], in %."""
    points = statistics.operating_points
    if points.empty:
        return pd.DataFrame()
    present = [k for k in OPERATING_POINTS if points[k].notna().any()]
    table = points.groupby(["task", "method"], sort=False)[present].mean() * 100
    out = pd.DataFrame(index=table.index)
    for key in present:
        cells = []
        for (task, method), value in table[key].items():
            bounds = statistics.interval(task, method, key)
            cells.append(f"{value:.1f}" + (_interval(*bounds) if bounds and not np.isnan(bounds[0]) else ""))
        out[OPERATING_POINTS[key]] = cells
    out[SIZES] = _sizes(statistics, [t for t, _ in out.index])
    return out.reset_index()


PATIENT_METRICS = {  # the patient-level table's columns (one score per patient)
    "image_auroc": "AUROC",
    "image_ap": "AP",
    "f1_oracle": "F1 (oracle)",
    "f1_holdout": "F1 (hold-out)",
    "sens_at_spec90_oracle": "Sens@90%Spec (oracle)",
    "sens_at_spec95_holdout": "Sens@95%Spec (hold-out)",
    "spec_at_sens95_oracle": "Spec@95%Sens (oracle)",
}


def patient_table(statistics: SweepStatistics) -> pd.DataFrame:
    """The patient-level results of every task whose images name their patients: a patient's score is the
    ``patient_score`` of its image scores, a patient abnormal when any of its images is; seed mean ± std [95 %
    patient bootstrap interval], in %, with ``†`` where DeLong's test (over patients, Holm-adjusted) finds a
    method not significantly worse than the best."""
    values = statistics.patient_values()
    if values.empty:
        return pd.DataFrame()
    present = [m for m in PATIENT_METRICS if m in values.columns]
    grouped = (values[present] * 100).groupby(level=["task", "method"], sort=False)
    means, stds = grouped.mean(), grouped.std()
    tests = statistics.patient_comparisons
    out = pd.DataFrame(index=means.index)
    for metric in present:
        best = best_per_task(means[metric])
        cells = []
        for (task, method), m in means[metric].items():
            several = len(means.xs(task, level="task")) > 1
            cell = _cell(
                m, stds.at[(task, method), metric], bold=several and best.get(task) == (task, method), fmt="markdown"
            )
            bounds = statistics.interval(task, method, metric, unit="patient")
            if bounds is not None and not np.isnan(bounds[0]):
                cell += _interval(*bounds)
            if metric == "image_auroc" and several and best.get(task) not in (None, (task, method)) and len(tests):
                test = tests[
                    (tests["task"] == task)
                    & (tests["metric"] == metric)
                    & (tests["method"] == method)
                    & (tests["against"] == best[task][1])
                    & (tests["test"] == "DeLong")
                ]
                if len(test) and not bool(test["significant"].iloc[0]):
                    cell += "†"
            cells.append(cell)
        out[PATIENT_METRICS[metric]] = cells
    out["seeds"] = grouped.size()
    out["n (normal/abnormal/hold-out)"] = _sizes(statistics, [t for t, _ in out.index], unit="patient")
    return out.reset_index()


def results_by_unit(results: pd.DataFrame, statistics: SweepStatistics) -> pd.DataFrame:
    """``results.csv``: one row per run at the image level (``unit`` = image, the runs' own metrics) and, for tasks
    whose images name their patients, one more per run at the patient level (``unit`` = patient: the same metric
    columns computed over patient scores, see :func:`patient_table`)."""
    images = results.assign(unit="image")
    values = statistics.patient_values()
    if values.empty:
        return images[["unit", *results.columns]]
    patients = []
    for run in finished(results).itertuples(index=False):
        key = (run.task, run.method, run.seed)
        if key not in values.index:
            continue
        row = {c: getattr(run, c) for c in results.columns if c not in METRICS and c not in TIMINGS}
        row.update({m: values.at[key, m] for m in METRICS if m in values.columns}, unit="patient")
        patients.append(row)
    frame = pd.concat([images, pd.DataFrame(patients)], ignore_index=True) if patients else images
    return frame[["unit", *results.columns]]


def comparison_table(statistics: SweepStatistics) -> pd.DataFrame:
    """Every paired comparison behind the daggers: difference in points, p, Holm-adjusted p, test, and the unit
    (image; patient for the patient-level table's) and what was resampled."""
    rows = statistics.all_comparisons()
    if rows.empty:
        return pd.DataFrame()
    out = rows.assign(
        metric=rows["metric"].map(METRICS),
        difference=(rows["difference"] * 100).round(2),
        p=rows["p"].map(lambda p: f"{p:.3g}"),
        p_holm=rows["p_holm"].map(lambda p: f"{p:.3g}"),
        significant=rows["significant"].map({True: "yes", False: "no"}),
    )
    return out.rename(
        columns={"difference": "difference (points)", "p_holm": "p (Holm)", "significant": "p (Holm) < 0.05"}
    )


def subtype_table(statistics: SweepStatistics) -> pd.DataFrame:
    """Image AUROC of each abnormal subtype against all test normals: seed mean ± std [DeLong 95 % interval], in %."""
    rows = statistics.subtypes
    if rows.empty:
        return pd.DataFrame()
    cells = [
        f"{100 * r.auroc:.2f}"
        + (f" ± {100 * r.auroc_std:.2f}" if not np.isnan(r.auroc_std) else "")
        + _interval(r.low, r.high)
        + ("°" if r.low <= 0.5 else "")
        for r in rows.itertuples()
    ]
    out = rows[["task", "subtype", "abnormal", "normal"]].assign(method=rows["method"], auroc=cells)
    for count in ("abnormal", "normal"):  # images, and the patients they come from where the task names them
        patients = rows[f"{count}_patients"]
        out[count] = [str(n) if pd.isna(p) else f"{n} from {int(p)} patients" for n, p in zip(rows[count], patients)]
    table = out.pivot_table(
        index=["task", "subtype", "abnormal", "normal"], columns="method", values="auroc", aggfunc="first", sort=False
    )
    table.columns = [str(c) for c in table.columns]
    return table.reset_index().rename(columns={"abnormal": "n abnormal", "normal": "n normal"})


def paper_comparison(results: pd.DataFrame) -> pd.DataFrame:
    """Each method's rows beside its own paper's numbers (``Detector.card.paper_results``): ours (mean ±
    std), paper, ours − paper.

    The classes of a family (MVTec AD, VisA) are averaged per seed first, as the papers report the
    class mean; a sweep with fewer classes says how many it averaged.
    """
    rows = []
    for method in registered_methods():
        rows += _paper_rows(finished(results), method, DETECTORS[method].card.paper_results)
    return pd.DataFrame(
        rows,
        columns=["method", "task", "metric", "ours", "paper", "difference", "seeds", "profile", "protocol", "source"],
    )


def _paper_rows(done: pd.DataFrame, method: str, published: dict) -> list[dict]:
    done = done[done["method"] == method].copy()
    done["family"] = done["task"].str.split(":").str[0]
    protocols = {True: "all normals train", False: "normals held out"}
    rows = []
    for family, reference in published.items():
        classes_in_family = family_classes(family)
        # a task by its whole name (oct, medianomaly:brain-tumor), or every class of a family (mvtec)
        part = done[(done["task"] == family) | ((done["family"] == family) & (classes_in_family is not None))]
        if part.empty:
            continue
        classes = part["task"].nunique()
        label = family if classes_in_family is None else f"{family} (mean of {classes}/{classes_in_family} classes)"
        per_seed = (
            part.reindex(columns=["seed", *reference]).astype({m: float for m in reference}).groupby("seed").mean()
            * 100
        )
        for metric, paper in reference.items():
            values = per_seed[metric].dropna()
            if values.empty:
                continue
            rows.append(
                {
                    "method": display_name(method),
                    "task": label,
                    "metric": METRICS[metric],
                    "ours": _cell(values.mean(), values.std(), False, "markdown"),
                    "paper": f"{paper:.2f}",
                    "difference": f"{values.mean() - paper:+.2f}",
                    "seeds": len(values),
                    "profile": ", ".join(sorted(part["profile"].unique())),
                    "protocol": ", ".join(sorted({protocols[not h] for h in part["holdout"].fillna(0).astype(float)})),
                    "source": DETECTORS[method].card.paper_sources.get(family, "the method's paper"),
                }
            )
    return rows


def per_class_table(results: pd.DataFrame) -> pd.DataFrame:
    """Unified tasks: each class's metrics (mean ± std over seeds, in %) per method, from the runs' ``per_class``."""
    rows = []
    for run in finished(results).itertuples():
        per_class = RunFolder(run.folder).metrics().get("per_class", {})
        rows += [
            {
                "task": run.task,
                "class": name,
                "method": run.method,
                "seed": run.seed,
                **{m: values.get(m) for m in METRICS},
            }
            for name, values in per_class.items()
        ]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    present = [m for m in METRICS if frame[m].notna().any()]
    grouped = frame.groupby(["task", "class", "method"], sort=False)[present]
    means, stds = grouped.mean() * 100, grouped.std() * 100
    table = pd.DataFrame(index=means.index)
    for metric in present:
        table[METRICS[metric]] = [_cell(m, s, False, "markdown") for m, s in zip(means[metric], stds[metric])]
    return table.reset_index()


def cost_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean training and inference cost per (task, method) over seeds, and the disk space a finished run keeps."""
    done = finished(results)
    columns = {
        "train_s": "train s",
        "train_images_per_s": "train img/s",
        "train_peak_memory_mb": "train peak MB",
        "inference_s": "test s",
        "images_per_s": "test img/s",
        "inference_peak_memory_mb": "test peak MB",
        "disk_mb": "disk MiB",
    }
    cost = done.groupby(["task", "method"], sort=False)[list(columns)].mean().rename(columns=columns)
    return cost.round(1).reset_index()


def write_tables(
    results: pd.DataFrame, folder: str | os.PathLike, statistics: SweepStatistics | None = None
) -> dict[str, Path]:
    """Write the results frame (CSV, Parquet) and every table (Markdown, LaTeX, CSV) into ``folder``;
    the statistics (intervals, tests, operating points, subtypes) are computed here unless given."""
    folder = claim_report_folder(folder, sweep=sweep_of(results))
    statistics = statistics if statistics is not None else sweep_statistics(results)
    written = {}

    def save(name: str, writer) -> None:
        with atomic_path(folder / name) as partial:
            writer(partial)
        written[name] = folder / name

    by_unit = results_by_unit(results, statistics)
    save("results.csv", lambda p: by_unit.to_csv(p, index=False))
    if parquet_available():
        save("results.parquet", lambda p: by_unit.to_parquet(p, index=False))
    else:
        warnings.warn(
            "results.parquet not written: Parquet needs pyarrow (pip install 'medrecontrast[parquet]'); "
            f"{PARQUET_NOTE}",
            stacklevel=2,
        )
    main = paper_table(results, "markdown", statistics, metrics=MAIN_METRICS)
    save("table.md", lambda p: p.write_text(markdown(main) + "\n"))
    everything = paper_table(results, "markdown", statistics)
    save("table_all.md", lambda p: p.write_text(markdown(everything) + "\n"))
    # booktabs, escaped: table.tex the main metrics (a double-column table*), table_image_auroc.tex one metric (a
    # single column), table_all.tex every metric
    save("table.tex", lambda p: p.write_text(latex_table(results, statistics)))
    save("table_image_auroc.tex", lambda p: p.write_text(latex_table(results, statistics, ("image_auroc",))))
    save("table_all.tex", lambda p: p.write_text(latex_table(results, statistics, None)))
    save("table.csv", lambda p: summary_frame(results, statistics).to_csv(p))
    save("intervals.csv", lambda p: statistics.all_intervals().to_csv(p, index=False))
    for name, frame in (
        ("operating_points", operating_point_table(statistics)),
        ("patients", patient_table(statistics)),
        ("comparisons", comparison_table(statistics)),
        ("subtypes", subtype_table(statistics)),
    ):
        if len(frame):
            save(f"{name}.md", lambda p, f=frame: p.write_text(markdown(f) + "\n"))
            save(f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False))
    comparison = paper_comparison(results)
    sources = "".join(f"\n- {task}: {text}" for task, text in published_notes(results).items())
    save(
        "paper_comparison.md",
        lambda p: p.write_text(
            (markdown(comparison) + "\n" if len(comparison) else no_reference() + "\n")
            + (f"\nWhat is known of the benchmarks' published numbers:\n{sources}\n" if sources else "")
        ),
    )
    save("paper_comparison.csv", lambda p: comparison.to_csv(p, index=False))
    per_class = per_class_table(results)
    if len(per_class):
        save("per_class.md", lambda p: p.write_text(markdown(per_class) + "\n"))
        save("per_class.csv", lambda p: per_class.to_csv(p, index=False))
    cost = cost_table(results)
    save("cost.md", lambda p: p.write_text(markdown(cost) + "\n"))
    return written


PARQUET_NOTE = "results.csv holds the same rows"


def parquet_available() -> bool:
    """Whether pandas can write Parquet here (pyarrow, the ``parquet`` extra)."""
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def published_notes(results: pd.DataFrame) -> dict[str, str]:
    """Each task of the sweep whose benchmark says what is known of its published numbers (``Task.published``)."""
    from medrecontrast.errors import UserInputError
    from medrecontrast.tasks import get_task

    notes = {}
    for task in dict.fromkeys(results["task"]) if "task" in results else ():
        try:
            text = get_task(str(task)).published
        except UserInputError:  # a task this version no longer knows
            continue
        if text:
            notes[str(task)] = text
    return notes


def no_reference() -> str:
    """What the paper comparison says when no run of the sweep has a published number."""
    published = "; ".join(
        f"{display_name(m)}: {', '.join(DETECTORS[m].card.paper_results)}"
        for m in registered_methods()
        if DETECTORS[m].card.paper_results
    )
    return f"No task of this sweep has a reference number in a method's paper ({published})."


def _cell(mean: float, std: float, bold: bool, fmt: str) -> str:
    if np.isnan(mean):
        return "–"
    pm = " $\\pm$ " if fmt == "latex" else " ± "
    text = f"{mean:.2f}" + (f"{pm}{std:.2f}" if not np.isnan(std) else "")
    if bold:
        return {"latex": f"\\textbf{{{text}}}", "rich": f"[bold]{text}[/bold]"}.get(fmt, f"**{text}**")
    return text
