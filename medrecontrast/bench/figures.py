"""Publication figures of a sweep (PNG for the report, PDF for the paper), one colour per method.

Each function takes the results frame (``collect_results``) and reads what it needs from the run
folders it lists: ``scores.csv`` (ROC, score distributions), ``loss.csv`` (loss curves),
``examples.npz`` (qualitative grid).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy.stats import friedmanchisquare
from sklearn.metrics import precision_recall_curve, roc_curve

from medrecontrast.bench.results import finished, ordered_methods
from medrecontrast.models import display_name, registered_methods
from medrecontrast.paths import atomic_path, claim_report_folder
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
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
}


def make_figures(results: pd.DataFrame, folder: str | os.PathLike, statistics=None) -> dict[str, Path]:
    """Every figure of the sweep into ``folder`` as PNG and PDF; returns the PNG paths by name.
    ``statistics`` (``bench.statistics.SweepStatistics``) adds the forest plots and the critical-difference diagram."""
    folder = claim_report_folder(folder)
    done = finished(results)
    figures = {
        "roc": roc_figure(done),
        "pr": pr_figure(done),
        "auroc": auroc_figure(done),
        "scores": score_figure(done),
        "loss": loss_figure(done),
    }
    if statistics is not None:
        figures["critical_difference"] = critical_difference_figure(done)
        for task in statistics.subtypes["task"].unique():
            figures[f"forest_{task_slug(task)}"] = forest_figure(
                statistics.subtypes[statistics.subtypes["task"] == task], task
            )
    for task in done["task"].unique():
        figures[f"examples_{task_slug(task)}"] = examples_figure(done, task)
    written = {}
    with matplotlib.rc_context(STYLE):
        for name, figure in figures.items():
            if figure is None:
                continue
            for suffix in ("png", "pdf"):
                with atomic_path(folder / f"{name}.{suffix}") as partial:
                    # no creation date in the PDF: the same runs give byte-identical files, so a diff shows real changes
                    figure.savefig(partial, format=suffix, metadata={"CreationDate": None} if suffix == "pdf" else None)
            written[name] = folder / f"{name}.png"
    return written


def roc_figure(done: pd.DataFrame):
    """ROC curves per task (one panel each), every seed of every method; legend: mean AUROC ± std."""
    tasks = list(done["task"].unique())
    with matplotlib.rc_context(STYLE):
        figure, axes = _panels(len(tasks), width=2.4, height=2.4)
        for ax, task in zip(axes, tasks):
            for method, runs in _by_method(done[done["task"] == task]):
                for index, run in enumerate(runs.itertuples()):
                    scores = pd.read_csv(Path(run.folder) / "scores.csv")
                    fpr, tpr, _ = roc_curve(scores["label"], scores["score"])
                    label = f"{display_name(method)} {runs['image_auroc'].mean():.3f}" + (
                        f" ± {runs['image_auroc'].std():.3f}" if len(runs) > 1 else ""
                    )
                    ax.plot(
                        fpr, tpr, color=METHOD_COLORS[method], alpha=0.8, lw=1.2, label=label if index == 0 else None
                    )
            ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8, label="chance")
            ax.set(
                title=task,
                xlabel="false positive rate",
                ylabel="true positive rate",
                xlim=(0, 1),
                ylim=(0, 1.01),
                aspect="equal",
            )
            ax.legend(title="image AUROC", loc="lower right", frameon=False)
        figure.tight_layout()
    return figure


def auroc_figure(done: pd.DataFrame):
    """Image AUROC per task and method: bars at the mean over seeds, error bars ± 1 std, seeds as dots."""
    with matplotlib.rc_context(STYLE):
        figure, ax = _subplots(figsize=(min(MAX_WIDTH, 1.2 + 1.6 * done["task"].nunique()), 3.0))
        methods = ordered_methods(done["method"])
        palette = {m: METHOD_COLORS[m] for m in methods}
        sns.barplot(
            done,
            x="task",
            y="image_auroc",
            hue="method",
            hue_order=methods,
            palette=palette,
            errorbar="sd",
            capsize=0.1,
            err_kws={"linewidth": 1},
            ax=ax,
        )
        sns.stripplot(
            done,
            x="task",
            y="image_auroc",
            hue="method",
            hue_order=methods,
            dodge=True,
            jitter=False,  # seaborn's jitter draws from an unseeded stream: the same runs would give other bytes
            palette={m: "0.15" for m in methods},
            size=3,
            legend=False,
            ax=ax,
        )
        ax.axhline(0.5, ls=":", color="grey", lw=0.8, label="chance")
        ax.set(ylabel="image AUROC", xlabel="", ylim=(min(0.45, max(0.0, done["image_auroc"].min() - 0.1)), 1.0))
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(
            handles[: len(methods)],
            [display_name(m) for m in methods],
            frameon=False,
            ncols=min(len(methods), 4),
            loc="lower center",
            bbox_to_anchor=(0.5, 1.0),
        )
    return figure


def score_figure(done: pd.DataFrame):
    """Normal vs abnormal image-score distributions, one panel per task and method (first seed)."""
    tasks, methods = list(done["task"].unique()), ordered_methods(done["method"])
    with matplotlib.rc_context(STYLE):
        figure, axes = _subplots(
            len(tasks), len(methods), figsize=(min(MAX_WIDTH, 2.4 * len(methods)), 1.9 * len(tasks)), squeeze=False
        )
        for row, task in enumerate(tasks):
            for col, method in enumerate(methods):
                ax = axes[row, col]
                runs = done[(done["task"] == task) & (done["method"] == method)].sort_values("seed")
                if runs.empty:
                    ax.set_axis_off()
                    continue
                scores = pd.read_csv(Path(runs.iloc[0]["folder"]) / "scores.csv")
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
                    legend=row == 0 and col == 0,
                )
                metrics_file = Path(runs.iloc[0]["folder"]) / "metrics.json"
                thresholds = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
                for key, style, label in (
                    ("threshold_oracle", "--", "oracle threshold"),
                    ("threshold_holdout", ":", "hold-out threshold"),
                ):
                    if thresholds.get(key) is not None:
                        ax.axvline(thresholds[key], color="black", ls=style, lw=0.9, label=label)
                if row == 0 and col == len(methods) - 1:
                    ax.legend(
                        [line for line in ax.get_lines()],
                        [line.get_label() for line in ax.get_lines()],
                        frameon=False,
                        loc="upper right",
                    )
                ax.set(
                    title=f"{task} · {display_name(method)} (seed {runs.iloc[0]['seed']})",
                    xlabel="image score",
                    ylabel="density" if col == 0 else "",
                )
    figure.tight_layout()
    return figure


def loss_figure(done: pd.DataFrame):
    """Training loss per iteration, one panel per objective (method: their losses are on different
    scales), one line per task (mean over seeds, band = min..max)."""
    trained = done[done["folder"].map(lambda f: (Path(f) / "loss.csv").is_file())]
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
                    [
                        pd.read_csv(Path(f) / "loss.csv").set_index("iteration")["loss"].rename(i)
                        for i, f in enumerate(runs["folder"])
                    ],
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
                for index, run in enumerate(runs.itertuples()):
                    scores = pd.read_csv(Path(run.folder) / "scores.csv")
                    precision, recall, _ = precision_recall_curve(scores["label"], scores["score"])
                    prevalence = float(scores["label"].mean())
                    label = f"{display_name(method)} {runs['image_ap'].mean():.3f}" if index == 0 else None
                    ax.plot(
                        recall,
                        precision,
                        color=METHOD_COLORS[method],
                        alpha=0.8,
                        lw=1.2,
                        label=label,
                        drawstyle="steps-post",
                    )
            if prevalence is not None:
                ax.axhline(prevalence, ls=":", color="grey", lw=0.8, label="chance")
            ax.set(title=task, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
            ax.legend(title="image AP", loc="lower left", frameon=False)
        figure.tight_layout()
    return figure


def forest_figure(subtypes: pd.DataFrame, task: str):
    """Per-subtype image AUROC of each method: point = seed mean, line = DeLong 95 % interval, dotted = chance."""
    kinds = list(dict.fromkeys(subtypes["subtype"]))
    methods = ordered_methods(subtypes["method"])
    with matplotlib.rc_context(STYLE):
        figure, ax = _subplots(figsize=(3.4, 0.5 + 0.28 * len(kinds) * len(methods)))
        step = 0.8 / max(1, len(methods))
        for m, method in enumerate(methods):
            rows = subtypes[subtypes["method"] == method].set_index("subtype")
            for k, kind in enumerate(kinds):
                if kind not in rows.index:
                    continue
                y = k + (m - (len(methods) - 1) / 2) * step
                ax.plot([rows.at[kind, "low"], rows.at[kind, "high"]], [y, y], color=METHOD_COLORS[method], lw=1.4)
                ax.plot(
                    rows.at[kind, "auroc"],
                    y,
                    "o",
                    color=METHOD_COLORS[method],
                    ms=3.5,
                    label=display_name(method) if k == 0 else None,
                )
        ax.axvline(0.5, ls=":", color="grey", lw=0.8)
        counts = subtypes.drop_duplicates("subtype").set_index("subtype")["abnormal"]
        ax.set_yticks(range(len(kinds)), [f"{kind} (n={counts[kind]})" for kind in kinds])
        ax.invert_yaxis()
        ax.set(
            xlabel="image AUROC against all test normals",
            title=f"{task}: per subtype",
            xlim=(min(0.4, subtypes["low"].min() - 0.02), 1.0),
        )
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=min(3, len(methods)))
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
            f"; Friedman p = {friedman:.3g}" if np.isfinite(friedman) else ""
        )
        ax.set_title(title, fontsize=8, pad=12)
    return figure


def examples_figure(done: pd.DataFrame, task: str):
    """Test images of ``task`` (rows): the image, its ground-truth mask, then each method's anomaly map over it."""
    runs = done[done["task"] == task].sort_values("seed")
    methods = ordered_methods(runs["method"])
    examples = {m: _load_examples(Path(runs[runs["method"] == m].iloc[0]["folder"]) / "examples.npz") for m in methods}
    if not examples:
        return None
    first = examples[methods[0]]
    images, masks, labels, ids = first["images"], first["masks"], first["labels"], first["ids"]
    has_masks = bool(masks.any())
    columns = ["image"] + (["ground truth"] if has_masks else []) + [display_name(m) for m in methods]
    scales = {
        m: (float(e["maps"].min()), float(e["maps"].max())) for m, e in examples.items()
    }  # one colour scale per method across rows
    with matplotlib.rc_context(STYLE):
        side = min(1.6, MAX_WIDTH / (len(columns) + 0.4))
        figure, axes = _subplots(
            len(images), len(columns), figsize=(side * len(columns), side * len(images)), squeeze=False
        )
        for row, image in enumerate(images):
            panels = [("image", image, None)]
            if has_masks:
                panels.append(("ground truth", masks[row], "gray"))
            # each method's map over its own input of this image: methods of one sweep may run at other sizes
            # (Dinomaly 392 or 112 px beside 256 or 64 px), and its rows are matched by image id
            panels += [(method, _example_of(examples[method], ids[row]), MAP_COLORMAP) for method in methods]
            for col, (name, content, cmap) in enumerate(panels):
                ax = axes[row, col]
                if cmap == MAP_COLORMAP:
                    if content is None:
                        ax.text(
                            0.5,
                            0.5,
                            "not among\nthis run's\nexamples",
                            ha="center",
                            va="center",
                            fontsize=7,
                            transform=ax.transAxes,
                        )
                        ax.set_xticks([])
                        ax.set_yticks([])
                        if row == 0:
                            ax.set_title(columns[col])
                        continue
                    own_image, content, score = content
                    ax.imshow(own_image)
                    shown = ax.imshow(content, cmap=cmap, alpha=0.55, vmin=scales[name][0], vmax=scales[name][1])
                    if row == len(images) - 1:  # one colour bar per method, under its column
                        bar = figure.colorbar(shown, ax=axes[:, col], orientation="horizontal", fraction=0.04, pad=0.02)
                        bar.solids.set(alpha=1)
                        bar.ax.tick_params(labelsize=7)
                        bar.set_label("anomaly score", fontsize=7)
                    ax.text(
                        2,
                        2,
                        f"{score:.3g}",
                        color="white",
                        fontsize=7,
                        va="top",
                        bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "lw": 0},
                    )
                else:
                    ax.imshow(content, cmap=cmap, vmin=0, vmax=None if cmap is None else 1)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(columns[col])
                if col == 0:
                    ax.set_ylabel(f"{'abnormal' if labels[row] == 1 else 'normal'}\n{str(ids[row])[-18:]}", fontsize=7)
        figure.suptitle(f"{task}: anomaly maps (seed {runs.iloc[0]['seed']}; number = image score)", y=1.0)
    return figure


def _example_of(examples: dict[str, np.ndarray], image_id) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(image, map, score)`` of ``image_id`` in one run's examples, or None where that run did not keep it."""
    matches = np.flatnonzero(np.asarray(examples["ids"]).astype(str) == str(image_id))
    if not len(matches):
        return None
    index = int(matches[0])
    return examples["images"][index], examples["maps"][index], float(examples["scores"][index])


def _load_examples(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``examples.npz``, read once (``np.load`` re-reads the zip on each access); maps as float32."""
    with np.load(path) as stored:
        arrays = dict(stored)
    arrays["maps"] = arrays["maps"].astype(np.float32)
    return arrays


def _by_method(frame: pd.DataFrame):
    for method in ordered_methods(frame["method"]):
        yield method, frame[frame["method"] == method].sort_values("seed")


def _panels(count: int, width: float, height: float):
    columns = min(count, 3)
    rows = -(-count // columns)
    figure, axes = _subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    return figure, list(axes.flat[:count])
