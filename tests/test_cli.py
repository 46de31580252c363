"""The command line: help with examples, tables, JSON, exit codes."""

import errno
import json
import os
import subprocess
import sys

import layouts
import pandas as pd
import pytest
from typer.testing import CliRunner

from medrecontrast.cli import app, expand_variadic

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["tasks"],
        ["data"],
        ["data", "check"],
        ["data", "prepare"],
        ["bench"],
        ["tables"],
        ["figures"],
        ["report"],
        ["train"],
        ["evaluate"],
    ],
)
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "medrecontrast" in result.output


def test_tasks_table():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0
    for name in (
        "aptos",
        "oct2017",
        "isic:test",
        "mvtec:<class>",
        "visa:<class>",
        "folder:<path>",
        "synth-fundus",
        "synth-oct",
        "synth-skin",
    ):
        assert name in result.output


def test_data_check_json_counts(tmp_path):
    layouts.oct2017(tmp_path)
    result = runner.invoke(app, ["data", "check", "oct", "--data-root", str(tmp_path), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (
        report["task"] == "oct" and report["train"] == {"normal": 5} and report["test"] == {"normal": 2, "abnormal": 6}
    )
    assert report["categories"]["test"]["CNV"] == 2 and report["ok"] and report["problems"] == []


def test_data_check_table_uses_env_data_root(tmp_path, monkeypatch):
    layouts.mvtec(tmp_path)
    monkeypatch.setenv("MEDRECONTRAST_DATA", str(tmp_path))
    result = runner.invoke(app, ["data", "check", "mvtec:bottle", "--deep"])
    assert result.exit_code == 0 and "crack" in result.output and "OK" in result.output


def test_prepare_only_aptos(tmp_path):
    result = runner.invoke(app, ["data", "prepare", "oct", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "only 'aptos'" in result.output


def test_expand_variadic():
    assert expand_variadic(["bench", "--tasks", "a", "b", "c", "--data-root", "x"], ("--tasks",)) == [
        "bench",
        "--tasks",
        "a",
        "--tasks",
        "b",
        "--tasks",
        "c",
        "--data-root",
        "x",
    ]
    assert expand_variadic(["bench", "--tasks", "a", "--tasks", "b"], ("--tasks",)) == [
        "bench",
        "--tasks",
        "a",
        "--tasks",
        "b",
    ]


TINY_TOML = """
methods = ["patchcore"]
seeds = [0]
profile = "tiny"
[method.patchcore]
embed_dim = 32
image_size = 32
[task.synth-oct.data]
size = 32
n_train = 6
n_test_normal = 3
n_test_abnormal = 3
[task.synth-skin.data]
size = 32
n_train = 6
n_test_normal = 3
n_test_abnormal = 3
"""


@pytest.mark.slow
def test_bench_on_a_real_layout_writes_runs_and_report(tmp_path):
    layouts.mvtec(tmp_path)
    (tmp_path / "sweep.toml").write_text(TINY_TOML)
    args = [
        "bench",
        "--tasks",
        "mvtec:bottle",
        "--config",
        str(tmp_path / "sweep.toml"),
        "--data-root",
        str(tmp_path),
        "--out",
        str(tmp_path / "runs" / "bottle"),
        "--report",
        str(tmp_path / "report"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "README.md").is_file() and (
        tmp_path / "report" / "examples_mvtec-bottle.png"
    ).is_file()
    assert "1 finished" in result.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "1 skipped" in again.output
    tables = runner.invoke(app, ["tables", str(tmp_path / "runs" / "bottle")])
    assert tables.exit_code == 0 and "mvtec:bottle" in tables.output and "P-AUROC" in tables.output
    figures = runner.invoke(app, ["figures", str(tmp_path / "runs" / "bottle"), "--report", str(tmp_path / "figs")])
    assert figures.exit_code == 0 and (tmp_path / "figs" / "roc.pdf").is_file()


def test_bench_refuses_broken_files_before_training(tmp_path):
    folder = layouts.mvtec(tmp_path)
    (folder / "train" / "good" / "001.png").write_bytes(b"junk")
    result = runner.invoke(
        app, ["bench", "--tasks", "mvtec:bottle", "--data-root", str(tmp_path), "--out", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2 and "001.png" in result.output and "data check" in result.output
    assert not (tmp_path / "runs").exists()


def test_bench_bad_config_and_names_exit_2(tmp_path):
    (tmp_path / "bad.toml").write_text('seeds = [0]\nexecuter = "ray"\n')
    result = runner.invoke(app, ["bench", "--config", str(tmp_path / "bad.toml")])
    assert result.exit_code == 2 and "line 2: unknown key 'executer'" in result.output
    result = runner.invoke(app, ["bench", "--methods", "gan", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "unknown method 'gan'" in result.output
    result = runner.invoke(app, ["tables", str(tmp_path)])
    assert result.exit_code == 2 and "not a sweep folder" in result.output


@pytest.mark.slow
def test_console_script_bench_with_several_values_per_flag(tmp_path):
    """The main command through the installed console script, with several tasks and seeds after one flag each."""
    env = {**os.environ, "MEDRECONTRAST_CACHE": str(tmp_path / "cache")}
    exe = os.path.join(os.path.dirname(sys.executable), "medrecontrast")
    (tmp_path / "sweep.toml").write_text(TINY_TOML)
    command = [
        exe,
        "bench",
        "--tasks",
        "synth-oct",
        "synth-skin",
        "--seeds",
        "0",
        "1",
        "--config",
        "sweep.toml",
        "--out",
        "runs/mini",
        "--holdout",
        "0",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    results = pd.read_csv(tmp_path / "reports" / "mini" / "results.csv")
    results = results[results["unit"] == "image"]  # synth-oct's runs have a patient-level row each too
    assert sorted(zip(results["task"], results["seed"])) == [
        ("synth-oct", 0),
        ("synth-oct", 1),
        ("synth-skin", 0),
        ("synth-skin", 1),
    ]
    assert set(results["holdout"]) == {0}  # --holdout wins over the tiny profile's 0.15
    assert "all training normals train" in (tmp_path / "reports" / "mini" / "README.md").read_text()
    result = subprocess.run([exe, "data", "check", "nope"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "unknown task 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_methods_lists_each_method_with_its_options_and_tasks_has_json():
    """Issue 11 item 18: a `methods` command and `tasks --json`."""
    result = runner.invoke(app, ["methods", "--json"])
    assert result.exit_code == 0
    methods = json.loads(result.output)
    assert list(methods)[:3] == ["recontrast", "rd4ad", "patchcore"]
    assert methods["rd4ad"]["options"]["epochs"] == 200 and methods["patchcore"]["trains"] is False
    # MedIAnomaly's reconstruction baselines, each with its options and the paper and code it follows
    assert {"ae", "vae", "memae", "aeu"} <= set(methods) and methods["memae"]["options"]["mem_size"] == 25
    assert all("github.com/" in methods[m]["reference"] for m in ("ae", "vae", "memae", "aeu", "recontrast"))
    listing = runner.invoke(app, ["methods"]).output
    assert "coreset_ratio" in listing and "hard_fraction_ramp" in listing  # dinomaly is listed too
    assert "Reference: Cai et al., MedIAnomaly" in listing.replace("\n", " ")
    assert "([options], [method.<name>], [task.<task>.method.<name>])" in listing  # not eaten as Rich markup
    tasks = json.loads(runner.invoke(app, ["tasks", "--json"]).output)
    assert {"aptos", "isic:test"} <= {row["task"] for row in tasks["tasks"]} and tasks["notes"]


@pytest.mark.slow
def test_help_shows_choices_methods_get_a_did_you_mean_and_device_is_a_flag(tmp_path):
    """Issue 11 item 18: --profile and --executor showed <str>; method typos got no hint; no --device."""
    help_text = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "200"}).output
    assert "paper|demo" in help_text and "local|ray" in help_text and "--device" in help_text
    flag_lines = [
        line
        for line in help_text.splitlines()
        if any(line.lstrip("│ ").startswith(f"--{flag} ") for flag in ("resume", "force", "no-report"))
    ]
    assert len(flag_lines) == 3 and not any("<bool>" in line for line in flag_lines)  # flags take no value
    typo = runner.invoke(app, ["bench", "--methods", "rd4da", "--tasks", "synth-oct", "--out", str(tmp_path / "o")])
    assert typo.exit_code == 2 and "Did you mean 'rd4ad'" in typo.output
    result = runner.invoke(
        app,
        [
            "train",
            "--profile",
            "tiny",
            "--task",
            "synth-fundus",
            "--method",
            "patchcore",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    # issue 19: the device is where a run computes (its runtime), not part of what it is (its detector options)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["runtime"]["device"] == "cpu"
    bad = runner.invoke(
        app,
        ["train", "--task", "synth-fundus", "--method", "patchcore", "--device", "tpu", "--out", str(tmp_path / "bad")],
    )
    assert bad.exit_code == 2 and "device must be" in bad.output


@pytest.mark.slow
def test_python_dash_m_runs_the_same_command_line():
    """``python -m medrecontrast`` works where the package is on the path but not installed (the GPU image)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "medrecontrast", "methods"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "recontrast" in result.stdout.lower() and "patchcore" in result.stdout.lower()


@pytest.mark.slow
def test_the_command_line_imports_nothing_heavy_and_its_choices_match_their_owners():
    """Issue 11 item 17: `medrecontrast --help`, `tasks` and argument errors must not pay for torch,
    MONAI, scikit-learn or matplotlib (10 s and 1 GB before); the choices the CLI spells for that
    reason agree with the modules that own them. (Timings are in benchmarks/, not asserted here.)"""
    import subprocess
    import sys

    heavy = ("torch", "monai", "sklearn", "matplotlib", "torchvision", "pandas")
    probe = (
        f"import sys, medrecontrast.cli, medrecontrast.tasks; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr

    from medrecontrast import cli
    from medrecontrast.bench.config import EXECUTORS
    from medrecontrast.run import PROFILES
    from medrecontrast.tasks import DATA_ROOT_ENV

    assert (
        set(cli.PROFILE_NAMES) == set(PROFILES)
        and set(cli.EXECUTOR_NAMES) == set(EXECUTORS)
        and cli.DATA_ROOT_ENV == DATA_ROOT_ENV
    )


@pytest.mark.slow
def test_progress_lines_bench_log_loss_during_training_and_tensorboard(tmp_path):
    """Issue 11 item 19: outside a terminal a sweep prints plain progress lines (before: nothing
    until the end), a sweep-level ETA, and bench.log in the sweep folder keeps every line; --quiet
    prints failures only; loss.csv is written at each checkpoint; tensorboard = true writes events."""
    config = tmp_path / "sweep.toml"
    config.write_text(
        'tasks = ["synth-oct"]\nmethods = ["rd4ad"]\nseeds = [0, 1]\nprofile = "tiny"\n'
        "[options]\nimage_size = 32\nholdout = 0.25\n"
        "[method.rd4ad]\niters = 10\nbatch_size = 4\ncheckpoint_every = 5\ntensorboard = true\n"
        "[task.synth-oct.data]\nsize = 32\nn_train = 8\nn_test_normal = 4\nn_test_abnormal = 4\n"
    )
    out = tmp_path / "runs"
    result = runner.invoke(app, ["bench", "--config", str(config), "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    assert "iteration 5/10  loss" in result.output and "iteration 10/10" in result.output
    assert "ETA ~" in result.output  # the second run's line estimates the rest of the sweep
    log = (out / "bench.log").read_text()
    assert (
        "sweep runs: 2 run(s) planned (2 to do)" in log
        and "[2/2] synth-oct · rd4ad · seed 1" in log
        and "finished synth-oct__rd4ad__seed-1" in log
    )
    run = out / "synth-oct" / "rd4ad" / "seed-0"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    quiet = runner.invoke(
        app, ["bench", "--config", str(config), "--out", str(tmp_path / "quiet"), "--no-report", "--quiet"]
    )
    assert quiet.exit_code == 0 and "iteration" not in quiet.output and "[1/2]" not in quiet.output
    assert "[1/2]" in (tmp_path / "quiet" / "bench.log").read_text()


@pytest.mark.slow
def test_loss_is_on_disk_while_training(tmp_path):
    """Issue 11 item 19: a run that dies at iteration 8 of 10 has its first checkpoint's losses in loss.csv."""
    import torch

    from medrecontrast.engine import TrainingConfig, train_loop
    from medrecontrast.run.folder import RunFolder

    model = torch.nn.Linear(3 * 8 * 8, 1)

    def loss_fn(net, images, iteration):
        if iteration == 7:
            raise RuntimeError("node lost")
        return net(images.flatten(1).float()).pow(2).mean()

    data = [{"image": torch.rand(3, 8, 8)} for _ in range(8)]
    config = TrainingConfig(iters=10, batch_size=4, checkpoint_every=5, amp=False, device="cpu")
    with pytest.raises(RuntimeError, match="node lost"):
        train_loop(
            model,
            {"adam": torch.optim.Adam(model.parameters())},
            loss_fn,
            data,
            config,
            {"method": "toy"},
            RunFolder(tmp_path).training_files(),  # a run's checkpoint and loss log (a bare path: the checkpoint)
            progress=False,
        )
    assert len(RunFolder(tmp_path).loss()) == 5


@pytest.mark.slow
def test_a_sweep_file_mistake_is_answered_before_torch_loads(tmp_path):
    """Issue 37 item 11, failed before: a TOML mistake took ~9 s to report (torch, MONAI and the models loaded first;
    a misspelt task took 0.4 s). Now the file is read and checked first."""
    (tmp_path / "bad.toml").write_text('tasks = ["synth-oct"]\nmethodz = ["rd4ad"]\n')
    script = (
        "import sys\n"
        "from medrecontrast.cli import main\n"
        f"try:\n    main(['bench', '--config', {str(tmp_path / 'bad.toml')!r}])\n"
        "except SystemExit as exit:\n    assert exit.code == 2, exit.code\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stdout + result.stderr
    assert "line 2: unknown key 'methodz'" in result.stderr


def test_the_sweep_file_keys_are_the_sweep_configs_fields():
    import dataclasses

    from medrecontrast.bench import SweepConfig
    from medrecontrast.sweepfile import _TYPES

    assert set(_TYPES) | {"source"} == {f.name for f in dataclasses.fields(SweepConfig)}


@pytest.mark.parametrize(
    "code, said",
    [
        (errno.EACCES, "you may not write there"),
        (errno.EROFS, "the file system is read-only"),
        (errno.ENOSPC, "free space or choose another folder"),
    ],
)
def test_a_folder_that_cannot_be_written_is_said_for_what_it_is(code, said, monkeypatch, tmp_path):
    """Issue 37 item 9, failed before: `train --out` on a read-only folder blamed "free space"."""
    import os as _os

    from medrecontrast import cli

    def refuse(*args, **kwargs):
        raise OSError(code, _os.strerror(code), str(tmp_path / "out"))

    monkeypatch.setattr("medrecontrast.run.run_training", refuse)
    result = runner.invoke(
        cli.app, ["train", "--profile", "tiny", "--task", "synth-oct", "--method", "patchcore", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1 and said in result.output and "Traceback" not in result.output
    if code != errno.ENOSPC:
        assert "free space" not in result.output
