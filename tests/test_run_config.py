"""Issue 19: one typed run configuration, resolved once; a run is its identity, not where it computed
or how a value was spelled."""

import json
from pathlib import Path

import layouts
import pytest
from conftest import mini_config
from typer.testing import CliRunner

from medrecontrast.bench import SweepConfig, load_sweep_config, run_sweep
from medrecontrast.bench.sweep import plan_sweep
from medrecontrast.cli import app
from medrecontrast.errors import UserInputError
from medrecontrast.run import RunConfig, Runtime, read_run_config, resolve_run_config


def one_task(out: Path, **changes) -> SweepConfig:
    return mini_config(out, tasks=["synth-oct"], **changes)


def model_stamps(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in sorted(out.glob("*/*/seed-*/model.pt"))}


@pytest.mark.slow
def test_a_finished_sweep_is_extended_on_another_device_with_restated_defaults(tmp_path):
    """Re-planned with the device set, every default restated (identity and Runtime ones) and a new seed:
    nothing is retrained or refused, the new seed runs."""
    out = tmp_path / "runs"
    first = run_sweep(one_task(out, seeds=[0]), progress=False)
    assert sorted(o.status for o in first) == ["finished"] * 2
    stamps = model_stamps(out)
    restated = one_task(
        out,
        seeds=[0, 1],
        options={
            "image_size": 32,
            "holdout": 0.25,
            "threshold_quantile": 0.95,
            "num_workers": 0,
            "checkpoint_every": 50,
        },
        method={
            "rd4ad": {"iters": 3, "batch_size": 4, "optimizer": "adam", "lr_decoder": 0.005},
            "patchcore": {"embed_dim": 32, "coreset_ratio": 0.1},
        },
        flags={"device": "cpu"},
    )
    second = run_sweep(restated, progress=False)
    status = {(o.method, o.seed): o.status for o in second}
    assert status == {
        ("rd4ad", 0): "skipped",
        ("patchcore", 0): "skipped",
        ("rd4ad", 1): "finished",
        ("patchcore", 1): "finished",
    }
    assert {k: v for k, v in model_stamps(out).items() if k in stamps} == stamps  # nothing retrained
    # the finished runs keep the record of where they ran; the new one records its own runtime
    assert read_run_config(out / "synth-oct/rd4ad/seed-0").runtime == Runtime()
    new = read_run_config(out / "synth-oct/rd4ad/seed-1")
    assert new.runtime.device == "cpu" and new.runtime.num_workers == 0 and new.sources["device"] == "flags"
    # the command line's --device is one more layer too
    result = CliRunner().invoke(
        app,
        ["bench", "--config", str(_as_toml(restated, tmp_path / "sweep.toml")), "--device", "cpu", "--no-report", "-q"],
    )
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_a_changed_identity_field_is_still_refused_with_its_key(tmp_path):
    out = tmp_path / "runs"
    run_sweep(one_task(out, seeds=[0], methods=["patchcore"]), progress=False)
    changed = one_task(
        out, seeds=[0], methods=["patchcore"], method={"patchcore": {"embed_dim": 32, "coreset_ratio": 0.5}}
    )
    with pytest.raises(UserInputError, match=r"another configuration \(detector\.coreset_ratio differ\).*force=True"):
        plan_sweep(changed)


@pytest.mark.slow
def test_old_run_folders_of_format_3_are_read(tmp_path):
    """A format-3 config.json (every option in "detector", the spelled values in "overrides") is read
    into a RunConfig of the same identity: the old sweep is extended, not refused."""
    out = tmp_path / "runs"
    run_sweep(one_task(out, seeds=[0], methods=["rd4ad"]), progress=False)
    path = out / "synth-oct/rd4ad/seed-0/config.json"
    current = json.loads(path.read_text())
    old = {k: v for k, v in current.items() if k not in ("runtime", "sources")}
    old.update(
        format=3,
        detector={**current["detector"], **RunConfig.from_json(current).runtime.options_for("rd4ad")},
        overrides={"iters": 3},
    )
    path.write_text(json.dumps(old))
    assert read_run_config(path.parent).identity() == RunConfig.from_json(current).identity()
    plan_sweep(one_task(out, seeds=[0], methods=["rd4ad"], flags={"device": "cpu"}))  # not refused
    path.write_text(json.dumps({**old, "format": 2}))
    with pytest.raises(UserInputError, match="incompatible version.*format 2"):
        plan_sweep(one_task(out, seeds=[0], methods=["rd4ad"]))


def test_one_documented_precedence_with_provenance():
    config = mini_config(
        Path("/tmp/unused"), task={"synth-oct": {"iters": 5, "method": {"rd4ad": {"iters": 7}}}}, flags={"holdout": 0.3}
    )
    layers = config.resolved().layers("synth-oct", "rd4ad")
    assert [name for name, _ in layers] == [
        "[options]",
        "[method.rd4ad]",
        "[task.synth-oct]",
        "[task.synth-oct.method.rd4ad]",
        "flags",
    ]
    run = resolve_run_config("synth-oct", "rd4ad", 0, "tiny", layers=layers)
    assert (
        run.detector["iters"] == 7 and run.detector["epochs"] is None and run.holdout == 0.3
    )  # the flag wins over [options]
    assert run.sources["iters"] == "[task.synth-oct.method.rd4ad]" and run.sources["holdout"] == "flags"
    assert run.sources["backbone"] == "(profile tiny)"
    # identity leaves out the runtime and the provenance; the spelling of a default is not part of it
    restated = resolve_run_config(
        "synth-oct", "rd4ad", 0, "tiny", layers=[*layers, ("again", {"lr_decoder": 0.005, "device": "cpu"})]
    )
    assert restated.identity() == run.identity() and restated != run


def test_errors_name_the_key_the_layer_and_the_toml_line(tmp_path):
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        'tasks = ["synth-oct"]\nmethods = ["rd4ad"]\n\n[method.rd4ad]\nbatch_size = 4\n\n[task.synth-oct]\niters = 0\n'
    )
    with pytest.raises(
        UserInputError, match=r"iters must be a positive integer.*set in \[task.synth-oct\].*sweep.toml, line 8: iters"
    ):
        plan_sweep(load_sweep_config(toml, out=str(tmp_path / "runs"), report=str(tmp_path / "report")))
    toml.write_text('tasks = ["synth-oct"]\n\n[method.rd4ad]\niter = 4\n')
    with pytest.raises(
        UserInputError, match=r"line 4: unknown option 'iter' in \[method.rd4ad\]. Did you mean 'iters'\?"
    ):
        load_sweep_config(toml)
    with pytest.raises(
        UserInputError,
        match=r"unknown option 'coreset' for method 'patchcore' \(set in x\). Did you mean 'coreset_ratio'\?",
    ):
        resolve_run_config("synth-oct", "patchcore", 0, "tiny", layers=[("x", {"coreset": 0.1})])
    with pytest.raises(UserInputError, match="device must be"):
        resolve_run_config("synth-oct", "patchcore", 0, "tiny", layers=[("x", {"device": "tpu"})])


@pytest.mark.slow
def test_the_cli_names_flags_where_the_api_names_arguments(tmp_path):
    """Core messages speak the API (``force=True``); the command line says ``--force``."""
    from medrecontrast.cli import in_flags

    assert (
        in_flags("pass force=True to overwrite it or choose another out=DIR.")
        == "pass --force to overwrite it or choose another --out DIR."
    )
    folder = tmp_path / "run"
    arguments = [
        "train",
        "--task",
        "synth-oct",
        "--method",
        "patchcore",
        "--out",
        str(folder),
        "--profile",
        "tiny",
        "-q",
    ]
    env = {"MEDRECONTRAST_CACHE": str(tmp_path / "cache")}
    assert CliRunner().invoke(app, arguments, env=env).exit_code == 0
    again = CliRunner().invoke(app, arguments, env=env)
    assert again.exit_code == 2 and "--force" in again.output and "force=True" not in again.output


def _as_toml(config: SweepConfig, path: Path) -> Path:
    """The sweep as a TOML file (tables of scalars only, as the mini sweeps use)."""

    def value(v):
        return json.dumps(v)

    lines = [f"{k} = {value(getattr(config, k))}" for k in ("tasks", "methods", "seeds", "profile", "out", "report")]
    lines += ["[options]", *(f"{k} = {value(v)}" for k, v in config.options.items())]
    for method, body in config.method.items():
        lines += [f"[method.{method}]", *(f"{k} = {value(v)}" for k, v in body.items())]
    for task, body in config.task.items():
        lines += [f"[task.{task}.data]", *(f"{k} = {value(v)}" for k, v in body.get("data", {}).items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_importing_the_bench_keeps_the_users_matplotlib_backend():
    """Importing medrecontrast.bench used to force Agg, which broke a notebook's inline plots."""
    import subprocess
    import sys

    script = "import matplotlib; matplotlib.use('svg'); import medrecontrast.bench; print(matplotlib.get_backend())"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "svg", result.stderr[-2000:]


def test_a_method_that_never_trains_does_not_import_the_training_engine():
    """PatchCore, the detector base and prediction import the compute helpers, not the engine."""
    import ast

    package = Path(__file__).resolve().parents[1] / "medrecontrast"
    for module in ("models/patchcore.py", "models/base.py", "run/prediction.py", "run/artefacts.py", "data/dataset.py"):
        tree = ast.parse((package / module).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "medrecontrast.engine" not in imported, module
    data_modules = [p for p in (package / "data").glob("*.py")]
    for path in data_modules:  # data never imports tasks (the item vocabulary lives in data/items.py)
        tree = ast.parse(path.read_text())
        imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(m.startswith("medrecontrast.tasks") for m in imported), path


def test_the_git_revision_is_read_without_taking_the_checkout_index_lock(monkeypatch):
    """Issue 37 item 11: `git status` on every run briefly created .git/index.lock in the user's checkout (a commit
    of theirs at that moment failed); every git call now passes --no-optional-locks."""
    import importlib
    import subprocess

    environment = importlib.import_module("medrecontrast.run.environment")  # the package exports a function of it

    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="abc\n", stderr="")

    monkeypatch.setattr(environment.subprocess, "run", fake_run)
    assert environment._git_revision() == "abc+changes"
    assert calls and all(command[:2] == ["git", "--no-optional-locks"] for command in calls)


def test_a_device_this_machine_lacks_is_refused_before_anything_runs(tmp_path):
    """Issue 37 item 7, failed before: `--device cuda:7` planned, then every run failed in turn with torch's driver
    message and `--resume` was advised; `train --device cuda` was a traceback. Reading a GPU run's configuration on
    a machine without that GPU stays possible (the check is at planning and at the start of a run)."""
    from medrecontrast.run import train_run

    config = SweepConfig(
        tasks=["synth-oct"],
        methods=["patchcore"],
        seeds=[0],
        out=str(tmp_path / "runs"),
        flags={"device": "cuda:7"},
        profile="tiny",
    )
    with pytest.raises(UserInputError, match="'cuda:7' does not exist here"):
        plan_sweep(config)
    with pytest.raises(UserInputError, match="'cuda:7' does not exist here"):
        train_run("synth-oct", "patchcore", tmp_path / "run", overrides={"device": "cuda:7"}, profile="tiny")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "run").exists()
    run = resolve_run_config("synth-oct", "patchcore", 0, "tiny", layers=[("flags", {"device": "cuda:7"})])
    assert RunConfig.from_json(run.to_json()).runtime.device == "cuda:7"


@pytest.mark.parametrize(
    "method, option, value, message",
    [
        ("recontrast", "lr_decoder", -0.001, "lr_decoder must be a number > 0"),
        ("rd4ad", "lr_encoder", 0.0, "lr_encoder must be a number > 0"),
        ("dinomaly", "lr", float("nan"), "lr must be a finite number"),
        ("recontrast", "weight_decay", float("inf"), "weight_decay must be a finite number"),
        ("patchcore", "coreset_ratio", 1.5, r"coreset_ratio must be in \(0, 1\]"),
        ("recontrast", "betas", [0.9, 1.2], r"betas must be each in \[0, 1\)"),
    ],
)
def test_float_options_out_of_range_are_refused_when_the_run_is_resolved(method, option, value, message):
    """Issue 37 item 7, failed before: learning rates that are negative, zero, NaN or inf (and other float options out
    of their range) were accepted and failed, or trained nothing, at run time."""
    with pytest.raises(UserInputError, match=message):
        resolve_run_config("synth-oct", method, 0, "tiny", layers=[("[options]", {option: value})])


def test_a_float_option_out_of_range_in_a_sweep_file_is_refused_with_its_line(tmp_path):
    (tmp_path / "sweep.toml").write_text(
        'tasks = ["synth-oct"]\nmethods = ["rd4ad"]\n\n[method.rd4ad]\nlr_decoder = -1e-3\n'
    )
    config = load_sweep_config(tmp_path / "sweep.toml", out=str(tmp_path / "runs"))
    with pytest.raises(UserInputError, match=r"lr_decoder must be a number > 0.*sweep.toml, line 5"):
        plan_sweep(config)


def test_a_hold_out_the_training_set_cannot_give_is_refused_at_planning(tmp_path):
    """Issue 37 item 7, failed before: `--dry-run` accepted a hold-out that left no training image, the run
    failed, and the corrected command was then refused as an unfinished run."""
    data = layouts.folder(tmp_path / "scans", train=1)
    config = SweepConfig(
        tasks=[f"folder:{data}"],
        methods=["patchcore"],
        seeds=[0],
        profile="tiny",
        out=str(tmp_path / "runs"),
        options={"holdout": 0.05},
    )
    with pytest.raises(UserInputError, match="would leave no training images out of 1.*lower holdout"):
        plan_sweep(config)
    assert not (tmp_path / "runs").exists()


def test_a_folder_section_reaches_its_task_however_the_path_is_spelt(tmp_path, monkeypatch):
    """Issue 37 item 7, failed before: `[task."folder:/data/x/"]` (a trailing slash) or a relative spelling of the
    sweep's folder was silently ignored; a folder section that reaches no task of the sweep is refused."""
    data = layouts.folder(tmp_path / "scans")
    monkeypatch.chdir(tmp_path)
    common = dict(methods=["patchcore"], seeds=[0], profile="tiny", out=str(tmp_path / "runs"))
    config = SweepConfig(tasks=[f"folder:{data}"], task={"folder:scans/": {"holdout": 0.4}}, **common)
    assert plan_sweep(config)[0].config.holdout == 0.4
    other = SweepConfig(tasks=[f"folder:{data}"], task={"folder:elsewhere": {"holdout": 0.4}}, **common)
    with pytest.raises(UserInputError, match="names a folder this sweep does not run"):
        plan_sweep(other)


def test_a_shared_option_that_reaches_no_method_of_the_sweep_is_said(tmp_path):
    """Issue 37 item 7, failed before: `[options] coreset_ratio` in a sweep of RD4AD alone was dropped silently."""
    config = SweepConfig(
        tasks=["synth-oct"],
        methods=["rd4ad"],
        seeds=[0],
        profile="tiny",
        out=str(tmp_path / "runs"),
        options={"coreset_ratio": 0.01},
    )
    with pytest.warns(UserWarning, match=r"\[options\]: coreset_ratio reach\(es\) no method"):
        plan_sweep(config)


@pytest.mark.slow
def test_a_failed_run_is_retried_with_corrected_settings_by_the_advised_resume(tmp_path):
    """Issue 37 item 7, failed before: a failed run advised `--resume`; after the user corrected its settings,
    `--resume` was refused as "another configuration". A failed run holds no result: `--resume` now redoes it with
    the corrected settings; an interrupted run (a checkpoint of the old settings) still needs `--force`."""
    import json as _json

    base = dict(tasks=["synth-oct"], methods=["patchcore"], seeds=[0], profile="tiny", out=str(tmp_path / "runs"))
    small = {"data": {"size": 32, "n_train": 6, "n_test_normal": 3, "n_test_abnormal": 3}}
    run_sweep(SweepConfig(**base, task={"synth-oct": small}), progress=False)
    [folder] = list((tmp_path / "runs").glob("*/*/seed-0"))
    corrected = SweepConfig(**base, task={"synth-oct": {**small, "coreset_ratio": 0.2}})
    for state, allowed in (("failed", True), ("interrupted", False)):
        (folder / "status.json").write_text(_json.dumps({"status": state, "error": "RuntimeError: boom"}))
        if allowed:
            [spec] = plan_sweep(corrected, resume=True)
            assert spec.force and spec.config.detector["coreset_ratio"] == 0.2
        else:
            with pytest.raises(UserInputError, match="another configuration"):
                plan_sweep(corrected, resume=True)


def test_a_runs_input_size_is_its_crop_where_it_crops():
    """One rule for the network's input side (it was spelled `crop_size or image_size` in four places)."""
    assert resolve_run_config("synth-oct", "rd4ad", 0, "tiny").input_size == 64
    paper = resolve_run_config("mvtec:bottle", "patchcore", 0, "paper")
    assert (paper.image_size, paper.crop_size, paper.input_size) == (256, 224, 224)
