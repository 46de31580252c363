"""The command line: help with examples, tables, JSON, exit codes."""

import json
import os
import subprocess
import sys

import layouts
import pytest
from typer.testing import CliRunner

from medrecontrast.cli import app, expand_variadic

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["tasks"], ["data"], ["data", "check"], ["data", "prepare"], ["bench"], ["train"], ["evaluate"]])
def test_every_command_has_help_with_an_example(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "medrecontrast" in result.output


def test_tasks_table():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0
    for name in ("aptos", "oct2017", "isic:test", "mvtec:<class>", "visa:<class>", "folder:<path>", "synth-fundus", "synth-oct", "synth-skin"):
        assert name in result.output


def test_data_check_json_counts(tmp_path):
    layouts.oct2017(tmp_path)
    result = runner.invoke(app, ["data", "check", "oct", "--data-root", str(tmp_path), "--json"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["task"] == "oct" and report["train"] == {"normal": 5} and report["test"] == {"normal": 2, "abnormal": 6}
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
        "bench", "--tasks", "a", "--tasks", "b", "--tasks", "c", "--data-root", "x"]
    assert expand_variadic(["bench", "--tasks", "a", "--tasks", "b"], ("--tasks",)) == ["bench", "--tasks", "a", "--tasks", "b"]


def test_bench_loads_checks_and_caches_tasks(tmp_path):
    layouts.mvtec(tmp_path)
    layouts.oct2017(tmp_path)
    result = runner.invoke(app, ["bench", "--tasks", "mvtec:bottle", "--tasks", "oct", "--data-root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "mvtec:bottle" in result.output and "oct" in result.output and "not built yet" in result.output


def test_bench_refuses_broken_files(tmp_path):
    folder = layouts.mvtec(tmp_path)
    (folder / "train" / "good" / "001.png").write_bytes(b"junk")
    result = runner.invoke(app, ["bench", "--tasks", "mvtec:bottle", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "001.png" in result.output and "--skip-unreadable" in result.output


@pytest.mark.slow
def test_console_script_default_bench_on_built_in_tasks(tmp_path):
    """The README's main command, through the installed console script, with several tasks after one flag."""
    env = {**os.environ, "MEDRECONTRAST_CACHE": str(tmp_path / "cache")}
    exe = os.path.join(os.path.dirname(sys.executable), "medrecontrast")
    result = subprocess.run([exe, "bench", "--tasks", "synth-oct", "synth-skin"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "synth-oct" in result.stdout and "synth-skin" in result.stdout and "synth-fundus" not in result.stdout
    result = subprocess.run([exe, "data", "check", "nope"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "unknown task 'nope'" in result.stderr and "Traceback" not in result.stderr
