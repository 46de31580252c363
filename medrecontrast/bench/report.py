"""``reports/<sweep>/``: the tables, the figures and a README.md that shows them and says how they were made."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd

from medrecontrast.bench.figures import make_figures
from medrecontrast.bench.results import collect_results, finished
from medrecontrast.bench.statistics import MEAN, SweepStatistics, sweep_statistics
from medrecontrast.bench.store import Claim, run_status
from medrecontrast.bench.tables import markdown_escape, write_tables
from medrecontrast.metrics import chance_level
from medrecontrast.models import DETECTORS, display_name
from medrecontrast.paths import (
    atomic_path,
    claim_report_folder,
    remove_stale_partials,
    retire_previous_report_files,
    write_csv,
)
from medrecontrast.run import protocol_label
from medrecontrast.run.folder import RunFolder
from medrecontrast.tasks.base import task_slug

FIGURE_CAPTIONS = {
    "auroc": "Image AUROC per task and method, in %: point = mean over seeds, line = 95 % bootstrap interval of the "
    "seed mean (patients resampled where the task names them), open circles = seeds, dotted line = chance (50).",
    "roc": "ROC curves, every seed a thin line in its method's colour; the legend below gives mean ± std image AUROC; "
    "dotted = chance.",
    "pr": "Precision–recall curves, every seed a thin line; the legend below gives mean image AP; dotted = chance (the "
    "abnormal prevalence).",
    "paired_differences": "With fewer than 3 tasks a rank diagram says nothing: each method's image AUROC minus the "
    "best method's of its task (seed means, points), with DeLong's test's Holm-adjusted p (filled: p < 0.05).",
    "forest": "Forest plot, one panel per task: image AUROC of each abnormal subtype against all test normals, in % "
    "(point = seed mean, line = DeLong 95 % interval, Obuchowski's clustered one where the task names patients; "
    "dotted = chance).",
    "critical_difference": "Average rank of each method over the tasks (image AUROC, seed mean; 1 = best); methods "
    "joined by a "
    "black bar are not significantly different by Nemenyi's critical difference (CD, grey); the title gives "
    "Friedman's test.",
    "loss": "Training loss, one panel per objective (moving average; line = mean over seeds, band = min–max).",
}


SCORES_CAPTION = (
    "Image-score distributions of normal and abnormal test images, one panel per method (first seed), with the "
    "oracle (dashed) and hold-out (dotted) thresholds."
)
CASES_CAPTION = (
    "Each method's own telling cases (first seed): its highest- and lowest-scored abnormal and normal test images, "
    "the anomaly map's contours over the grey image (inferno, the method's scale), the ground truth in cyan."
)
EXAMPLES_CAPTION = (
    "The same test images for every method: image, ground truth (where the task has masks) and each method's "
    "anomaly map alone (first seed; one colour scale per method, its colour bar below the column; cyan = ground "
    "truth; number = image score)."
)
# Markdown, not HTML: nothing is escaped (the tables are Markdown already); trim_blocks so that a
# {% %} line of the template leaves no blank line behind
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("medrecontrast.bench", "templates"),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
    autoescape=False,
)


ANSWERS = "answers.md"  # one line per task: which method is best, and which are not significantly worse


def report_folder(out: str | Path) -> Path:
    """The report folder recorded in a sweep's ``sweep.json`` (default ``reports/<name>``)."""
    marker = Path(out) / "sweep.json"
    config = json.loads(marker.read_text()).get("config", {}) if marker.is_file() else {}
    return Path(config.get("report") or Path("reports") / Path(out).name)


@dataclass(frozen=True)
class WrittenReport:
    """What :func:`write_report` wrote: the README's path and the answer lines (one per task: which method is best
    and which are not significantly worse; none where no run finished)."""

    readme: Path
    answers: tuple[str, ...]


def build_report(out: str | Path, folder: str | Path | None = None) -> Path:
    """Collect the sweep ``out``, write tables, figures and README.md into ``folder``; returns the README path."""
    return write_report(out, folder).readme


def write_report(out: str | Path, folder: str | Path | None = None) -> WrittenReport:
    """:func:`build_report`, returning the README's path with the answer lines it wrote."""
    out = Path(out)
    folder = Path(folder) if folder else report_folder(out)
    results = collect_results(out)
    claim_report_folder(folder, sweep=out)
    began = time.time_ns()
    remove_stale_partials(folder)  # temporaries of a report that was killed mid-write
    readme = folder / "README.md"
    answers: list[str] = []
    if finished(results).empty:  # nothing to tabulate or draw: say what happened to each run instead
        write_csv(folder / "results.csv", results)
        text = render_failures(out, results)
    else:
        statistics = sweep_statistics(results)
        tables = write_tables(results, folder, statistics)
        figures = make_figures(results, folder, statistics)
        answers = answer_lines(results, statistics)
        text = render_readme(out, results, tables, figures, statistics, answers)
        with atomic_path(folder / ANSWERS) as partial:  # what `bench` prints when the sweep ends
            partial.write_text("".join(f"{line}\n" for line in answers))
    with atomic_path(readme) as partial:
        partial.write_text(text)
    with atomic_path(folder / HTML_REPORT) as partial:
        partial.write_text(render_html(text, folder), encoding="utf-8")
    retire_previous_report_files(folder, began)  # the previous report's files that this one did not rewrite
    return WrittenReport(readme, tuple(answers))


HTML_REPORT = "report.html"  # README.md as one self-contained page: every figure inline, links to the files beside it


def render_html(markdown_text: str, folder: Path) -> str:
    """README.md as a single HTML file that opens offline: CommonMark with tables (markdown-it-py, which Rich
    already needs), raw HTML in the text escaped (a task named ``<img onerror=...>`` stays text), every PNG the
    page shows inlined as a data URI; links to the CSVs, PDFs and Markdown tables stay relative (they sit beside
    it in the report folder)."""
    import base64
    import html
    import re

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)

    def inline(match: re.Match) -> str:
        name = html.unescape(match.group(1))
        path = folder / name
        if "/" in name or not path.is_file() or path.suffix.lower() != ".png":
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+)"', inline, body)
    title = html.escape(markdown_text.splitlines()[0].lstrip("# ").strip() if markdown_text else "report")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>\n<style>{HTML_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )


HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:80em;padding:0 1em;line-height:1.45}"
    "table{border-collapse:collapse;margin:1em 0;font-size:.85em;display:block;overflow-x:auto}"
    "th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f3f3f3}"
    "img{max-width:min(100%,60em);height:auto}code{background:#f3f3f3;padding:0 .2em}"
)


def render_readme(
    out: Path,
    results: pd.DataFrame,
    tables: dict,
    figures: dict,
    statistics: SweepStatistics,
    answers: list[str],
) -> str:
    """README.md of the report: ``templates/report.md.j2`` filled with the sweep's facts, tables and figures."""
    sweep = json.loads((out / "sweep.json").read_text())
    done = finished(results)
    profiles = sorted(results["profile"].dropna().unique())
    devices = sorted(d for d in done["device"].dropna().unique())
    environment = sweep.get("environment", {})
    packages = environment.get("packages", {})
    failed = (results["status"] == "failed").any()
    test_sets = (
        f"{r.task}: {statistics.sizes(r.task)}, {r.holdout} hold-out normal(s)"
        + (f" from {int(r.holdout_patients)} patient(s)" if pd.notna(r.holdout_patients) and r.holdout else "")
        + ("" if pd.notna(r.normal_patients) else " (one image = one unit: the files name no patient)")
        for r in statistics.counts.itertuples()
    )
    clustered = [t for t in statistics.counts["task"] if statistics.has_patients(t)]
    unit_line = (
        f"; for {', '.join(clustered)}, whose images name their patients, patients are resampled (stratified by "
        "whether a patient has an abnormal image; every image of a drawn patient kept) and DeLong's test is "
        "Obuchowski's clustered one, so that correlated images of one patient do not narrow an interval; patient-"
        f"level results (a patient's score: the {statistics.patient_score} of its image scores) in patients.md"
        if clustered
        else ""
    )
    overview = [
        ("command", f"`{sweep.get('command') or 'medrecontrast bench --out ' + str(_relative(out))}`"),
        ("profile", f"{', '.join(profiles)}: {'; '.join(_settings(results))}"),
        *(
            [("set beyond the profile", "; ".join(overrides))]
            if (overrides := _overrides(sweep.get("config", {})))
            else []
        ),
        ("training protocol", "; ".join(_protocols(results))),
        ("tasks", ", ".join(results["task"].unique())),
        ("methods", ", ".join(results["method"].unique())),
        ("seeds", ", ".join(str(s) for s in sorted(results["seed"].unique()))),
        ("runs", _run_counts(results) + (f"; failed: {', '.join(_failed(results))}" if failed else "")),
        ("hardware", f"{', '.join(devices) or 'n/a'}; host {environment.get('platform', platform.platform())}"),
        (
            "CPU",
            f"{environment.get('cpu', 'n/a')}, instruction set {environment.get('cpu_capability', 'n/a')}, "
            f"{environment.get('torch_threads', 'n/a')} torch threads "
            "(CPU results are bit-reproducible only with all three equal)",
        ),
        (
            "software",
            f"python {environment.get('python', '')}, torch {packages.get('torch', '')}, monai "
            f"{packages.get('monai', '')}; "
            f"git {str(environment.get('git_revision') or 'n/a')[:10]}",
        ),
        (
            "total training time",
            f"{done['train_s'].sum() / 60:.1f} min (inference {done['inference_s'].sum() / 60:.1f} min)",
        ),
        ("test sets", "; ".join(test_sets)),
        (
            "statistics",
            f"{statistics.resamples:,} stratified bootstrap resamples of the test images per task (seeded; normals and "
            "abnormals resampled separately, shared by every method and seed), computed from the stored scores"
            + unit_line,
        ),
    ]
    captions = [(name, caption) for name, caption in FIGURE_CAPTIONS.items() if name in figures]
    captions += [(name, SCORES_CAPTION) for name in figures if name.startswith("scores_")]
    captions += [(name, EXAMPLES_CAPTION) for name in figures if name.startswith("examples_")]
    captions += [(name, CASES_CAPTION) for name in figures if name.startswith("cases_")]
    return TEMPLATES.get_template("report.md.j2").render(
        name=sweep_name(out),
        version=packages.get("medrecontrast", ""),
        generated=f"{_generated(results):%Y-%m-%d %H:%M}",
        folder=_relative(out),
        # task, method and folder names are the user's text: a `|` would split a row, `<...>` pass as HTML
        overview=[(label, markdown_escape(value)) for label, value in overview],
        warnings=[markdown_escape(line) for line in _warnings(results, statistics)],
        answers=[
            markdown_escape(line) for line in (answers if answers is not None else answer_lines(results, statistics))
        ],
        tables={name: path.read_text().strip() for name, path in tables.items() if name.endswith(".md")}
        | {name: "" for name in tables if not name.endswith(".md")},
        figures=captions,
        patient_score=statistics.patient_score,
    )


def answer_lines(results: pd.DataFrame, statistics: SweepStatistics) -> list[str]:
    """One sentence per task, the sweep's answer: which method has the best image AUROC (seed mean, with its 95 %
    bootstrap interval) and which others are, or are not, significantly worse (DeLong's test, Holm-adjusted, the
    test behind the table's daggers)."""
    done = finished(results)
    lines = []
    tests = statistics.comparisons
    if len(tests):
        tests = tests[(tests["metric"] == "image_auroc") & (tests["test"] == "DeLong")]
    for task, runs in done.groupby("task", sort=False):
        means = runs.groupby("method", sort=False)["image_auroc"].mean().dropna()
        if means.empty:
            continue
        best = means.idxmax()
        interval = statistics.interval(task, best, "image_auroc")
        bounds = f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else ""
        seeds = runs[runs["method"] == best]["seed"].nunique()
        head = (
            f"{task}: {display_name(best)} {'best' if len(means) > 1 else 'only'}, image AUROC {100 * means[best]:.1f}"
        )
        unit = (
            f"per image; interval and tests resample the {statistics.sizes(task).split(' from ')[1]}"
            if statistics.has_patients(task)
            else "per image; one image = one unit"
        )
        head += f"{bounds} ({unit}; {seeds} seed(s))"
        similar, worse = [], []
        for method in means.index.drop(best):
            row = tests[(tests["task"] == task) & (tests["method"] == method) & (tests["against"] == best)]
            if row.empty:
                continue
            if bool(row["significant"].iloc[0]):
                worse.append(f"{display_name(method)} (Holm p {row['p_holm'].iloc[0]:.2g})")
            else:
                similar.append(display_name(method))
        parts = [head]
        if similar:
            parts.append(f"{' and '.join(similar)} not significantly worse")
        if worse:
            parts.append(f"significantly worse: {', '.join(worse)}")
        patient = statistics.interval(task, best, "image_auroc", unit="patient")
        if patient is not None:
            rows = statistics.patient_intervals
            value = rows[
                (rows["task"] == task)
                & (rows["method"] == best)
                & (rows["metric"] == "image_auroc")
                & (rows["seed"] == MEAN)
                & (rows["interval"] == "bootstrap")
            ]["value"].iloc[0]
            parts.append(
                f"per patient ({statistics.patient_score} of its images), {display_name(best)}'s AUROC is "
                f"{100 * value:.1f} [{100 * patient[0]:.1f}, {100 * patient[1]:.1f}]"
            )
        planned = int((results["task"] == task).sum())
        if len(runs) < planned:  # another process may still run the others: this answer is not the sweep's yet
            parts[0] = f"{task}: partial, {len(runs)} of {planned} runs finished; " + parts[0][len(f"{task}: ") :]
        lines.append("; ".join(parts) + ".")
    return lines


def _warnings(results: pd.DataFrame, statistics: SweepStatistics) -> list[str]:
    """What a reader must know before reading the numbers: results no better than chance, inverted
    maps, and the random-init handicap of ReContrast."""
    done = finished(results)
    lines = []
    chance = statistics.intervals[
        (statistics.intervals["seed"] == MEAN) & (statistics.intervals["interval"] == "bootstrap")
    ]
    prevalence = statistics.counts.set_index("task")["prevalence"]
    at_chance = sorted(
        {
            f"{r.task} · {r.method}"
            for r in chance[chance["metric"] == "image_auroc"].itertuples()
            if r.low <= (chance_level("image_auroc", prevalence.get(r.task, 0.5)) or 0)
        }
    )
    if at_chance:
        lines.append(
            f"- **No better than chance:** the 95 % interval of image AUROC includes 50 for {', '.join(at_chance)}."
        )
    if "pixel_auroc" in done:
        inverted = done.groupby(["task", "method"], sort=False)["pixel_auroc"].mean().dropna()
        inverted = inverted[inverted < 0.5]
        if len(inverted):
            lines.append(
                "- **Maps worse than chance (inverted):** pixel AUROC below 50 for "
                + ", ".join(f"{t} · {m} ({100 * v:.1f})" for (t, m), v in inverted.items())
                + ": these maps are brighter on normal tissue than on the anomaly; their AUPRO means nothing."
            )
    for method, backbone in dict.fromkeys(zip(done["base_method"], done["backbone"])):
        lines += [
            f"- **Not the authors' network:** {note}"
            for note in (DETECTORS[method].notes({"backbone": backbone}) if method in DETECTORS else [])
        ]
    random_weights = done[~done["pretrained"].astype(bool)]
    for method in dict.fromkeys(random_weights["base_method"]):
        caveat = DETECTORS[method].card.random_weights_caveat if method in DETECTORS else ""
        if caveat:
            lines.append(f"- {caveat}")
    lines += [f"- {note}" for note in statistics.notes]
    return (["## Read this first", "", *lines, ""]) if lines else []


def render_failures(out: Path, results: pd.DataFrame) -> str:
    """The report of a sweep in which no run finished: each run's state and error, and what to do."""
    states = [run_state(out, r) for r in results.itertuples()]
    failed = any(r.status == "failed" for r in results.itertuples())
    advice = (
        f"Each failed run's error is in its `{RunFolder.STATUS}`; fix the cause, then rerun the same "
        "`medrecontrast bench` command with `--resume`."
        if failed
        else "No run failed: they were stopped or have not started; rerun the same `medrecontrast bench` command with "
        "`--resume` to continue them."
    )
    lines = [
        f"# Benchmark report: {sweep_name(out)}",
        "",
        f"No run of `{_relative(out)}` has finished ({len(results)} run(s) planned), so there are no tables or figures "
        "yet.",
        advice,
        "",
        "| task | method | seed | state | error |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {markdown_escape(r.task)} | {markdown_escape(r.method)} | {r.seed} | {state} | "
        f"{'' if pd.isna(r.error) else markdown_escape(str(r.error)[:200])} |"
        for r, state in zip(results.itertuples(), states)
    ]
    return "\n".join(lines) + "\n"


def sweep_name(out: Path) -> str:
    """The sweep's own name (``sweep.json``), else its folder's."""
    marker = Path(out) / "sweep.json"
    config = json.loads(marker.read_text()).get("config", {}) if marker.is_file() else {}
    return str(config.get("name") or Path(out).name)


def run_state(out: Path, row) -> str:
    """A run's state in words: ``finished``, ``failed``, ``interrupted (SIGTERM)``, ``running`` only while another
    process holds its claim, else ``stopped without a result`` (killed), ``not started``."""
    status = row.status
    if status in ("finished", "failed"):
        return status
    if status == "interrupted":
        return f"interrupted ({run_status(row.folder).get('signal', 'a signal')})"
    if status in ("running", "evaluating"):
        key = f"{task_slug(row.task)}__{row.method}__seed-{row.seed}"
        if Claim(Path(out) / ".claims", key).held_elsewhere():
            return "running" if status == "running" else "re-evaluating"
        return "stopped without a result (killed)"
    return "not started"


def _run_counts(results: pd.DataFrame) -> str:
    """Planned, finished, failed and unknown runs: "unknown" is a run with no result, i.e. still running,
    interrupted (killed, full disk) or never started; `bench --resume` continues it."""
    counts = results["status"].value_counts()
    finished_runs, failed = int(counts.get("finished", 0)), int(counts.get("failed", 0))
    unknown = len(results) - finished_runs - failed
    text = f"{len(results)} planned: {finished_runs} finished, {failed} failed, {unknown} unknown"
    return text + (
        " (no result yet: running, interrupted or never started; `bench --resume` continues them)" if unknown else ""
    )


def _settings(results: pd.DataFrame) -> list[str]:
    """The settings the runs actually used (profile plus overrides), one phrase per distinct combination; runs
    that have not started have no settings recorded yet and are not described."""
    phrases = []
    started = results.dropna(subset=["backbone", "image_size"])
    for (backbone, pretrained, size), runs in started.groupby(["backbone", "pretrained", "image_size"], sort=False):
        schedules = sorted(
            {
                f"{m} {int(i)} iterations x batch {int(b)}"
                for m, i, b in runs[["method", "iters", "batch_size"]].dropna().itertuples(index=False)
            }
        )
        phrases.append(
            f"{backbone}, {'ImageNet weights' if pretrained else 'random init'}, {int(size)} px"
            + (f" ({', '.join(schedules)})" if schedules else "")
        )
    return phrases


def _overrides(config: dict) -> list[str]:
    """What the sweep's configuration sets beyond the profile, as the user wrote it (every run's own settings are in
    results.csv): options for every run, per method, and per task (its data and its methods), e.g.
    ``anomalib:stfpm max_epochs=10`` or ``on medianomaly:brain-tumor: ae epochs=250``."""

    def flat(table: dict, prefix: str = "") -> list[str]:
        items = []
        for key, value in table.items():
            if isinstance(value, dict):
                items += flat(value, f"{prefix}{key}.")
            else:
                items.append(f"{prefix}{key}={value}")
        return items

    phrases = []
    if config.get("options"):
        phrases.append("every run: " + ", ".join(flat(config["options"])))
    for method, table in (config.get("method") or {}).items():
        phrases.append(f"{method} " + ", ".join(flat(table)))
    for task, table in (config.get("task") or {}).items():
        rest = {k: v for k, v in table.items() if k not in ("data", "method")}
        parts = [f"data {', '.join(flat(table['data']))}"] if table.get("data") else []
        parts += [f"{m} {', '.join(flat(t))}" for m, t in (table.get("method") or {}).items()]
        parts += [", ".join(flat(rest))] if rest else []
        if parts:
            phrases.append(f"on {task}: " + "; ".join(parts))
    return phrases


def _protocols(results: pd.DataFrame) -> list[str]:
    """Which runs trained on every normal (the papers' protocol) and which held some out, in words."""
    phrases = []
    known = results[results["holdout"].notna()]  # a run that has not started has no protocol recorded yet
    for holdout, runs in known.groupby(known["holdout"].astype(float), sort=True):
        methods = ", ".join(runs["method"].unique())
        phrases.append(f"{protocol_label(holdout)}: {len(runs)} run(s) ({methods})")
    unknown = len(results) - len(known)
    if unknown:
        phrases.append(f"not started: {unknown} run(s) (no protocol recorded yet)")
    return phrases


def _failed(results: pd.DataFrame) -> list[str]:
    failed = results[results["status"] == "failed"]
    return [f"{r.task}/{r.method}/seed {r.seed} ({str(r.error)[:80]})" for r in failed.itertuples()]


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _generated(results: pd.DataFrame) -> datetime:
    """The report's date: ``SOURCE_DATE_EPOCH`` when set (reproducible builds), else when its newest run
    finished, so that rebuilding the report of the same runs gives the same bytes (no "now")."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    times = []
    for folder in results.get("folder", pd.Series(dtype=str)).dropna():
        status = run_status(folder)
        stamp = status.get("evaluated") or status.get("finished")
        if stamp:
            try:
                parsed = datetime.fromisoformat(stamp)
            except ValueError:
                continue
            times.append(parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc))
    return max(times) if times else datetime.fromtimestamp(0, timezone.utc)
