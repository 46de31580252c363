"""Issue 23: trust at first contact and at hour three (bounded disk use, schedulers, dry runs)."""

from pathlib import Path

import pytest
import torch

from medrecontrast.run import train_run
from medrecontrast.tasks import get_task

TINY = dict(size=32, n_train=6, n_test_normal=3, n_test_abnormal=3)


@pytest.mark.slow
def test_a_finished_run_keeps_model_pt_only_and_checkpoints_never_pile_up(tmp_path, monkeypatch):
    """Item 6: the checkpoint a finished run no longer needs is deleted (keep_checkpoints keeps it), and while one
    is written there is at most the previous full copy beside the one being written."""
    seen = []
    save = torch.save

    def spy(obj, target=None, *args, **kwargs):
        if target is None:
            return save(obj, *args, **kwargs)  # MONAI's cache passes f= by keyword
        name = Path(str(getattr(target, "name", target)))  # the suite writes through an open temporary file
        if "checkpoint" in name.name:
            seen.append(sorted(p.name for p in name.parent.iterdir() if "checkpoint" in p.name))
        return save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    task = get_task("synth-fundus", **TINY)
    train_run(
        task, "rd4ad", tmp_path / "run", overrides={"iters": 4, "checkpoint_every": 1}, progress=False, profile="tiny"
    )
    assert max(len(names) for names in seen) <= 2 and any(len(names) == 2 for names in seen)
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "model.pt").is_file()
    train_run(
        task,
        "rd4ad",
        tmp_path / "kept",
        overrides={"iters": 2, "keep_checkpoints": True},
        progress=False,
        profile="tiny",
    )
    assert (tmp_path / "kept" / "checkpoint.pt").is_file()


def test_a_sweep_that_cannot_fit_the_disk_is_refused_at_planning_with_the_numbers(tmp_path, monkeypatch):
    """Item 6: the disk a sweep needs is estimated from each method's network (model.pt, and a checkpoint and its
    replacement while a run trains) and checked against the free space before anything trains."""
    import shutil

    import pytest

    from medrecontrast.bench import SweepConfig, run_sweep
    from medrecontrast.errors import UserInputError

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=300 * 2**20))
    config = SweepConfig(
        tasks=["synth-oct"],
        methods=["recontrast", "patchcore"],
        seeds=[0, 1],
        out=str(tmp_path / "runs"),
        options={"image_size": 32, "iters": 2},
        profile="tiny",
    )
    with pytest.raises(UserInputError, match=r"needs about 6\d\d MiB .* 4 run\(s\) keep .* 300 MiB are free"):
        run_sweep(config, progress=False)
    assert not list((tmp_path / "runs").glob("*/*/seed-*"))


@pytest.mark.slow
def test_the_estimate_is_what_a_run_writes(tmp_path):
    """The estimate behind the check is the size of the files a run writes (resnet18 ReContrast: model.pt and
    one checkpoint, within 1 %)."""
    from medrecontrast.models.base import detector_class
    from medrecontrast.run import resolve_run_config

    task = get_task("synth-fundus", **TINY)
    train_run(
        task,
        "recontrast",
        tmp_path / "run",
        overrides={"iters": 1, "keep_checkpoints": True},
        progress=False,
        profile="tiny",
    )
    config = resolve_run_config(task, "recontrast", 0, "tiny", layers=[("t", {"iters": 1})])
    estimate = detector_class("recontrast").storage_estimate(config.method_config(), train_images=6, input_size=64)
    for name, key in (("model.pt", "model"), ("checkpoint.pt", "checkpoint")):
        assert abs((tmp_path / "run" / name).stat().st_size / estimate[key] - 1) < 0.01, name


def _start_and_terminate(command: list[str], cwd: Path) -> tuple[int, str]:
    """Start ``command``, send SIGTERM once its first training iteration is printed, return (exit code, stderr)."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-m", "medrecontrast", *command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "iteration 2/" in line:
            process.send_signal(signal.SIGTERM)
            break
    rest, _ = process.communicate(timeout=300)
    return process.returncode, "".join(lines) + rest


@pytest.mark.slow
def test_sigterm_stops_training_with_a_checkpoint_a_record_and_the_command_that_continues(tmp_path):
    """Item 7: SLURM's and Kubernetes' SIGTERM used to end a run silently, leaving it `running`. Now the iteration
    in progress ends, a checkpoint is written, status.json says `interrupted`, the command exits 143 and prints the
    command that continues; that command finishes the run from the checkpoint."""
    import json

    from medrecontrast.engine import load_checkpoint

    run = tmp_path / "run"
    command = [
        "train",
        "--profile",
        "tiny",
        "--task",
        "synth-oct",
        "--method",
        "rd4ad",
        "--iters",
        "40",
        "--out",
        str(run),
        "-v",
    ]
    code, output = _start_and_terminate(command, tmp_path)
    assert code == 143, output[-2000:]
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    stopped_at = load_checkpoint(run / "checkpoint.pt", {})["iteration"]
    assert 2 <= stopped_at < 40 and f"after iteration {stopped_at}/40" in output
    assert "interrupted by SIGTERM" in output and "--resume" in output
    again = output.split("continue with: ", 1)[1].split()
    assert again[0] == "medrecontrast" and again[-1] == "--resume"
    import subprocess
    import sys

    finished = subprocess.run(
        [sys.executable, "-m", "medrecontrast", *again[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_sigterm_to_a_sweep_is_logged_and_the_run_is_resumable(tmp_path):
    import json

    (tmp_path / "sweep.toml").write_text(
        'tasks = ["synth-oct"]\nmethods = ["rd4ad"]\nseeds = [0]\nprofile = "tiny"\n[options]\niters = 40\n'
    )
    out = tmp_path / "runs"
    command = ["bench", "--config", "sweep.toml", "--out", str(out), "--verbose", "--no-report"]
    code, output = _start_and_terminate(command, tmp_path)
    assert code == 143, output[-2000:]
    log = (out / "bench.log").read_text()
    assert "interrupted by SIGTERM" in log and "--resume" in log
    status = json.loads((out / "synth-oct" / "rd4ad" / "seed-0" / "status.json").read_text())
    assert status["status"] == "interrupted"


def test_dry_run_prints_the_checked_plan_and_writes_nothing(tmp_path):
    """Item 9: `bench --dry-run` plans and checks everything, prints each run's settings, disk and expected time,
    and exits 0 without writing the sweep folder."""
    from typer.testing import CliRunner

    from medrecontrast.cli import app

    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--tasks",
            "synth-oct",
            "--methods",
            "rd4ad",
            "--seeds",
            "0",
            "--seeds",
            "1",
            "--out",
            str(out),
            "--profile",
            "tiny",
            "--dry-run",
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "iters=80" in result.output and "image_size=64" in result.output and "to do" in result.output
    assert "2 run(s), 2 to do; disk: about 139 MiB kept" in result.output and "Nothing was run" in result.output
    assert not out.exists()
    bad = CliRunner().invoke(app, ["bench", "--tasks", "synth-oct", "--holdout", "2", "--out", str(out), "--dry-run"])
    assert bad.exit_code != 0 and "holdout" in bad.output and not out.exists()


@pytest.mark.slow
def test_the_report_of_a_partial_sweep_says_what_each_run_is(tmp_path, monkeypatch):
    """Item 2: unstarted runs were counted as `holdout 0` ("all training normals train"), the profile line said
    `32.0 px`, the text linked a comparisons.md that was not written, the title was the folder's name; with no
    finished run the error column said `nan`, a killed run `running`, and the text "fix the cause" for runs that
    had no error."""
    import json

    from medrecontrast.bench import SweepConfig, build_report, executors, run_sweep
    from medrecontrast.bench.executors import Outcome

    original = executors.execute_run

    def first_seed_only(spec, progress=True):
        if spec.seed == 0 and spec.method == "rd4ad":
            return original(spec, progress=progress)
        return Outcome(spec.key, spec.task, spec.method, spec.seed, status="skipped")

    monkeypatch.setattr(executors, "execute_run", first_seed_only)
    out = tmp_path / "runs"
    config = SweepConfig(
        name="my-sweep",
        tasks=["synth-oct"],
        methods=["rd4ad", "patchcore"],
        seeds=[0, 1],
        out=str(out),
        options={"image_size": 32, "iters": 2, "holdout": 0.25},
        profile="tiny",
    )
    run_sweep(config, progress=False)
    text = build_report(out, tmp_path / "report").read_text()
    assert "# Benchmark report: my-sweep" in text
    assert "25% of training normals held out for the label-free threshold: 1 run(s) (rd4ad)" in text
    assert "not started: 3 run(s)" in text and "all training normals train" not in text
    assert "32 px" in text and "32.0 px" not in text
    assert "[`comparisons.md`](comparisons.md)" not in text and not (tmp_path / "report" / "comparisons.md").exists()

    # no finished run: one killed (status running, nobody holds it), one never started
    empty = tmp_path / "empty"
    monkeypatch.setattr(
        executors,
        "execute_run",
        lambda spec, progress=True: Outcome(spec.key, spec.task, spec.method, spec.seed, status="skipped"),
    )
    run_sweep(
        SweepConfig(
            name="nothing-yet",
            tasks=["synth-oct"],
            methods=["rd4ad"],
            seeds=[0, 1],
            out=str(empty),
            options={"image_size": 32, "iters": 2},
            profile="tiny",
        ),
        progress=False,
    )
    killed = empty / "synth-oct" / "rd4ad" / "seed-0"
    killed.mkdir(parents=True)
    (killed / "status.json").write_text(json.dumps({"status": "running", "started": "2026-12-02T10:00:00"}))
    from medrecontrast.run import resolve_run_config

    config = resolve_run_config("synth-oct", "rd4ad", 0, "tiny", layers=[("o", {"image_size": 32, "iters": 2})])
    (killed / "config.json").write_text(json.dumps(config.to_json()))
    text = build_report(empty, tmp_path / "empty-report").read_text()
    assert "# Benchmark report: nothing-yet" in text and "nan" not in text and "fix the cause" not in text
    assert "| synth-oct | rd4ad | 0 | stopped without a result (killed) |" in text
    assert "| synth-oct | rd4ad | 1 | not started |" in text


def test_every_long_stage_reports_progress(capsys):
    """Item 8: PatchCore's fit ignored `progress`, scoring a test set printed nothing (silent minutes on OCT2017- or
    ISIC-sized sets)."""
    from medrecontrast.models import build_detector

    images = [{"image": torch.rand(3, 32, 32), "label": i % 2, "id": str(i)} for i in range(12)]
    detector = build_detector("patchcore", backbone="resnet18", pretrained=False, device="cpu", embed_dim=32)
    detector.fit(images, progress=False)
    assert capsys.readouterr().err == ""
    detector.fit(images, progress=1)
    fitted = capsys.readouterr().err
    assert "patch features: 12/12" in fitted and "memory bank:" in fitted
    detector.predict(images, batch_size=4, progress=1)
    scored = capsys.readouterr().err
    assert "scoring images: 4/12" in scored and "scoring images: 12/12" in scored
    detector.predict(images)
    assert capsys.readouterr().err == ""  # the API is quiet unless asked


def test_the_eta_counts_each_method_at_its_own_pace_and_reads_in_hours():
    """Item 8: the first ETA counted every remaining run at the first run's method's duration (2x too high on the
    demo) and printed `389.8 min` instead of `6 h 30 min`."""
    from types import SimpleNamespace

    from medrecontrast.bench.executors import duration_text, eta_text

    remaining = [SimpleNamespace(method=m) for m in ("rd4ad", "rd4ad", "patchcore")]
    assert eta_text(remaining, {"rd4ad": [60.0]}) == "ETA ~2 min for 2 run(s), + 1 run(s) of methods not timed yet"
    assert eta_text(remaining, {"rd4ad": [60.0], "patchcore": [30.0]}) == "ETA ~2 min"
    assert duration_text(389.8 * 60) == "6 h 30 min" and duration_text(42) == "42 s" and duration_text(720) == "12 min"


@pytest.mark.slow
def test_a_sweep_prints_whole_lines_one_summary_for_finished_runs_and_ends_with_its_answer(tmp_path):
    """Item 8: piped output wrapped sweep lines at 80 columns; a rerun printed one `already finished` line per
    run; a sweep now ends with one answer line per task and the report's path."""
    import subprocess
    import sys

    (tmp_path / "sweep.toml").write_text(
        'tasks = ["synth-oct"]\nmethods = ["rd4ad", "patchcore"]\nseeds = [0]\nprofile = "tiny"\n'
        "[options]\nimage_size = 32\niters = 2\n"
    )
    out = tmp_path / ("a-folder-name-long-enough-to-pass-eighty-columns-" * 2)
    command = [sys.executable, "-m", "medrecontrast", "bench", "--config", "sweep.toml", "--out", str(out)]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    text = first.stdout + first.stderr
    assert any(line.startswith("synth-oct: ") and " best, image AUROC " in line for line in text.splitlines())
    assert "report: " in first.stdout
    assert any(str(out) in line and line.startswith("sweep ") for line in text.splitlines())  # one line, not wrapped
    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    repeated = again.stdout + again.stderr
    assert repeated.count("already finished") == 1 and "2 run(s) already finished" in repeated


QUICK = (
    "import sys\nfrom medrecontrast.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n"
    "    print('EXIT', exc.code, 'torch' in sys.modules)\n"
)


@pytest.mark.slow
def test_the_mistakes_people_make_are_answered_before_torch_is_imported(tmp_path):
    """Item 5: a misspelled task or method, `--holdout 2`, a missing run or sweep folder and a report folder that is
    not the suite's imported torch (and MONAI, the models) before saying so: 30-100x slower than a flag error. Each is
    now refused first (same messages), and no plan line precedes an invalid plan."""
    import subprocess
    import sys

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's own file")
    cases = {
        ("bench", "--tasks", "synth-ocd"): "Did you mean 'synth-oct'",
        ("bench", "--methods", "rd4da", "--tasks", "synth-oct"): "Did you mean 'rd4ad'",
        ("bench", "--tasks", "synth-oct", "--holdout", "2"): "holdout must be a fraction in [0, 1)",
        ("bench", "--tasks", "synth-oct", "--report", str(mine)): "is not empty and was not written by medrecontrast",
        ("train", "--task", "synth-oct", "--method", "gan"): "unknown method 'gan'",
        ("evaluate", "--run", "/nonexistent"): "is not a run folder",
        ("predict", "--run", "/nonexistent", "x.png"): "is not a run folder",
        ("tables", "/nonexistent"): "is not a sweep folder",
        ("report", "/nonexistent"): "is not a sweep folder",
    }
    for args, message in cases.items():
        done = subprocess.run(
            [sys.executable, "-c", QUICK, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        output = done.stdout + done.stderr
        assert message in output, (args, output)
        assert "EXIT 2 False" in done.stdout, (args, output)  # a user error, and torch never imported
        assert "sweep " not in done.stdout.split("error")[0], (args, output)  # no plan line before the error
