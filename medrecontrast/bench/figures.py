"""Publication figures of a sweep (PNG for the report, PDF for the paper), one colour per method.

Each function takes the results frame (``collect_results``) and reads what it needs from the run
folders it lists: ``scores.csv`` (ROC, score distributions), ``loss.csv`` (loss curves),
``examples.npz`` (qualitative grid).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from medrecontrast.bench.results import finished, ordered_methods  # noqa: E402
from medrecontrast.models import display_name, registered_methods  # noqa: E402
from medrecontrast.paths import atomic_path, claim_report_folder  # noqa: E402
from medrecontrast.tasks import task_slug  # noqa: E402


class _MethodColors(dict):
    """Registered methods keep their colours, in their declared order; any other name (a sweep's
    variant) takes the next free one."""

    def __missing__(self, method: str):
        palette = sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10)
        self[method] = palette[len(self) % len(palette)]
        return self[method]


METHOD_COLORS = _MethodColors(zip(registered_methods(), sns.color_palette("colorblind", 10)))
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "figure.dpi": 150,
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
}


def make_figures(results: pd.DataFrame, folder: str | os.PathLike) -> dict[str, Path]:
    """Every figure of the sweep into ``folder`` as PNG and PDF; returns the PNG paths by name."""
    folder = claim_report_folder(folder)
    done = finished(results)
    figures = {"roc": roc_figure(done), "auroc": auroc_figure(done), "scores": score_figure(done), "loss": loss_figure(done)}
    for task in done["task"].unique():
        figures[f"examples_{task_slug(task)}"] = examples_figure(done, task)
    written = {}
    with plt.rc_context(STYLE):
        for name, figure in figures.items():
            if figure is None:
                continue
            for suffix in ("png", "pdf"):
                with atomic_path(folder / f"{name}.{suffix}") as partial:
                    figure.savefig(partial, format=suffix)
            written[name] = folder / f"{name}.png"
            plt.close(figure)
    return written


def roc_figure(done: pd.DataFrame):
    """ROC curves per task (one panel each), every seed of every method; legend: mean AUROC ± std."""
    tasks = list(done["task"].unique())
    with plt.rc_context(STYLE):
        figure, axes = _panels(len(tasks), width=3.0, height=3.0)
        for ax, task in zip(axes, tasks):
            for method, runs in _by_method(done[done["task"] == task]):
                for index, run in enumerate(runs.itertuples()):
                    scores = pd.read_csv(Path(run.folder) / "scores.csv")
                    fpr, tpr, _ = roc_curve(scores["label"], scores["score"])
                    label = f"{display_name(method)} {runs['image_auroc'].mean():.3f}" + (f" ± {runs['image_auroc'].std():.3f}" if len(runs) > 1 else "")
                    ax.plot(fpr, tpr, color=METHOD_COLORS[method], alpha=0.8, lw=1.2, label=label if index == 0 else None)
            ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
            ax.set(title=task, xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
            ax.legend(title="image AUROC", loc="lower right", frameon=False)
        figure.tight_layout()
    return figure


def auroc_figure(done: pd.DataFrame):
    """Image AUROC per task and method: bars at the mean over seeds, error bars ± 1 std, seeds as dots."""
    with plt.rc_context(STYLE):
        figure, ax = plt.subplots(figsize=(1.2 + 1.6 * done["task"].nunique(), 3.0))
        methods = ordered_methods(done["method"])
        palette = {m: METHOD_COLORS[m] for m in methods}
        sns.barplot(
            done, x="task", y="image_auroc", hue="method", hue_order=methods, palette=palette, errorbar="sd", capsize=0.1, err_kws={"linewidth": 1}, ax=ax
        )
        sns.stripplot(
            done, x="task", y="image_auroc", hue="method", hue_order=methods, dodge=True, palette={m: "0.15" for m in methods}, size=3, legend=False, ax=ax
        )
        ax.set(ylabel="image AUROC", xlabel="", ylim=(max(0.0, done["image_auroc"].min() - 0.1), 1.0))
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles, [display_name(m) for m in methods], frameon=False, ncols=min(len(methods), 4), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return figure


def score_figure(done: pd.DataFrame):
    """Normal vs abnormal image-score distributions, one panel per task and method (first seed)."""
    tasks, methods = list(done["task"].unique()), ordered_methods(done["method"])
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(len(tasks), len(methods), figsize=(2.6 * len(methods), 2.0 * len(tasks)), squeeze=False)
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
                ax.set(title=f"{task} · {display_name(method)} (seed {runs.iloc[0]['seed']})", xlabel="image score", ylabel="density" if col == 0 else "")
    figure.tight_layout()
    return figure


def loss_figure(done: pd.DataFrame):
    """Training loss per iteration (mean over seeds, band = min..max), one panel per task."""
    trained = done[done["folder"].map(lambda f: (Path(f) / "loss.csv").is_file())]
    if trained.empty:
        return None
    tasks = list(trained["task"].unique())
    with plt.rc_context(STYLE):
        figure, axes = _panels(len(tasks), width=3.2, height=2.4)
        for ax, task in zip(axes, tasks):
            for method, runs in _by_method(trained[trained["task"] == task]):
                curves = pd.concat([pd.read_csv(Path(f) / "loss.csv").set_index("iteration")["loss"].rename(i) for i, f in enumerate(runs["folder"])], axis=1)
                smooth = curves.rolling(max(1, len(curves) // 30), min_periods=1).mean()
                ax.plot(smooth.index, smooth.mean(axis=1), color=METHOD_COLORS[method], label=display_name(method), lw=1.2)
                ax.fill_between(smooth.index, smooth.min(axis=1), smooth.max(axis=1), color=METHOD_COLORS[method], alpha=0.2, lw=0)
            ax.set(title=task, xlabel="iteration", ylabel="training loss")
            ax.legend(frameon=False)
        figure.tight_layout()
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
    scales = {m: (float(e["maps"].min()), float(e["maps"].max())) for m, e in examples.items()}  # one colour scale per method across rows
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(len(images), len(columns), figsize=(1.6 * len(columns), 1.6 * len(images)), squeeze=False)
        for row, image in enumerate(images):
            panels = [("image", image, None)]
            if has_masks:
                panels.append(("ground truth", masks[row], "gray"))
            panels += [(method, examples[method]["maps"][row], "jet") for method in methods]
            for col, (name, content, cmap) in enumerate(panels):
                ax = axes[row, col]
                if cmap == "jet":
                    ax.imshow(image)
                    ax.imshow(content, cmap=cmap, alpha=0.5, vmin=scales[name][0], vmax=scales[name][1])
                    ax.text(
                        2,
                        2,
                        f"{float(examples[name]['scores'][row]):.3g}",
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
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    return figure, list(axes.flat[:count])
