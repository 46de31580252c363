"""The sweep runner end to end on a mini sweep: runs, resume after a crash, failures, locks, tables, figures, Ray."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import layouts
import numpy as np
import pandas as pd
import pytest
from conftest import MINI_TASKS, TINY_DATA, mini_config

from medrecontrast.bench import (
    SweepConfig,
    build_report,
    collect_results,
    finished,
    load_sweep_config,
    paper_comparison,
    plan_sweep,
    run_sweep,
    summary_frame,
)
from medrecontrast.bench.store import Claim
from medrecontrast.errors import UserInputError
from medrecontrast.metrics import image_metrics, oracle_threshold, threshold_metrics

TASKS = MINI_TASKS


def copy_sweep(mini_sweep, tmp_path) -> Path:
    root, _, _ = mini_sweep
    shutil.copytree(root / "runs", tmp_path / "runs")
    return tmp_path / "runs"


def test_every_run_finishes_into_its_own_folder(mini_sweep):
    root, outcomes, _ = mini_sweep
    assert sorted(o.status for o in outcomes) == ["finished"] * 8
    results = collect_results(root / "runs")
    assert len(results) == 8 and set(results["status"]) == {"finished"}
    folder = Path(results.loc[results["method"] == "rd4ad", "folder"].iloc[0])
    for name in (
        "config.json",
        "environment.json",
        "model.pt",
        "loss.csv",
        "scores.csv",
        "holdout_scores.csv",
        "metrics.json",
        "examples.npz",
    ):
        assert (folder / name).is_file(), name
    assert not (folder / "checkpoint.pt").exists()  # a finished run keeps model.pt only (issue 23 item 6)
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in (
        "train_s",
        "train_images_per_s",
        "train_peak_memory_mb",
        "inference_s",
        "images_per_s",
        "inference_peak_memory_mb",
    ):
        assert metrics["timings"][key] > 0, key
    environment = json.loads((folder / "environment.json").read_text())
    assert environment["device"] and environment["packages"]["torch"]
    patchcore = Path(results.loc[results["method"] == "patchcore", "folder"].iloc[0])
    plan = json.loads((patchcore / "fit_stats.json").read_text())  # the memory bank's plan, recorded
    assert plan["passes"] == 1 and plan["candidates"] == 6 * 16 and plan["memory_bank"] == int(0.1 * 6 * 16)


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


@pytest.mark.slow
def test_rerun_skips_finished_runs(mini_sweep, tmp_path):
    out = copy_sweep(mini_sweep, tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/seed-*/model.pt")}
    outcomes = run_sweep(mini_config(out), progress=False)
    assert {o.status for o in outcomes} == {"skipped"}
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/*/seed-*/model.pt")}


@pytest.mark.slow
def test_resume_after_a_crash_redoes_only_the_interrupted_run(mini_sweep, tmp_path, monkeypatch):
    out = copy_sweep(mini_sweep, tmp_path)
    victim = out / "synth-oct" / "rd4ad" / "seed-1"
    shutil.rmtree(victim)
    calls = []
    from medrecontrast.models import rd4ad

    real_fit = rd4ad.RD4AD.fit

    def crash_mid_training(self, *args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt  # Ctrl-C (or a kill) in the middle of this run

    monkeypatch.setattr(rd4ad.RD4AD, "fit", crash_mid_training)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(mini_config(out), progress=False)
    assert json.loads((victim / "status.json").read_text())["status"] == "interrupted"  # recorded (issue 23 item 7)
    assert not list((out / ".claims").iterdir()), "the interrupted process must release its claim"
    assert "synth-oct" not in set(
        collect_results(out).query("status == 'finished' and method == 'rd4ad' and seed == 1")["task"]
    )
    monkeypatch.setattr(rd4ad.RD4AD, "fit", real_fit)
    with pytest.raises(UserInputError, match="pass resume=True"):
        run_sweep(mini_config(out), progress=False)
    outcomes = run_sweep(mini_config(out), resume=True, progress=False)
    assert [o.key for o in outcomes if o.status == "finished"] == ["synth-oct__rd4ad__seed-1"]
    assert sum(o.status == "skipped" for o in outcomes) == 7
    assert (collect_results(out)["status"] == "finished").all()


@pytest.mark.slow
def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path, monkeypatch):
    from medrecontrast.models import patchcore

    def broken_fit(self, *args, **kwargs):
        if self.config.seed == 1:
            raise RuntimeError("out of memory (simulated)")
        return real(self, *args, **kwargs)

    real = patchcore.PatchCore.fit
    monkeypatch.setattr(patchcore.PatchCore, "fit", broken_fit)
    config = mini_config(tmp_path / "runs", tasks=["synth-fundus"], methods=["patchcore"])
    outcomes = run_sweep(config, progress=False)
    assert [o.status for o in outcomes] == ["finished", "failed"] and "simulated" in outcomes[1].error
    status = json.loads((tmp_path / "runs" / "synth-fundus" / "patchcore" / "seed-1" / "status.json").read_text())
    assert status["status"] == "failed" and "simulated" in status["error"] and "Traceback" in status["traceback"]
    readme = build_report(tmp_path / "runs", tmp_path / "report").read_text()
    assert "failed: synth-fundus/patchcore/seed 1" in readme
    monkeypatch.setattr(patchcore.PatchCore, "fit", real)
    outcomes = run_sweep(config, resume=True, progress=False)
    assert [o.status for o in outcomes] == ["skipped", "finished"]


@pytest.mark.slow
def test_claims_keep_two_processes_off_the_same_run(tmp_path):
    first, second = Claim(tmp_path, "run"), Claim(tmp_path, "run")
    assert first.acquire() and not second.acquire()
    first.release()
    assert second.acquire()
    second.release()
    # A claim left by a process that died (kill -9) is taken over.
    sleeper = subprocess.Popen([sys.executable, "-c", "pass"])
    sleeper.wait()
    (tmp_path / "run").write_text(json.dumps({"host": os.uname().nodename, "pid": sleeper.pid}))
    assert Claim(tmp_path, "run").acquire()


@pytest.mark.slow
def test_a_run_held_by_another_process_is_skipped_not_duplicated(mini_sweep, tmp_path):
    out = copy_sweep(mini_sweep, tmp_path)
    shutil.rmtree(out / "synth-fundus" / "patchcore" / "seed-0")
    (out / ".claims").mkdir(exist_ok=True)
    (out / ".claims" / "synth-fundus__patchcore__seed-0").write_text(
        json.dumps({"host": os.uname().nodename, "pid": os.getppid()})
    )
    outcomes = run_sweep(mini_config(out), progress=False)
    busy = [o for o in outcomes if o.status == "busy"]
    assert [o.key for o in busy] == ["synth-fundus__patchcore__seed-0"]
    assert not (out / "synth-fundus" / "patchcore" / "seed-0").exists()


def test_bad_input_is_refused_before_any_training(tmp_path):
    out = tmp_path / "runs"
    with pytest.raises(UserInputError, match="unknown task 'nope'"):
        plan_sweep(mini_config(out, tasks=["nope"]))
    with pytest.raises(UserInputError, match="unknown method 'gan'"):
        plan_sweep(mini_config(out, methods=["gan"]))
    with pytest.raises(UserInputError, match="unknown option.*itres"):
        plan_sweep(mini_config(out, method={"rd4ad": {"itres": 3}}))
    with pytest.raises(UserInputError, match="nowhere does not exist"):
        plan_sweep(mini_config(out, tasks=["aptos"], data_root=str(tmp_path / "nowhere"), task={}))
    with pytest.raises(UserInputError, match="aptos") as missing:
        plan_sweep(mini_config(out, tasks=["aptos"], data_root=str(tmp_path), task={}))
    print(missing.value)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserInputError, match="not a sweep folder"):
        run_sweep(mini_config(tmp_path / "other"))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "sweep.json").write_text(json.dumps({"format": 0}))
    with pytest.raises(UserInputError, match="incompatible medrecontrast version"):
        run_sweep(mini_config(tmp_path / "old"))
    with pytest.raises(UserInputError, match="incompatible"):
        collect_results(tmp_path / "old")


def test_changed_configuration_in_the_same_folder_is_refused(mini_sweep, tmp_path):
    out = copy_sweep(mini_sweep, tmp_path)
    changed = mini_config(out, method={"rd4ad": {"iters": 4, "batch_size": 4}, "patchcore": {"embed_dim": 32}})
    with pytest.raises(UserInputError, match="another configuration.*detector"):
        plan_sweep(changed)


def test_toml_config_with_overrides_and_line_numbers(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        'tasks = ["synth-oct"]\nseeds = [3]\n[options]\nholdout = 0.2\n[method.rd4ad]\niters = '
        "7\n[task.synth-oct]\niters = 9\n"
        "[task.synth-oct.method.rd4ad]\nbatch_size = 2\n[task.synth-oct.data]\nsize = 32\n"
    )
    config = load_sweep_config(path, seeds=[0, 1]).resolved()
    assert (
        config.seeds == [0, 1] and config.profile == "demo" and config.tasks == ["synth-oct"]
    )  # built-in task: demo (issue 11 item 16)
    assert config.overrides("synth-oct", "rd4ad") == {"holdout": 0.2, "iters": 9, "batch_size": 2}
    assert config.overrides("synth-oct", "patchcore") == {"holdout": 0.2}  # iters is not a PatchCore option
    assert config.task_options("synth-oct") == {"size": 32}
    path.write_text('tasks = ["synth-oct"]\nseedz = [1]\n')
    with pytest.raises(UserInputError, match="line 2: unknown key 'seedz'"):
        load_sweep_config(path)
    path.write_text('tasks = ["synth-oct"]\nseeds = = [1]\n')
    with pytest.raises(UserInputError, match="cannot parse .*line 2"):
        load_sweep_config(path)
    path.write_text("seeds = [0]\n\n[method.rd4ad]\nlr = 3\n")
    with pytest.raises(UserInputError, match="line 4: unknown option 'lr' in \\[method.rd4ad\\]"):
        load_sweep_config(path)
    path.write_text('seeds = "0"\n')
    with pytest.raises(UserInputError, match="line 1: 'seeds' must be a list of integers"):
        load_sweep_config(path)


def test_defaults_run_the_built_in_tasks_with_the_demo_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = SweepConfig().resolved()
    assert (
        config.tasks == ["synth-fundus", "synth-oct", "synth-skin"]
        and config.profile == "demo"
        and config.seeds == [0, 1]
    )
    assert config.out == str(tmp_path / "runs" / "demo") and config.report == str(tmp_path / "reports" / "demo")
    assert SweepConfig(tasks=["aptos"]).resolved().profile == "paper"
    # issue 11 item 16: the default profile follows the tasks; a mix must name one
    assert SweepConfig(tasks=["synth-oct"]).resolved().profile == "demo"
    assert SweepConfig(tasks=["synth-oct"], profile="paper").resolved().profile == "paper"
    with pytest.raises(UserInputError, match="mix built-in tasks .* name one as profile="):
        SweepConfig(tasks=["synth-oct", "aptos"]).resolved()


@pytest.mark.slow
def test_ray_executor_writes_the_same_run_folders(tmp_path):
    pytest.importorskip("ray")
    config = mini_config(tmp_path / "runs", tasks=["synth-fundus"], methods=["patchcore"], executor="ray")
    outcomes = run_sweep(config, progress=False)
    assert sorted(o.status for o in outcomes) == ["finished", "finished"]
    results = collect_results(tmp_path / "runs")
    assert list(results["seed"]) == [0, 1] and (results["status"] == "finished").all()
    local = run_sweep(mini_config(tmp_path / "local", tasks=["synth-fundus"], methods=["patchcore"]), progress=False)
    assert [o.metrics["image_auroc"] for o in local] == list(results["image_auroc"])


@pytest.mark.slow
def test_ray_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UserInputError, match=r"pip install 'medrecontrast\[ray\]'"):
        run_sweep(
            mini_config(tmp_path / "runs", tasks=["synth-fundus"], methods=["patchcore"], seeds=[0], executor="ray"),
            progress=False,
        )


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


def test_toml_sections_resolve_aliases_and_families_and_typos_are_refused(tmp_path):
    """[task.oct2017] for `oct`, [task.mvtec] for mvtec:* and [task.OCT] were silently ignored; typos too."""
    config = SweepConfig(
        tasks=["oct", "mvtec:bottle", "mvtec:grid"],
        methods=["rd4ad"],
        profile="demo",
        out=str(tmp_path / "o"),
        task={
            "oct2017": {"iters": 5},
            "mvtec": {"iters": 7, "method": {"rd4ad": {"batch_size": 2}}},
            "mvtec:grid": {"iters": 9},
        },
    ).resolved()
    assert config.overrides("oct", "rd4ad")["iters"] == 5
    assert config.overrides("mvtec:bottle", "rd4ad") == {"iters": 7, "batch_size": 2}
    assert config.overrides("mvtec:grid", "rd4ad") == {
        "iters": 9,
        "batch_size": 2,
    }  # the class's own section wins over its family's
    assert SweepConfig(tasks=["oct"], task={"OCT": {"iters": 3}}).resolved().overrides("oct", "rd4ad")["iters"] == 3
    with pytest.raises(
        UserInputError, match=r"\[task.synth-fundsu\] names no task.*Did you mean \[task.synth-fundus\]"
    ):
        SweepConfig(tasks=["synth-fundus"], task={"synth-fundsu": {"iters": 3}}).resolved()
    with pytest.raises(UserInputError, match=r"\[method.rd4da\].*Did you mean 'rd4ad'"):
        SweepConfig(tasks=["synth-fundus"], methods=["rd4ad"], method={"rd4da": {"iters": 3}}).resolved()


def _contend(claims, start, done, winners):
    claim = Claim(claims, "run")
    start.wait()
    won = claim.acquire()
    if won:
        with winners.get_lock():
            winners.value += 1
    done.wait()  # nobody releases before every competitor has tried
    if won:
        claim.release()


def test_many_processes_released_at_once_never_both_hold_a_claim(tmp_path):
    """The old claim was created empty and written afterwards: a competitor reading the empty file took
    it over (two live holders in 41 of 100 trials with four processes). Now: exactly one, every trial."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    processes, trials = 6, 15
    for trial in range(trials):
        start, done, winners = context.Barrier(processes), context.Barrier(processes), context.Value("i", 0)
        workers = [
            context.Process(target=_contend, args=(tmp_path / str(trial), start, done, winners))
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert all(w.exitcode == 0 for w in workers) and winners.value == 1, f"trial {trial}: {winners.value} holders"


def test_a_claim_whose_heartbeat_stopped_expires(tmp_path, monkeypatch):
    """A claim left by a dead node of a cluster (another host, no heartbeat for the TTL) is taken over;
    a fresh one from another host is respected, and the message says how to clear it."""
    import time

    (tmp_path / "run").write_text(json.dumps({"host": "node-7", "pid": 1, "heartbeat": time.time()}))
    claim = Claim(tmp_path, "run")
    assert not claim.acquire() and "delete" in claim.describe() and "node-7" in claim.describe()
    (tmp_path / "run").write_text(json.dumps({"host": "node-7", "pid": 1, "heartbeat": time.time() - 3600}))
    assert claim.acquire()
    claim.release()
    monkeypatch.setenv("MEDRECONTRAST_CLAIM_TTL", "soon")
    (tmp_path / "run").write_text(json.dumps({"host": "node-7", "pid": 1, "heartbeat": time.time()}))
    with pytest.raises(UserInputError, match="CLAIM_TTL"):
        Claim(tmp_path, "run").acquire()


@pytest.mark.parametrize(
    "section,line,message",
    [
        ("[method.rd4ad]\niters = -5", "iters = -5", "iters must be a positive integer"),
        ("[method.rd4ad]\niters = 0", "iters = 0", "iters must be a positive integer"),
        ('[method.rd4ad]\niters = "10"', 'iters = "10"', "iters must be an integer"),
        ("[method.patchcore]\ncoreset_ratio = 2.0", "coreset_ratio = 2.0", "coreset_ratio must be in"),
        ("[method.rd4ad]\nbatch_size = 0", "batch_size = 0", "batch_size must be a positive integer"),
        ("[method.patchcore]\nembed_dim = 0", "embed_dim = 0", "embed_dim must be a positive integer"),
        ('[method.rd4ad]\nimage_score = "p95"', 'image_score = "p95"', "image_score must be one of"),
        ('[method.rd4ad]\namp = "fp8"', 'amp = "fp8"', "amp must be"),
        ('[method.patchcore]\nknn = "annoy"', 'knn = "annoy"', "knn must be"),
        ('[method.patchcore]\ndevice = "tpu"', 'device = "tpu"', "device must be"),
        ("[options]\nimage_size = 0", "image_size = 0", "image_size must be a positive integer"),
    ],
)
def test_every_option_is_checked_when_the_sweep_is_planned_with_its_toml_line(tmp_path, section, line, message):
    """Values out of range once gave a run marked finished with an untrained model, or failed only when
    the run started; now planning refuses them, naming the key and its line in the file."""
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        f'tasks = ["synth-oct"]\nmethods = ["rd4ad", "patchcore"]\nprofile = "demo"\nseeds = [0]\n{section}\n'
    )
    number = toml.read_text().splitlines().index(line) + 1
    with pytest.raises(UserInputError, match=message) as error:
        plan_sweep(load_sweep_config(toml, out=str(tmp_path / "runs")))
    assert f"line {number}" in str(error.value)
    assert not (tmp_path / "runs").exists()


def test_a_run_held_by_a_live_process_needs_no_resume(mini_sweep, tmp_path):
    """A second bench on a live sweep was told the live run was "unfinished or failed" (pass --resume)."""
    import time

    out = copy_sweep(mini_sweep, tmp_path)
    folder = out / "synth-oct" / "rd4ad" / "seed-1"
    (folder / "status.json").write_text(json.dumps({"status": "running"}))
    (out / ".claims").mkdir(exist_ok=True)
    (out / ".claims" / "synth-oct__rd4ad__seed-1").write_text(
        json.dumps({"host": "node-7", "pid": 1, "heartbeat": time.time()})
    )
    specs = plan_sweep(mini_config(out))  # no --resume needed: that run is someone else's, and is skipped
    assert len(specs) == 8


@pytest.mark.slow
def test_force_redoes_runs_after_their_settings_changed(tmp_path, monkeypatch):
    """After a NaN, fixing the learning rate and --resume was refused ("another configuration"); the failure
    message advises --resume, so --resume now redoes a failed run with the corrected settings (issue 37 item 7),
    and --force redoes any run from scratch."""
    from medrecontrast.models import rd4ad

    def nan(self, *args, **kwargs):
        raise RuntimeError("the loss became nan (simulated)")

    real = rd4ad.RD4AD.fit
    monkeypatch.setattr(rd4ad.RD4AD, "fit", nan)
    out = tmp_path / "runs"
    config = mini_config(out, tasks=["synth-oct"], methods=["rd4ad"], seeds=[0])
    assert [o.status for o in run_sweep(config, progress=False)] == ["failed"]
    monkeypatch.setattr(rd4ad.RD4AD, "fit", real)
    fixed = mini_config(
        out,
        tasks=["synth-oct"],
        methods=["rd4ad"],
        seeds=[0],
        method={"rd4ad": {"iters": 3, "batch_size": 4, "lr_decoder": 0.001}},
    )
    assert [o.status for o in run_sweep(fixed, resume=True, progress=False)] == ["finished"]
    assert (
        json.loads((out / "synth-oct" / "rd4ad" / "seed-0" / "config.json").read_text())["detector"]["lr_decoder"]
        == 0.001
    )
    again = mini_config(out, tasks=["synth-oct"], methods=["rd4ad"], seeds=[0])  # a finished run: --force only
    with pytest.raises(UserInputError, match="force=True"):
        run_sweep(again, resume=True, progress=False)
    assert [o.status for o in run_sweep(fixed, force=True, progress=False)] == ["finished"]
    assert (
        json.loads((out / "synth-oct" / "rd4ad" / "seed-0" / "config.json").read_text())["detector"]["lr_decoder"]
        == 0.001
    )


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


@pytest.mark.slow
def test_a_full_disk_leaves_a_failed_status_no_partials_and_an_honest_count(mini_sweep, tmp_path, monkeypatch):
    """Issue 11 item 9: after a disk-full error the status says failed (written in place once the atomic
    write fails), stale temporaries of dead processes are removed when the run restarts, and the report
    counts planned, finished, failed and unknown runs (a planned run with no files is not lost)."""
    import errno

    import medrecontrast.run.folder as folder_module
    import medrecontrast.run.lifecycle as runs_module
    from medrecontrast.run import train_run
    from medrecontrast.tasks import get_task

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_write_json = folder_module.write_json  # every run-folder file is written by RunFolder

    def write_json(path, payload):
        if payload.get("status") == "failed":
            full()
        return real_write_json(path, payload)

    monkeypatch.setattr(runs_module, "_train_and_evaluate", full)
    monkeypatch.setattr(folder_module, "write_json", write_json)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        train_run(
            get_task("synth-oct", **TINY_DATA),
            "patchcore",
            out,
            overrides={"image_size": 32, "embed_dim": 16},
            progress=False,
        )
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "No space left" in status["error"]
    monkeypatch.undo()
    stale = out / ".checkpoint.pt.999999999.partial"  # a process that died mid-write
    stale.write_bytes(b"x" * 1000)
    train_run(
        get_task("synth-oct", **TINY_DATA),
        "patchcore",
        out,
        overrides={"image_size": 32, "embed_dim": 16},
        resume=True,
        progress=False,
    )
    assert not stale.exists()

    runs = copy_sweep(mini_sweep, tmp_path)
    shutil.rmtree(next(runs.glob("synth-oct/patchcore/seed-1")))  # as if killed before writing anything
    failed = next(runs.glob("synth-oct/rd4ad/seed-0"))
    (failed / "status.json").write_text(json.dumps({"status": "failed", "error": "OSError: No space left on device"}))
    results = collect_results(runs)
    assert len(results) == 8 and (results["status"] == "unknown").sum() == 1
    text = build_report(runs, tmp_path / "report").read_text()
    assert "8 planned: 6 finished, 1 failed, 1 unknown" in text


def test_missing_weights_are_one_error_before_the_first_run(tmp_path, monkeypatch):
    """Issue 11 item 16: a paper-profile sweep whose ImageNet weights cannot be had fails at planning,
    once, naming --weights; no run folder is written."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.setattr(
        "torch.hub.load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("network unreachable"))
    )
    options = {"image_size": 32, "crop_size": 32, "holdout": 0.25}
    config = mini_config(
        tmp_path / "runs", tasks=["synth-oct"], methods=["patchcore"], profile="paper", seeds=[0, 1, 2], options=options
    )
    with pytest.raises(UserInputError, match="cannot load ImageNet weights for wide_resnet50_2.*weights=PATH"):
        run_sweep(config, progress=False)
    assert not list((tmp_path / "runs").glob("*/*/seed-*"))
    with_file = mini_config(
        tmp_path / "runs",
        tasks=["synth-oct"],
        methods=["patchcore"],
        profile="paper",
        weights=str(tmp_path / "w.pt"),
        options=options,
    )
    with pytest.raises(UserInputError, match="weights file .* does not exist"):
        run_sweep(with_file, progress=False)


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


def test_output_folders_inside_the_data_or_on_each_other_are_refused_at_planning(tmp_path):
    """Issue 37 item 6, failed before: --out/--report inside a task's data were accepted (the report's PNGs became
    test images of the next run), and --report equal to --out failed only after the whole sweep had trained."""
    data = layouts.folder(tmp_path / "scans", train=3, size=16)

    def plan(out, report):
        config = SweepConfig(
            tasks=[f"folder:{data}"], methods=["patchcore"], seeds=[0], profile="demo", out=str(out), report=str(report)
        )
        return plan_sweep(config)

    with pytest.raises(UserInputError, match="overlap"):
        plan(tmp_path / "runs", tmp_path / "runs")
    with pytest.raises(UserInputError, match="--report .* is inside the data"):
        plan(tmp_path / "runs", data / "test" / "report")
    with pytest.raises(UserInputError, match="--out .* holds the data"):
        plan(tmp_path, tmp_path.parent / f"{tmp_path.name}-report")
    assert len(plan(tmp_path / "runs", tmp_path / "report")) == 1
    assert not (tmp_path / "runs").exists() and not (data / "test" / "report").exists()


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
