"""Publication figures of a sweep (PNG for the report, PDF for the paper), one colour per method.

Each function takes the results frame (``collect_results``) and reads what it needs from the run
folders it lists: ``scores.csv`` (ROC, score distributions), ``loss.csv`` (loss curves),
``examples.npz`` (qualitative grid).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy.stats import friedmanchisquare
from sklearn.metrics import precision_recall_curve, roc_curve

from medrecontrast.bench.results import finished, ordered_methods, sweep_of
from medrecontrast.models import display_name, registered_methods
from medrecontrast.paths import atomic_path, claim_report_folder
from medrecontrast.run.folder import RunFolder
from medrecontrast.stats import nemenyi_critical_difference
from medrecontrast.tasks import task_slug


def _subplots(*args, **kwargs):
    """``pyplot.subplots`` on a bare :class:`~matplotlib.figure.Figure`: drawn to files by its own
    canvas, never registered with pyplot, so the suite neither chooses a backend (a notebook keeps
    its inline plots) nor leaves figures open."""
    figsize = kwargs.pop("figsize", None)
    figure = Figure(figsize=figsize)
    return figure, figure.subplots(*args, **kwargs)


class _MethodColors(dict):
    """Registered methods keep their colours, in their declared order; any other name (a sweep's
    variant) takes the next free one."""

    def __missing__(self, method: str):
        palette = sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10)
        self[method] = palette[len(self) % len(palette)]
        return self[method]


METHOD_COLORS = _MethodColors(zip(registered_methods(), sns.color_palette("colorblind", 10)))
# Fonts of at least 7 pt on figures at most MAX_WIDTH inches wide (a journal's two-column width), so
# that no text shrinks below 7 pt when a figure is placed at full width (tested).
MAX_WIDTH = 7.2
SINGLE_COLUMN, DOUBLE_COLUMN = 3.4, 7.0  # inches: the widths figures are drawn at, so their 7-8 pt text prints at size
MAP_COLORMAP = "inferno"  # perceptually uniform, readable in greyscale (never jet)
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 8,
    "figure.dpi": 150,
    "savefig.dpi": 300,  # PNGs at 300 dpi (journals' minimum for halftones); the PDFs are vector
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
}


def make_figures(results: pd.DataFrame, folder: str | os.PathLike, statistics=None) -> dict[str, Path]:
    """Every figure of the sweep into ``folder`` as PNG and PDF; returns the PNG paths by name.
    ``statistics`` (``bench.statistics.SweepStatistics``) adds the forest plots and the critical-difference diagram."""
    folder = claim_report_folder(folder, sweep=sweep_of(results))
    done = finished(results)
    figures = {
        "roc": roc_figure(done),
        "pr": pr_figure(done),
        "loss": loss_figure(done),
    }
    figures["auroc"] = auroc_figure(done, statistics)
    if statistics is not None:
        figures["critical_difference"] = critical_difference_figure(done)  # at least 3 tasks
        if figures["critical_difference"] is None:  # 1 or 2 tasks: the paired differences instead
            figures["paired_differences"] = paired_difference_figure(statistics)
        figures["forest"] = forest_figure(statistics.subtypes)
    for task in done["task"].unique():
        figures[f"scores_{task_slug(task)}"] = score_figure(done, task)
        figures[f"examples_{task_slug(task)}"] = examples_figure(done, task)
        figures[f"cases_{task_slug(task)}"] = cases_figure(done, task)
    written = {}
    with matplotlib.rc_context(STYLE):
        for name, figure in figures.items():
            if figure is None:
                continue
            fit_to_column(figure)
            for suffix in ("png", "pdf"):
                with atomic_path(folder / f"{name}.{suffix}") as partial:
                    # no creation date in the PDF: the same runs give byte-identical files, so a diff shows real changes
                    figure.savefig(partial, format=suffix, metadata={"CreationDate": None} if suffix == "pdf" else None)
            written[name] = folder / f"{name}.png"
    return written


def roc_figure(done: pd.DataFrame):
    """ROC curves per task (one panel each): every seed as a thin line in its method's colour; one legend below
    the panels (outside the data) with each method's mean ± std image AUROC per task in the panel titles' order."""
    tasks = list(done["task"].unique())
    with matplotlib.rc_context(STYLE):
        figure, axes = _panels(len(tasks), width=2.3, height=2.3)
        for ax, task in zip(axes, tasks):
            for method, runs in _by_method(done[done["task"] == task]):
                for run in runs.itertuples():
                    scores = RunFolder(run.folder).scores()
                    fpr, tpr, _ = roc_curve(scores["label"], scores["score"])
                    ax.plot(fpr, tpr, color=METHOD_COLORS[method], alpha=0.75, lw=0.8)
            ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
            ax.set(title=task, xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
            ax.set_aspect("equal")
        _method_legend(figure, done, "image_auroc", "image AUROC")
    return figure


def _method_legend(figure, done: pd.DataFrame, metric: str, what: str) -> None:
    """One legend for the whole figure, below its panels: each method's colour, its mean ± std of ``metric`` over
    seeds (per task where there are several), and the dotted chance line."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    tasks = done["task"].nunique()
    for method, runs in _by_method(done):
        values = runs.groupby("task", sort=False)[metric].agg(["mean", "std"])

        def cell(v) -> str:
            return f"{v['mean']:.3f}" + (f" ± {v['std']:.3f}" if not np.isnan(v["std"]) else "")

        handles.append(Line2D([], [], color=METHOD_COLORS[method], lw=1.2))
        if tasks == 1:
            labels.append(f"{display_name(method)} ({what} {cell(values.iloc[0])})")
        elif tasks <= 3:  # which number is which task's, named
            labels.append(
                f"{display_name(method)}: {what} " + ", ".join(f"{t} {cell(v)}" for t, v in values.iterrows())
            )
        else:  # many tasks: the numbers are in the tables
            labels.append(display_name(method))
    handles.append(Line2D([], [], color="grey", ls=":", lw=0.8))
    labels.append("chance")
    figure.tight_layout()
    figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False, ncols=1)


def auroc_figure(done: pd.DataFrame, statistics=None):
    """Image AUROC per task and method, in %, on the full 0-100 axis: point = mean over seeds, line = the 95 %
    bootstrap interval of the seed mean (``statistics``; without them ± 1 std), small open circles = seeds; the
    dotted line is chance (50). The honest form of the old bars on a truncated axis."""
    tasks, methods = list(done["task"].unique()), ordered_methods(done["method"])
    with matplotlib.rc_context(STYLE):
        width = SINGLE_COLUMN if len(tasks) * len(methods) <= 8 else DOUBLE_COLUMN
        figure, ax = _subplots(figsize=(width, 2.6))
        step = 0.8 / max(1, len(methods))
        for m, method in enumerate(methods):
            for t, task in enumerate(tasks):
                values = done[(done["task"] == task) & (done["method"] == method)]["image_auroc"].dropna() * 100
                if values.empty:
                    continue
                x = t + (m - (len(methods) - 1) / 2) * step
                bounds = statistics.interval(task, method, "image_auroc") if statistics is not None else None
                low, high = (
                    (100 * bounds[0], 100 * bounds[1])
                    if bounds is not None and not np.isnan(bounds[0])
                    else (values.mean() - values.std(ddof=1), values.mean() + values.std(ddof=1))
                    if len(values) > 1
                    else (values.mean(), values.mean())
                )
                ax.plot([x, x], [low, high], color=METHOD_COLORS[method], lw=1.4)
                ax.plot(
                    x,
                    values.mean(),
                    "o",
                    color=METHOD_COLORS[method],
                    ms=4,
                    label=display_name(method) if t == 0 else None,
                )
                ax.plot([x] * len(values), values, "o", mfc="none", mec="0.25", ms=2.5, mew=0.6)
        ax.axhline(50, ls=":", color="grey", lw=0.8)
        ax.text(len(tasks) - 0.55, 51, "chance", fontsize=7, color="grey", ha="right", va="bottom")
        ax.set_xticks(
            range(len(tasks)), tasks, rotation=30 if len(tasks) > 3 else 0, ha="right" if len(tasks) > 3 else "center"
        )
        ax.set(ylabel="image AUROC (%)", ylim=(0, 100), xlim=(-0.6, len(tasks) - 0.4))
        interval = "95 % bootstrap interval" if statistics is not None else "± 1 std"
        ax.legend(
            title=f"point = seed mean, line = {interval},\ncircles = seeds",
            frameon=False,
            ncols=min(len(methods), 4),
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
        )
    return figure


def score_figure(done: pd.DataFrame, task: str | None = None):
    """Normal vs abnormal image-score distributions of one task (the first if none is named), one panel per method
    (its first seed) side by side, with the oracle and hold-out thresholds; one legend below the panels. One figure
    per task, so that a sweep of many tasks gives many short figures, not one very tall one."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    task = task if task is not None else done["task"].iloc[0]
    runs_of_task = done[done["task"] == task]
    methods = ordered_methods(runs_of_task["method"])
    with matplotlib.rc_context(STYLE):
        columns = min(len(methods), 4)
        rows = -(-len(methods) // columns)
        figure, axes = _subplots(
            rows, columns, figsize=(SINGLE_COLUMN if columns == 1 else DOUBLE_COLUMN, 1.9 * rows), squeeze=False
        )
        thresholds_drawn = set()
        for ax, method in zip(axes.flat, methods):
            runs = runs_of_task[runs_of_task["method"] == method].sort_values("seed")
            scores = RunFolder(runs.iloc[0]["folder"]).scores()
            scores["class"] = scores["label"].map({0: "normal", 1: "abnormal"})
            sns.histplot(
                scores,
                x="score",
                hue="class",
                hue_order=["normal", "abnormal"],
                palette={"normal": "0.6", "abnormal": METHOD_COLORS[method]},
                stat="density",
                common_norm=False,
                element="step",
                bins=20,
                ax=ax,
                legend=False,
            )
            thresholds = RunFolder(runs.iloc[0]["folder"]).metrics()
            for key, style in (("threshold_oracle", "--"), ("threshold_holdout", ":")):
                if thresholds.get(key) is not None:
                    ax.axvline(thresholds[key], color="black", ls=style, lw=0.9)
                    thresholds_drawn.add(key)
            ax.set(
                title=f"{display_name(method)} (seed {runs.iloc[0]['seed']})", xlabel="image score", ylabel="density"
            )
        for ax in list(axes.flat)[len(methods) :]:
            ax.set_axis_off()
        handles = [Patch(facecolor="0.6", alpha=0.5, label="normal")]
        handles += [
            Patch(facecolor=METHOD_COLORS[m], alpha=0.5, label=f"abnormal ({display_name(m)})") for m in methods
        ]
        names = {"threshold_oracle": ("--", "oracle threshold"), "threshold_holdout": (":", "hold-out threshold")}
        handles += [
            Line2D([], [], color="black", ls=names[k][0], lw=0.9, label=names[k][1])
            for k in names
            if k in thresholds_drawn
        ]
        figure.suptitle(f"{task}: image scores of normal and abnormal test images")
        figure.tight_layout()
        figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False, ncols=3)
    return figure


def loss_figure(done: pd.DataFrame):
    """Training loss per iteration, one panel per objective (method: their losses are on different
    scales), one line per task (mean over seeds, band = min..max)."""
    trained = done[done["folder"].map(lambda f: RunFolder(f).has_loss())]
    if trained.empty:
        return None
    methods = ordered_methods(trained["method"])
    tasks = list(trained["task"].unique())
    colours = dict(zip(tasks, sns.color_palette("colorblind", len(tasks))))
    with matplotlib.rc_context(STYLE):
        figure, axes = _panels(len(methods), width=2.4, height=2.2)
        for ax, method in zip(axes, methods):
            for task in tasks:
                runs = trained[(trained["method"] == method) & (trained["task"] == task)]
                if runs.empty:
                    continue
                curves = pd.concat(
                    [RunFolder(f).loss().rename(i) for i, f in enumerate(runs["folder"])],
                    axis=1,
                )
                smooth = curves.rolling(max(1, len(curves) // 30), min_periods=1).mean()
                ax.plot(smooth.index, smooth.mean(axis=1), color=colours[task], label=task, lw=1.2)
                ax.fill_between(
                    smooth.index, smooth.min(axis=1), smooth.max(axis=1), color=colours[task], alpha=0.2, lw=0
                )
            ax.set(title=f"{display_name(method)} objective", xlabel="iteration", ylabel="training loss")
            ax.legend(frameon=False)
        figure.tight_layout()
    return figure


def pr_figure(done: pd.DataFrame):
    """Precision–recall curves per task (every seed of every method), with the chance level (the prevalence)."""
    tasks = list(done["task"].unique())
    with matplotlib.rc_context(STYLE):
        figure, axes = _panels(len(tasks), width=2.4, height=2.4)
        for ax, task in zip(axes, tasks):
            prevalence = None
            for method, runs in _by_method(done[done["task"] == task]):
                for run in runs.itertuples():
                    scores = RunFolder(run.folder).scores()
                    precision, recall, _ = precision_recall_curve(scores["label"], scores["score"])
                    prevalence = float(scores["label"].mean())
                    ax.plot(recall, precision, color=METHOD_COLORS[method], alpha=0.75, lw=0.8, drawstyle="steps-post")
            if prevalence is not None:
                ax.axhline(prevalence, ls=":", color="grey", lw=0.8, label="chance")
            ax.set(title=task, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
            ax.set_aspect("equal")
        _method_legend(figure, done, "image_ap", "image AP")
    return figure


def forest_figure(subtypes: pd.DataFrame):
    """Per-subtype image AUROC of each method, one panel per task in one figure (7.0 in wide, one shared x axis up
    to 100 %): point = seed mean, line = DeLong 95 % interval, dotted = chance; one legend below the panels."""
    if subtypes.empty:
        return None
    tasks = list(dict.fromkeys(subtypes["task"]))
    methods = ordered_methods(subtypes["method"])
    sizes = [subtypes[subtypes["task"] == t]["subtype"].nunique() for t in tasks]
    with matplotlib.rc_context(STYLE):
        columns = min(2, len(tasks))
        rows = -(-len(tasks) // columns)
        height = max(1.2, 0.45 + 0.2 * max(sizes) * len(methods))
        figure, axes = _subplots(
            rows, columns, figsize=(DOUBLE_COLUMN if columns > 1 else SINGLE_COLUMN, height * rows), squeeze=False
        )
        low = min(0.4, float(subtypes["low"].min()) - 0.02)
        step = 0.8 / max(1, len(methods))
        for ax, task in zip(axes.flat, tasks):
            rows_of_task = subtypes[subtypes["task"] == task]
            kinds = list(dict.fromkeys(rows_of_task["subtype"]))
            for m, method in enumerate(methods):
                rows_m = rows_of_task[rows_of_task["method"] == method].set_index("subtype")
                for k, kind in enumerate(kinds):
                    if kind not in rows_m.index:
                        continue
                    y = k + (m - (len(methods) - 1) / 2) * step
                    ax.plot(
                        [100 * rows_m.at[kind, "low"], 100 * rows_m.at[kind, "high"]],
                        [y, y],
                        color=METHOD_COLORS[method],
                        lw=1.4,
                    )
                    ax.plot(100 * rows_m.at[kind, "auroc"], y, "o", color=METHOD_COLORS[method], ms=3.5)
            ax.axvline(50, ls=":", color="grey", lw=0.8)
            first = rows_of_task.drop_duplicates("subtype").set_index("subtype")
            patients = first["abnormal_patients"] if "abnormal_patients" in first else None

            def label(kind: str) -> str:  # images, and the patients they come from where the task names them
                if patients is not None and pd.notna(patients[kind]):
                    return f"{kind}\n(n={first.at[kind, 'abnormal']}, {int(patients[kind])} patients)"
                return f"{kind} (n={first.at[kind, 'abnormal']})"

            ax.set_yticks(range(len(kinds)), [label(kind) for kind in kinds])
            ax.set_ylim(len(kinds) - 0.5, -0.5)
            ax.set(title=task, xlabel="image AUROC against all test normals (%)", xlim=(100 * low, 100.5))
        for ax in list(axes.flat)[len(tasks) :]:
            ax.set_axis_off()
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=METHOD_COLORS[m], marker="o", ms=3.5, lw=1.4) for m in methods]
        handles.append(Line2D([], [], color="grey", ls=":", lw=0.8))
        figure.tight_layout()
        figure.legend(
            handles,
            [display_name(m) for m in methods] + ["chance"],
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            frameon=False,
            ncols=min(len(methods) + 1, 5),
        )
    return figure


def paired_difference_figure(statistics):
    """For sweeps of fewer than 3 tasks, where a rank diagram says nothing: each method's image AUROC minus that of
    the best method of its task (seed means, in points), one row per comparison, labelled with DeLong's test's
    Holm-adjusted p; filled = significant at 0.05."""
    rows = statistics.comparisons
    if rows.empty:
        return None
    rows = rows[(rows["metric"] == "image_auroc") & (rows["test"] == "DeLong")]
    if rows.empty:
        return None
    with matplotlib.rc_context(STYLE):
        figure, ax = _subplots(figsize=(SINGLE_COLUMN, 0.8 + 0.3 * len(rows)))
        labels = []
        for y, row in enumerate(rows.itertuples()):
            colour = METHOD_COLORS[row.method]
            ax.plot(
                100 * row.difference, y, "o", ms=4.5, color=colour, mfc=colour if row.significant else "white", mew=1.2
            )
            ax.plot([0, 100 * row.difference], [y, y], color=colour, lw=1)
            ax.text(50 * row.difference, y - 0.12, f"p = {row.p_holm:.2g}", fontsize=7, ha="center", va="bottom")
            labels.append(f"{row.task}: {display_name(row.method)} − {display_name(row.against)}")
        ax.axvline(0, color="grey", lw=0.8, ls=":")
        differences = 100 * rows["difference"].to_numpy()
        low, high = min(differences.min(), 0.0), max(differences.max(), 0.0)
        pad = 0.15 * max(high - low, 1.0)
        ax.set_xlim(low - pad, high + pad)
        ax.set_yticks(range(len(rows)), labels)
        ax.set_ylim(len(rows) - 0.4, -0.8)
        ax.set(xlabel="difference in image AUROC (points)", title="Paired differences (DeLong, Holm-adjusted p)")
    return figure


def critical_difference_figure(done: pd.DataFrame):
    """Average rank of each method over tasks (image AUROC, seed mean; 1 = best) with Nemenyi's
    critical difference: methods joined by a bar do not differ significantly (Friedman test in the title).
    Drawn only for at least 3 tasks and 2 methods."""
    table = done.groupby(["task", "method"], sort=False)["image_auroc"].mean().unstack("method").dropna()
    if len(table) < 3 or table.shape[1] < 2:
        return None
    methods = list(table.columns)
    ranks = table.rank(axis=1, ascending=False).mean()
    cd = nemenyi_critical_difference(len(methods), len(table))
    friedman = friedmanchisquare(*[table[m] for m in methods]).pvalue if len(methods) >= 3 else float("nan")
    order = ranks.sort_values()
    with matplotlib.rc_context(STYLE):
        figure, ax = _subplots(figsize=(3.4, 0.9 + 0.22 * len(methods)))
        ax.set_xlim(len(methods) + 0.2, 0.8)  # rank 1 on the right
        ax.set_ylim(-0.2 - 0.25 * len(methods), 0.45)
        ax.hlines(0, 1, len(methods), color="black", lw=0.8)
        for r in range(1, len(methods) + 1):
            ax.vlines(r, 0, 0.07, color="black", lw=0.8)
            ax.text(r, 0.12, str(r), ha="center", fontsize=7)
        for i, (method, rank) in enumerate(order.items()):
            y = -0.25 * (i + 1)
            ax.plot([rank, rank], [0, y], color=METHOD_COLORS[method], lw=1)
            ax.text(
                rank,
                y - 0.02,
                f"{display_name(method)} ({rank:.2f})",
                ha="center",
                va="top",
                fontsize=7,
                color=METHOD_COLORS[method],
            )
        # groups of methods whose average ranks lie within one critical difference
        values, previous_end, bars = order.to_numpy(), -1, 0
        for start in range(len(values)):
            end = max(j for j in range(len(values)) if values[j] - values[start] <= cd)
            if end > start and end > previous_end:  # a maximal group, not inside the one before
                ax.hlines(0.3 - 0.05 * bars, values[start] - 0.03, values[end] + 0.03, color="black", lw=2.2)
                previous_end, bars = end, bars + 1
        ax.hlines(0.38, 1, 1 + cd, color="grey", lw=1.2)
        ax.text(1 + cd / 2, 0.41, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=7, color="grey")
        ax.set_axis_off()
        title = f"Average rank over {len(table)} tasks (image AUROC)" + (
            f"\nFriedman p = {friedman:.3g}" if np.isfinite(friedman) else ""
        )
        ax.set_title(title, fontsize=8, pad=12)
    return figure


def _shared(examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The examples every method and seed of a task keep (``case`` empty; files without ``case`` are all shared)."""
    if "case" not in examples:
        return examples
    keep = np.asarray(examples["case"]).astype(str) == ""
    return {k: (v[keep] if getattr(v, "ndim", 0) and len(v) == len(keep) else v) for k, v in examples.items()}


def examples_figure(done: pd.DataFrame, task: str):
    """The same test images of ``task`` for every method (rows): the image, its ground truth, then each method's
    anomaly map alone (inferno on its own scale, so the colour bar below the column is the colour shown; the
    image is not blended under it), with the mask's outline in cyan and the image's score."""
    runs = done[done["task"] == task].sort_values("seed")
    methods = ordered_methods(runs["method"])
    examples = {m: _shared(_load_examples(runs[runs["method"] == m].iloc[0]["folder"])) for m in methods}
    if not examples:
        return None
    first = examples[methods[0]]
    images, masks, labels, ids = first["images"], first["masks"], first["labels"], first["ids"]
    has_masks = bool(masks.any())
    columns = ["image"] + (["ground truth"] if has_masks else []) + [display_name(m) for m in methods]
    scales = {m: (float(e["maps"].min()), float(e["maps"].max())) for m, e in examples.items()}
    with matplotlib.rc_context(STYLE):
        side = (SINGLE_COLUMN if len(columns) <= 2 else DOUBLE_COLUMN) / len(columns)  # one or two journal columns
        figure, axes = _subplots(
            len(images), len(columns), figsize=(side * len(columns), side * len(images)), squeeze=False
        )
        for row, image in enumerate(images):
            axes[row, 0].imshow(image)
            if has_masks:
                axes[row, 1].imshow(masks[row], cmap="gray", vmin=0, vmax=1)
            for offset, method in enumerate(methods):
                col = len(columns) - len(methods) + offset
                ax = axes[row, col]
                found = _example_of(examples[method], ids[row])
                if found is None:
                    ax.text(
                        0.5,
                        0.5,
                        "not among\nthis run's\nexamples",
                        ha="center",
                        va="center",
                        fontsize=7,
                        transform=ax.transAxes,
                    )
                    continue
                _, heat, score = found
                mask = _mask_of(examples[method], ids[row])
                shown = ax.imshow(heat, cmap=MAP_COLORMAP, vmin=scales[method][0], vmax=scales[method][1])
                if mask is not None and mask.any():
                    ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.8)
                ax.text(
                    2,
                    2,
                    f"{score:.3g}",
                    color="white",
                    fontsize=7,
                    va="top",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0},
                )
                if row == len(images) - 1:  # one colour bar per method, under its column: the colours shown
                    bar = figure.colorbar(shown, ax=axes[:, col], orientation="horizontal", fraction=0.04, pad=0.02)
                    bar.ax.tick_params(labelsize=7)
                    bar.set_label("anomaly score", fontsize=7)
            for col in range(len(columns)):
                axes[row, col].set_xticks([])
                axes[row, col].set_yticks([])
                if row == 0:
                    axes[row, col].set_title(columns[col])
            axes[row, 0].set_ylabel(
                f"{'abnormal' if labels[row] == 1 else 'normal'}\n{str(ids[row])[-18:]}", fontsize=7
            )
        figure.suptitle(
            f"{task}: anomaly maps (seed {runs.iloc[0]['seed']}; number = image score; cyan = ground truth)", y=1.0
        )
    return figure


def cases_figure(done: pd.DataFrame, task: str):
    """Each method's own telling cases of ``task`` (first seed): its highest- and lowest-scored abnormal and normal
    test images (rows), the map's contours (inferno, on the method's scale) over the grey image, the mask's outline
    in cyan, the score and the true label. None for runs written before the cases were kept."""
    runs = done[done["task"] == task].sort_values("seed")
    methods = ordered_methods(runs["method"])
    stored = {m: _load_examples(runs[runs["method"] == m].iloc[0]["folder"]) for m in methods}
    if not stored or any("case" not in e for e in stored.values()):
        return None
    from medrecontrast.run.artefacts import CASES

    cases = [case for case, _, _ in CASES if any(case in e["case"].astype(str) for e in stored.values())]
    with matplotlib.rc_context(STYLE):
        total = SINGLE_COLUMN if len(methods) <= 2 else DOUBLE_COLUMN
        side = (total - 0.6) / len(methods)  # the row labels take 0.6 in
        figure, axes = _subplots(len(cases), len(methods), figsize=(total, side * len(cases) + 0.6), squeeze=False)
        for col, method in enumerate(methods):
            e = stored[method]
            low, high = float(e["maps"].min()), float(e["maps"].max())
            for row, case in enumerate(cases):
                ax = axes[row, col]
                ax.set_xticks([])
                ax.set_yticks([])
                where = np.flatnonzero(e["case"].astype(str) == case)
                if not len(where):
                    ax.set_axis_off()
                    continue
                i = int(where[0])
                grey = e["images"][i].astype(np.float32).mean(axis=2) / 255
                ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
                levels = np.linspace(low, high, 7)[2:]
                ax.contour(e["maps"][i], levels=levels, cmap=MAP_COLORMAP, vmin=low, vmax=high, linewidths=0.8)
                if e["masks"][i].any():
                    ax.contour(e["masks"][i], levels=[0.5], colors="cyan", linewidths=0.9)
                truth = "abnormal" if int(e["labels"][i]) == 1 else "normal"
                ax.set_xlabel(f"{str(e['ids'][i])[-16:]}\n{truth}, score {float(e['scores'][i]):.3g}", fontsize=7)
                if row == 0:
                    ax.set_title(display_name(method))
                if col == 0:
                    ax.set_ylabel(case.replace(", ", ",\n").replace(" (", "\n("), fontsize=7)
        figure.suptitle(
            f"{task}: each method's highest- and lowest-scored test images (seed {runs.iloc[0]['seed']})\n"
            "contours = anomaly map, cyan = ground truth"
        )
        figure.tight_layout()
    return figure


def _mask_of(examples: dict[str, np.ndarray], image_id):
    matches = np.flatnonzero(np.asarray(examples["ids"]).astype(str) == str(image_id))
    return examples["masks"][int(matches[0])] if len(matches) else None


def _example_of(examples: dict[str, np.ndarray], image_id) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(image, map, score)`` of ``image_id`` in one run's examples, or None where that run did not keep it."""
    matches = np.flatnonzero(np.asarray(examples["ids"]).astype(str) == str(image_id))
    if not len(matches):
        return None
    index = int(matches[0])
    return examples["images"][index], examples["maps"][index], float(examples["scores"][index])


def _load_examples(folder) -> dict[str, np.ndarray]:
    """Every array of a run's examples, read once (``np.load`` re-reads the zip on each access); maps as float32."""
    arrays = RunFolder(folder).examples()
    arrays["maps"] = arrays["maps"].astype(np.float32)
    return arrays


def _by_method(frame: pd.DataFrame):
    for method in ordered_methods(frame["method"]):
        yield method, frame[frame["method"] == method].sort_values("seed")


def fit_to_column(figure) -> float:
    """Narrow ``figure`` until what ``savefig(bbox_inches="tight")`` writes (labels and legends that reach past the
    axes included) is at most one journal column (3.4 in) or two (7.0 in), whichever it was drawn for, so that
    placed at that width no text shrinks below its size; text keeps its size, the axes give way. Returns the
    saved width in inches."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    column = SINGLE_COLUMN if figure.get_figwidth() <= SINGLE_COLUMN + 1e-6 else DOUBLE_COLUMN
    target = column - 2 * float(matplotlib.rcParams["savefig.pad_inches"])  # savefig adds this margin on each side
    canvas = FigureCanvasAgg(figure)
    width = target
    for _ in range(6):
        canvas.draw()
        width = figure.get_tightbbox(canvas.get_renderer()).width
        if width <= target + 0.005:
            break
        figure.set_figwidth(figure.get_figwidth() * target / width * 0.995)
    return width + column - target


def _panels(count: int, width: float, height: float):
    """``count`` panels, up to 3 a row, in a figure exactly one journal column (3.4 in, one panel) or two columns
    (7.0 in) wide; ``width`` x ``height`` gives each panel's aspect."""
    columns = min(count, 3)
    rows = -(-count // columns)
    total = SINGLE_COLUMN if columns == 1 else DOUBLE_COLUMN
    panel = total / columns
    figure, axes = _subplots(rows, columns, figsize=(total, panel * height / width * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    return figure, list(axes.flat[:count])
