"""A sweep's report end to end on the mini sweep: tables, figures, statistics, answers, and the folders a report may
write into."""

import json
import shutil
import time
from pathlib import Path

import layouts
import numpy as np
import pandas as pd
import pytest
from conftest import MINI_TASKS, TINY_DATA, copy_sweep, mini_config

from medrecontrast.bench import (
    build_report,
    collect_results,
    finished,
    paper_comparison,
    plan_sweep,
    run_sweep,
    summary_frame,
)
from medrecontrast.errors import UserInputError
from medrecontrast.metrics import image_metrics, oracle_threshold, threshold_metrics

TASKS = MINI_TASKS


def test_tables_equal_what_the_per_image_scores_give(mini_sweep):
    root, _, _ = mini_sweep
    results = collect_results(root / "runs")
    recomputed = []
    for run in results.itertuples():
        scores = pd.read_csv(Path(run.folder) / "scores.csv")
        held = pd.read_csv(Path(run.folder) / "holdout_scores.csv")["score"]
        oracle = threshold_metrics(scores["label"], scores["score"], oracle_threshold(scores["label"], scores["score"]))
        fixed = threshold_metrics(scores["label"], scores["score"], np.quantile(held, 0.95))
        recomputed.append(
            {
                "task": run.task,
                "method": run.method,
                "image_auroc": image_metrics(scores["label"], scores["score"])["image_auroc"],
                "f1_oracle": oracle["f1"],
                "acc_oracle": oracle["acc"],
                "f1_holdout": fixed["f1"],
                "acc_holdout": fixed["acc"],
            }
        )
    expected = pd.DataFrame(recomputed).groupby(["task", "method"], sort=False).agg(["mean", "std"]) * 100
    summary = summary_frame(results)
    for column in expected.columns:
        np.testing.assert_allclose(
            summary[column].to_numpy(), expected[column].to_numpy(), rtol=1e-9, err_msg=str(column)
        )
    stored = pd.read_csv(root / "report" / "table.csv", header=[0, 1], index_col=[0, 1])
    np.testing.assert_allclose(
        stored[("image_auroc", "mean")].to_numpy(), expected[("image_auroc", "mean")].to_numpy(), rtol=1e-9
    )
    first = expected.iloc[0]
    markdown = (root / "report" / "table.md").read_text()
    assert f"{first[('image_auroc', 'mean')]:.2f} ± {first[('image_auroc', 'std')]:.2f}" in markdown


def test_the_report_states_what_the_sweep_set_beyond_the_profile(mini_sweep):
    """A per-method or per-task setting (an epoch count, a coreset ratio) was in no row of the report: a reader of
    the zoo's report could not see that STFPM trained 10 epochs or that Brain Tumor's AE trained 250."""
    _, _, readme = mini_sweep
    row = next(line for line in readme.read_text().splitlines() if line.startswith("| set beyond the profile |"))
    assert "every run: image_size=32, holdout=0.25" in row
    assert "rd4ad iters=3, batch_size=4" in row and "patchcore embed_dim=32" in row
    for task in MINI_TASKS:
        assert f"on {task}: data size={TINY_DATA['size']}, n_train={TINY_DATA['n_train']}" in row


def test_report_has_tables_and_non_empty_figures(mini_sweep):
    root, _, readme = mini_sweep
    report = root / "report"
    assert readme == report / "README.md"
    text = readme.read_text()
    for figure in (
        "auroc",
        "roc",
        "scores_synth-fundus",
        "scores_synth-oct",
        "loss",
        "examples_synth-fundus",
        "examples_synth-oct",
        "cases_synth-oct",
        "forest",
    ):
        for suffix in ("png", "pdf"):
            path = report / f"{figure}.{suffix}"
            assert path.is_file() and path.stat().st_size > 5000, path
        assert f"({figure}.png)" in text
    for table in (
        "table.md",
        "table.tex",
        "table.csv",
        "results.csv",
        "results.parquet",
        "paper_comparison.md",
        "cost.md",
    ):
        assert (report / table).stat().st_size > 0, table
    parquet = pd.read_parquet(report / "results.parquet")  # one row per run, and per run at the patient level
    assert (parquet["unit"] == "image").sum() == 8 and (parquet["unit"] == "patient").sum() == 4
    assert "\\textbf{" in (report / "table.tex").read_text() and "I-AUROC" in text and "seeds | 0, 1" in text
    assert "cpu" in text and "No task of this sweep has a reference number" in text


def test_paper_comparison_averages_classes_and_subtracts_the_reference():
    rows = [
        {
            "task": t,
            "method": "recontrast",
            "seed": s,
            "status": "finished",
            "profile": "paper",
            "holdout": 0.0,
            "image_auroc": v,
            "pixel_auroc": None,
            "aupro": 0.5,
            "aupro_per_image": a,
        }
        for t, s, v, a in [
            ("mvtec:bottle", 0, 1.0, 0.9),
            ("mvtec:grid", 0, 0.98, 0.9),
            ("mvtec:bottle", 1, 1.0, 0.9),
            ("mvtec:grid", 1, 0.96, 0.9),
            ("oct", 0, 0.99, None),
        ]
    ]
    rows.append({**rows[-1], "task": "mvtec-unified", "image_auroc": 0.97})
    # failed before: a reference keyed by a task whose name holds a colon (a benchmark's task) matched no run
    rows.append({**rows[-1], "task": "medianomaly:brain-tumor", "method": "ae", "image_auroc": 0.85})
    table = paper_comparison(pd.DataFrame(rows))
    brain = table[(table["task"] == "medianomaly:brain-tumor") & (table["metric"] == "I-AUROC")].iloc[0]
    assert brain["method"] == "AE" and brain["paper"] == "85.90" and brain["difference"] == "-0.90"
    bmad = paper_comparison(
        pd.DataFrame([{**rows[-1], "task": "bmad:brain", "method": "patchcore", "image_auroc": 0.9}])
    )
    assert bmad.iloc[0]["paper"] == "91.55" and bmad.iloc[0]["source"].startswith("BMAD's Table 2, first version")
    uni = paper_comparison(pd.DataFrame([{**rows[-1], "task": "uni-medical", "method": "rd4ad", "image_auroc": 0.8}]))
    assert uni.iloc[0]["paper"] == "76.10" and uni.iloc[0]["source"].startswith("ADer's benchmark")
    from medrecontrast.bench.tables import published_notes

    notes = published_notes(pd.DataFrame({"task": ["medianomaly:brain-tumor", "bmad:brain", "uni-medical", "oct"]}))
    assert set(notes) == {"medianomaly:brain-tumor", "bmad:brain", "uni-medical"}
    assert (
        "lite profile's EfficientNet-Lite0" in notes["medianomaly:brain-tumor"] and "2024-04-28" in notes["bmad:brain"]
    )
    assert (
        brain["source"].startswith("AE4AD") and table[table["task"] == "oct"].iloc[0]["source"] == "the method's paper"
    )
    mvtec = table[table["task"].str.startswith("mvtec (")].iloc[0]
    assert (
        mvtec["task"] == "mvtec (mean of 2/15 classes)"
        and mvtec["ours"] == "98.50 ± 0.71"
        and mvtec["difference"] == "-0.95"
    )
    assert table[table["task"] == "oct"].iloc[0]["difference"] == "-0.60"
    # the paper's AUPRO is the per-image average (the authors' logs), never the dataset-level one
    aupro = table[(table["task"].str.startswith("mvtec (")) & (table["metric"].str.startswith("AUPRO"))].iloc[0]
    assert aupro["metric"] == "AUPRO (per image)" and aupro["ours"].startswith("90.00") and aupro["paper"] == "95.20"
    unified = table[table["task"] == "mvtec-unified"].iloc[0]  # the paper's unified table: 98.2
    assert unified["paper"] == "98.20" and unified["difference"] == "-1.20"
    assert set(table["protocol"]) == {"all normals train"}


@pytest.mark.slow
def test_a_report_lists_the_failures_when_no_run_finished(tmp_path, monkeypatch):
    """Once a 148-line traceback ("No objects to concatenate"); now a README with each run's error."""
    from medrecontrast.models import patchcore

    def broken_fit(self, *args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(patchcore.PatchCore, "fit", broken_fit)
    out = tmp_path / "runs"
    outcomes = run_sweep(mini_config(out, tasks=["synth-oct"], methods=["patchcore"], seeds=[0]), progress=False)
    assert [o.status for o in outcomes] == ["failed"]
    readme = build_report(out, tmp_path / "report").read_text()
    assert "No run" in readme and "simulated" in readme and "--resume" in readme
    assert (tmp_path / "report" / "results.csv").is_file()


def test_a_report_never_overwrites_a_folder_the_suite_did_not_write(tmp_path, mini_sweep):
    """`report runs/x --report proj` once replaced a user's proj/README.md and proj/results.csv."""
    out = mini_sweep[0] / "runs"
    user = tmp_path / "proj"
    user.mkdir()
    (user / "README.md").write_text("my notes")
    with pytest.raises(UserInputError, match="not written by medrecontrast"):
        build_report(out, user)
    assert (user / "README.md").read_text() == "my notes" and not (user / "results.csv").exists()
    with pytest.raises(UserInputError, match="not written by medrecontrast"):  # refused before any run trains
        plan_sweep(mini_config(tmp_path / "new", report=str(user)))
    assert not (tmp_path / "new").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserInputError, match="is a file"):
        plan_sweep(mini_config(tmp_path / "new", report=str(tmp_path / "afile")))
    mine = build_report(out, tmp_path / "fresh").parent  # a new folder is created and marked, and may be rebuilt
    assert build_report(out, mine).is_file()


def test_statistics_from_stored_scores_subtypes_intervals_and_report(mini_sweep, tmp_path):
    """Per-subtype AUROC equals scikit-learn on the subset; the report shows intervals, the operating
    points, the subtype table, a forest plot and the PR curves; an old sweep (no pixel statistics,
    no category column) still gets its image intervals."""
    from sklearn.metrics import roc_auc_score

    from medrecontrast.bench.statistics import MEAN, sweep_statistics

    root, _, readme = mini_sweep
    results = collect_results(root / "runs")
    statistics = sweep_statistics(results, resamples=200)
    assert len(statistics.subtypes) and "synth-oct" in set(statistics.subtypes["task"])
    for row in statistics.subtypes.itertuples():
        runs = results[(results["task"] == row.task) & (results["method"] == row.method)]
        expected = []
        for folder in runs["folder"]:
            scores = pd.read_csv(Path(folder) / "scores.csv")
            subset = scores[(scores["label"] == 0) | (scores["category"] == row.subtype)]
            expected.append(roc_auc_score(subset["label"], subset["score"]))
        assert row.auroc == pytest.approx(np.mean(expected)) and row.low <= row.auroc <= row.high
    means = statistics.intervals[
        (statistics.intervals["seed"] == MEAN) & (statistics.intervals["interval"] == "bootstrap")
    ]
    assert {
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "sens_at_spec95_oracle",
        "sens_at_spec95_holdout",
        "threshold_gap",
    } <= set(means["metric"])
    assert (means["low"] <= means["high"]).all()
    report = root / "report"
    text = readme.read_text()
    assert (
        "Clinical operating points" in text
        and "Per-subtype image AUROC" in text
        and "(forest.png)" in text
        and "(pr.png)" in text
    )
    assert (
        " [" in (report / "table.md").read_text()
        and "n (normal/abnormal/hold-out)" in (report / "table.md").read_text()
    )
    assert ("image_auroc", "low") in pd.read_csv(report / "table.csv", header=[0, 1], index_col=[0, 1]).columns
    old = copy_sweep(mini_sweep, tmp_path)
    for folder in old.glob("*/*/seed-*"):
        (folder / "pixel_stats.npz").unlink(missing_ok=True)
        scores = pd.read_csv(folder / "scores.csv")
        scores.drop(columns=["category"]).to_csv(folder / "scores.csv", index=False)
    old_statistics = sweep_statistics(collect_results(old), resamples=200)
    assert old_statistics.subtypes.empty and "pixel_auroc" not in set(old_statistics.intervals["metric"])
    assert "image_auroc" in set(old_statistics.intervals["metric"])


def test_a_task_with_patients_is_reported_per_patient_and_resamples_patients(mini_sweep):
    """synth-oct names its patients (3 B-scans each), synth-fundus does not: intervals.csv and results.csv say the
    unit, synth-oct's image AUROC interval resamples patients, a patient-level table exists, every n says how
    many patients, and the answer line says which unit it speaks of."""
    root, _, readme = mini_sweep
    report = root / "report"
    intervals = pd.read_csv(report / "intervals.csv")
    assert {"unit", "resampled"} <= set(intervals.columns)
    image_auroc = intervals[(intervals["metric"] == "image_auroc") & (intervals["unit"] == "image")]
    assert set(image_auroc[image_auroc["task"] == "synth-oct"]["resampled"]) == {"patients"}
    assert set(image_auroc[image_auroc["task"] == "synth-fundus"]["resampled"]) == {"images"}
    patient_rows = intervals[intervals["unit"] == "patient"]
    assert set(patient_rows["task"]) == {"synth-oct"} and "image_auroc" in set(patient_rows["metric"])
    results = pd.read_csv(report / "results.csv")
    assert results.columns[0] == "unit"
    assert len(results[results["unit"] == "image"]) == 8 and set(results[results["unit"] == "patient"]["task"]) == {
        "synth-oct"
    }
    assert (
        len(results[results["unit"] == "patient"]) == 4
        and results[results["unit"] == "patient"]["image_auroc"].between(0, 1).all()
    )
    patients = (report / "patients.md").read_text()
    assert "synth-oct" in patients and "synth-fundus" not in patients and "patients" in patients
    assert "from 2/2/1 patients" in (report / "table.md").read_text()  # 4 + 4 test images, 2 hold-out normals
    text = readme.read_text()
    assert "## Per patient" in text and "from 2 + 2 patients" in text
    answers = (report / "answers.md").read_text().splitlines()
    assert any(line.startswith("synth-oct") and "resample the 2 + 2 patients" in line for line in answers)
    assert any(line.startswith("synth-fundus") and "one image = one unit" in line for line in answers)


def test_one_image_per_patient_gives_the_image_level_statistics_exactly(mini_sweep, tmp_path):
    """(a) at the sweep level: a task whose every patient has one image has the very intervals and tests of the
    same scores without patients."""
    from medrecontrast.bench.statistics import sweep_statistics

    singles, plain = copy_sweep(mini_sweep, tmp_path / "singles"), copy_sweep(mini_sweep, tmp_path / "plain")
    for sweep, patient in ((singles, lambda frame: "p-" + frame.index.astype(str)), (plain, None)):
        for folder in sweep.glob("synth-oct/*/seed-*"):
            for name in ("scores.csv", "holdout_scores.csv"):
                frame = pd.read_csv(folder / name).drop(columns=["patient"])
                if patient is not None:
                    frame["patient"] = patient(frame)
                frame.to_csv(folder / name, index=False)
    one, other = (sweep_statistics(collect_results(s), resamples=200) for s in (singles, plain))
    columns = ["task", "method", "seed", "metric", "interval", "value", "low", "high"]
    pd.testing.assert_frame_equal(one.intervals[columns], other.intervals[columns], rtol=1e-12)
    pd.testing.assert_frame_equal(
        one.comparisons.drop(columns=["resampled"]), other.comparisons.drop(columns=["resampled"]), rtol=1e-12
    )
    assert set(one.intervals[one.intervals["task"] == "synth-oct"]["resampled"]) == {"patients"}


def test_figures_fit_a_journal_page_with_fonts_of_at_least_7_pt(mini_sweep, tmp_path):
    """Every figure is one or two journal columns wide (3.4 or 7.0 in) and none of its text is below 7 pt, so nothing
    shrinks below 7 pt when a figure is placed at full width; PNGs are 300 dpi (issue 24) and no legend covers the
    plotted data (its box does not meet any axes' data area)."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text
    from PIL import Image

    from medrecontrast.bench import figures
    from medrecontrast.bench.statistics import sweep_statistics

    root, _, _ = mini_sweep
    done = finished(collect_results(root / "runs"))
    statistics = sweep_statistics(done, resamples=50)
    drawn = {
        "roc": figures.roc_figure(done),
        "pr": figures.pr_figure(done),
        "auroc": figures.auroc_figure(done, statistics),
        "loss": figures.loss_figure(done),
        "forest": figures.forest_figure(statistics.subtypes),
        "paired differences": figures.paired_difference_figure(statistics),
    }
    drawn.update({f"examples {task}": figures.examples_figure(done, task) for task in done["task"].unique()})
    drawn.update({f"scores {task}": figures.score_figure(done, task) for task in done["task"].unique()})
    drawn.update({f"cases {task}": figures.cases_figure(done, task) for task in done["task"].unique()})
    with plt.rc_context(figures.STYLE):
        for name, figure in drawn.items():
            width = figure.get_size_inches()[0]
            assert min(abs(width - 3.4), abs(width - 7.0)) < 1e-6, (name, width)  # one or two journal columns
            small = [t.get_text() for t in figure.findobj(Text) if t.get_text().strip() and t.get_fontsize() < 7]
            assert not small, (name, small)
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            FigureCanvasAgg(figure).draw()  # the suite's figures have no canvas of their own (never pyplot's)
            renderer = figure.canvas.get_renderer()
            legends = [a.get_legend() for a in figure.axes if a.get_legend()] + list(figure.legends)
            points = np.concatenate([_data_points(ax) for ax in figure.axes] or [np.empty((0, 2))])
            for legend in legends:
                box = legend.get_window_extent(renderer)
                inside = (
                    (points[:, 0] > box.x0)
                    & (points[:, 0] < box.x1)
                    & (points[:, 1] > box.y0)
                    & (points[:, 1] < box.y1)
                )
                assert not inside.any(), (name, "a legend covers plotted data", points[inside][:3])
    for png in sorted((root / "report").glob("*.png")):  # what is written: 300 dpi, at most its column's width
        saved = Image.open(png)
        assert saved.info["dpi"][0] == pytest.approx(300, abs=1), png.name
        inches = saved.width / saved.info["dpi"][0]
        assert inches <= 3.4 + 0.02 or 3.5 < inches <= 7.0 + 0.02, (png.name, inches)


def _data_points(ax) -> np.ndarray:
    """Display coordinates of the plotted data of ``ax``: every vertex of its lines and of its filled areas and bars
    (histograms, bands), densified along each segment so that a legend cannot sit between two vertices."""
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    chunks = []
    for artist in ax.get_children():
        if not artist.get_visible():
            continue
        if isinstance(artist, Line2D) and len(artist.get_xydata()):
            chunks.append(artist.get_transform().transform(artist.get_xydata()))
        elif isinstance(artist, Collection):
            for path in artist.get_paths():
                chunks.append(artist.get_transform().transform(path.vertices))
        elif isinstance(artist, Patch) and artist is not ax.patch:
            chunks.append(artist.get_transform().transform(artist.get_path().vertices))
    dense = []
    for chunk in chunks:
        chunk = chunk[np.isfinite(chunk).all(axis=1)]
        if len(chunk) > 1:
            steps = np.linspace(0, 1, 8)[:, None, None]
            dense.append((chunk[:-1] + steps * (chunk[1:] - chunk[:-1])).reshape(-1, 2))
        elif len(chunk):
            dense.append(chunk)
    return np.concatenate(dense) if dense else np.empty((0, 2))


def test_a_table_never_mixes_runs_of_different_data(mini_sweep, tmp_path):
    """Issue 11 item 2: each run records a fingerprint of its task's files; runs of one task on different files are
    refused together."""
    runs = copy_sweep(mini_sweep, tmp_path)
    records = sorted(runs.glob("synth-oct/*/seed-*/data.json"))
    assert records and all(json.loads(r.read_text())["files"] > 0 for r in records)
    assert collect_results(runs)["data_fingerprint"].notna().all()
    odd = json.loads(records[0].read_text())
    records[0].write_text(json.dumps({**odd, "sha256": "0" * 64}))
    with pytest.raises(UserInputError, match="task synth-oct: its runs were trained or evaluated on different files"):
        collect_results(runs)


def test_without_pyarrow_the_report_says_where_parquet_went(mini_sweep, tmp_path, monkeypatch):
    """Issue 11 item 21: pyarrow is an extra; without it the tables are written, results.parquet is
    not, and both a warning and the report say how to get it."""
    import medrecontrast.bench.tables as tables

    monkeypatch.setattr(tables, "parquet_available", lambda: False)
    runs = copy_sweep(mini_sweep, tmp_path)
    with pytest.warns(UserWarning, match="medrecontrast\\[parquet\\]"):
        readme = build_report(runs, tmp_path / "report")
    assert not (tmp_path / "report" / "results.parquet").exists() and (tmp_path / "report" / "results.csv").is_file()
    assert "medrecontrast[parquet]" in readme.read_text()


@pytest.mark.slow  # two whole reports (every figure drawn twice)
def test_a_rewritten_report_keeps_no_file_of_the_previous_one_that_it_did_not_rewrite(
    mini_sweep, tmp_path, monkeypatch
):
    """Failed before: the committed demo report, rewritten on a machine without pyarrow, kept the results.parquet
    of the earlier report (other runs, other numbers) beside the new results.csv. A file no report wrote (a
    user's notes) stays."""
    import medrecontrast.bench.tables as tables

    pytest.importorskip("pyarrow")
    runs = copy_sweep(mini_sweep, tmp_path)
    report = tmp_path / "report"
    build_report(runs, report)
    assert (report / "results.parquet").is_file()
    (report / "my-notes.md").write_text("mine")
    monkeypatch.setattr(tables, "parquet_available", lambda: False)
    with pytest.warns(UserWarning, match="medrecontrast\\[parquet\\]"):
        build_report(runs, report)
    assert not (report / "results.parquet").exists() and (report / "results.csv").is_file()
    assert (report / "my-notes.md").read_text() == "mine"


def test_rebuilding_a_report_of_the_same_runs_gives_the_same_bytes(mini_sweep, tmp_path):
    """Failed before: README.md held the time of the build and the statistics' seconds, every PDF its creation
    date, so a report diff showed changes where nothing changed."""
    import hashlib

    runs = copy_sweep(mini_sweep, tmp_path)

    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}

    build_report(runs, tmp_path / "report")
    first = digests(tmp_path / "report")
    time.sleep(1.1)  # a clock-dependent field would differ now
    stale = tmp_path / "report" / ".README.md.999999999.partial"  # left by a report killed mid-write
    stale.write_text("half")
    build_report(runs, tmp_path / "report")
    assert not stale.exists()  # failed before: a killed report's temporary stayed for ever
    second = digests(tmp_path / "report")
    assert first.keys() == second.keys()
    changed = [name for name in first if first[name] != second[name]]
    assert not changed, changed


def test_report_says_where_it_writes_before_writing(mini_sweep, tmp_path):
    """Failed before: `report runs/X` wrote silently to wherever runs/X/sweep.json recorded."""
    from typer.testing import CliRunner

    from medrecontrast.cli import app

    runs = copy_sweep(mini_sweep, tmp_path)
    marker = json.loads((runs / "sweep.json").read_text())
    marker.setdefault("config", {})["report"] = str(tmp_path / "elsewhere")
    (runs / "sweep.json").write_text(json.dumps(marker))
    result = CliRunner().invoke(app, ["report", str(runs)])
    assert result.exit_code == 0, result.output
    said = result.output.index("writing the report of")
    assert str((tmp_path / "elsewhere").resolve()) in result.output[said:] and said < result.output.index("report:")


@pytest.mark.slow
def test_a_sweep_of_tasks_with_and_without_masks_gives_a_report(tmp_path):
    """Issue 37 item 0, failed before: every run finished, then `paper_table` called `idxmax` on pixel AUROC, NaN for
    the whole task without masks ("idxmax with skipna=True encountered all NA values"), and no README was written."""
    folder = layouts.folder(tmp_path / "plain", train=8, normal=4, abnormal=4, size=32)
    config = mini_config(
        tmp_path / "runs",
        tasks=["synth-oct", f"folder:{folder}"],
        task={"synth-oct": {"data": TINY_DATA}},
    )
    outcomes = run_sweep(config, progress=False)
    assert {o.status for o in outcomes} == {"finished"}
    readme = build_report(tmp_path / "runs", tmp_path / "report")
    table = (tmp_path / "report" / "table.md").read_text()
    assert readme.is_file() and "synth-oct" in table and "plain" in table


def test_a_copied_sweep_never_writes_into_the_report_of_the_sweep_it_was_copied_from(mini_sweep, tmp_path):
    """Issue 37 item 1, failed before: `cp -r runs/a runs/b; medrecontrast tables runs/b` rewrote a's report (the
    report path is stored in sweep.json), leaving a folder whose README and tables disagreed. A report records
    its sweep's id and path; a copy (same id, other path) is refused while the original exists; a moved sweep
    keeps its report."""
    from medrecontrast.bench import write_tables

    original = copy_sweep(mini_sweep, tmp_path / "a")
    build_report(original, tmp_path / "report-a")
    before = (tmp_path / "report-a" / "README.md").read_bytes()
    copy = tmp_path / "b" / "runs"
    shutil.copytree(original, copy)
    with pytest.raises(UserInputError, match="a copy of that sweep"):
        build_report(copy, tmp_path / "report-a")
    with pytest.raises(UserInputError, match="--report DIR"):
        write_tables(collect_results(copy), tmp_path / "report-a")
    assert (tmp_path / "report-a" / "README.md").read_bytes() == before
    assert build_report(copy, tmp_path / "report-b").is_file()  # its own report folder: fine
    moved = tmp_path / "moved"
    shutil.move(original, moved)
    assert build_report(moved, tmp_path / "report-a").is_file()  # the sweep moved, its report follows


def test_a_non_finite_metric_or_score_never_enters_a_table(mini_sweep, tmp_path):
    """Issue 37 item 2, failed before: a NaN in one run's metrics.json gave a table cell of the other seed alone,
    labelled "seeds 2" and bold, then `report` crashed on the figure; a NaN score ranked its image arbitrarily."""
    from medrecontrast.bench.statistics import sweep_statistics

    sweep = copy_sweep(mini_sweep, tmp_path)
    run = sorted(sweep.glob("synth-oct/rd4ad/seed-0"))[0]
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "image_auroc": float("nan")}))
    with pytest.raises(UserInputError, match="image_auroc = nan, not a finite number"):
        collect_results(sweep)
    (run / "metrics.json").write_text(json.dumps(metrics))
    scores = pd.read_csv(run / "scores.csv")
    scores.loc[0, "score"] = float("inf")
    scores.to_csv(run / "scores.csv", index=False)
    with pytest.raises(UserInputError, match="1 score"):
        sweep_statistics(collect_results(sweep), resamples=50)


def test_an_answer_from_a_partial_sweep_says_it_is_partial(mini_sweep):
    """Issue 37 item 11, failed before: the first of two concurrent sweeps printed an answer from partial results as
    if it were the sweep's."""
    from medrecontrast.bench.report import answer_lines
    from medrecontrast.bench.statistics import sweep_statistics

    root, _, _ = mini_sweep
    results = collect_results(root / "runs")
    partial = results.copy()
    partial.loc[(partial["task"] == "synth-oct") & (partial["seed"] == 1), "status"] = "running"
    lines = answer_lines(partial, sweep_statistics(partial, resamples=50))
    assert any(line.startswith("synth-oct: partial, 2 of 4 runs finished;") for line in lines)
    assert not any("partial" in line for line in answer_lines(results, sweep_statistics(results, resamples=50)))
