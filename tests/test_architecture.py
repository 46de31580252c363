"""Each piece owns its knowledge: every module imports alone (no cycles), a new method is one file plus
one import line, a new dataset is one module plus one registry entry — each proved end to end."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medrecontrast.bench import SweepConfig, build_report, collect_results, paper_table, run_sweep
from medrecontrast.metrics import METRICS, check_metric_keys
from medrecontrast.models import DETECTORS, NotFittedError, build_detector, display_name, registered_methods

PACKAGE = Path(__file__).resolve().parents[1] / "medrecontrast"
MODULES = sorted(
    ".".join(("medrecontrast", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
)


@pytest.mark.slow
def test_every_module_imports_alone():
    """Each module, imported first in a fresh package state, loads (a cycle would fail on one of them)."""
    script = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'medrecontrast' or m.startswith('medrecontrast.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok', len(sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_no_import_cycles_between_modules():
    """The graph of explicit imports between the package's modules (deferred ones inside functions
    too) has no cycle: e.g. executors never import sweep, a dataset module never imports the registry."""
    graph = {}
    for name in MODULES:
        path = PACKAGE.joinpath(*name.split(".")[1:])
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medrecontrast"):
                edges |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                    for a in node.names
                }
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("medrecontrast")}
        graph[name] = sorted(edges & set(MODULES) - {name})
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


@pytest.fixture
def toy_method():
    """The one import line that adds a method; removed again afterwards so other tests see three."""
    import toy_detector  # (registers "pooled-knn" on first import)

    DETECTORS["pooled-knn"] = toy_detector.PooledKNN  # again, where another test module imported it first
    yield "pooled-knn"
    DETECTORS.pop("pooled-knn", None)


@pytest.mark.slow
def test_a_new_method_is_one_file_and_one_import(tmp_path, toy_method):
    """A toy method runs through a sweep, the tables and every figure with no other edit."""
    assert registered_methods()[-1] == toy_method and display_name(toy_method) == "Pooled kNN"
    with pytest.raises(NotFittedError, match="not fitted"):
        build_detector(toy_method, pretrained=False, device="cpu").predict([])
    out = tmp_path / "runs"
    config = SweepConfig(
        tasks=["synth-oct"],
        methods=["rd4ad", toy_method],
        seeds=[0],
        profile="tiny",
        out=str(out),
        report=str(tmp_path / "report"),
        options={"image_size": 32, "holdout": 0.25},
        method={"rd4ad": {"iters": 2, "batch_size": 4}},
        task={"synth-oct": {"data": {"size": 32, "n_train": 8, "n_test_normal": 4, "n_test_abnormal": 4}}},
    )
    outcomes = run_sweep(config, progress=False)
    assert [o.status for o in outcomes] == ["finished", "finished"], [o.error for o in outcomes]
    results = collect_results(out)
    assert results["method"].tolist() == ["rd4ad", toy_method] and results["image_auroc"].notna().all()
    assert toy_method in paper_table(results)["method"].tolist()
    readme = build_report(out, tmp_path / "report")
    assert toy_method in readme.read_text()
    for figure in ("roc", "auroc", "scores_synth-oct", "loss", "examples_synth-oct"):
        assert (tmp_path / "report" / f"{figure}.png").is_file(), figure
    run = out / "synth-oct" / toy_method / "seed-0"
    assert (
        not (run / "loss.csv").exists()
        and json.loads((run / "config.json").read_text())["detector"]["backbone"] == "resnet18"
    )


@pytest.mark.slow
def test_a_new_dataset_is_one_module_and_one_registry_entry(tmp_path, monkeypatch):
    import toy_dataset

    from medrecontrast.cli import main
    from medrecontrast.tasks import get_task, registry, registry_rows, task_names

    monkeypatch.setattr(registry, "MODULES", (*registry.MODULES, toy_dataset))  # the one line
    monkeypatch.setenv("TOY_RINGS", str(toy_dataset.write_rings(tmp_path / "rings")))
    assert "rings" in task_names() and "rings" in [row["task"] for row in registry_rows()]
    assert get_task("rings").load().counts()["test"] == {"normal": 6, "abnormal": 6}
    out = tmp_path / "runs"
    config = SweepConfig(
        tasks=["rings"],
        methods=["patchcore"],
        seeds=[0],
        profile="tiny",
        out=str(out),
        report=str(tmp_path / "report"),
        options={"image_size": 32, "holdout": 0.25},
        method={"patchcore": {"embed_dim": 32}},
    )
    assert [o.status for o in run_sweep(config, progress=False)] == ["finished"]
    build_report(out, tmp_path / "report")
    assert (tmp_path / "report" / "examples_rings.png").is_file() and collect_results(out)["pixel_auroc"].notna().all()
    with pytest.raises(SystemExit) as exit_:
        main(["tasks"])
    assert exit_.value.code in (0, None)


def test_metric_keys_are_one_list():
    """What evaluate returns, results read and tables show is metrics.METRICS; an unknown key is an error."""
    labels, scores = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])

    class Predictions:
        pass

    predictions = Predictions()
    predictions.labels, predictions.scores, predictions.masks, predictions.maps = labels, scores, None, None
    from medrecontrast.metrics import evaluate

    metrics = evaluate(predictions, holdout_scores=np.array([0.1, 0.2, 0.3]))
    assert set(metrics) - {"threshold_oracle", "threshold_holdout"} <= set(METRICS)
    with pytest.raises(ValueError, match="unknown metric"):
        check_metric_keys({"image_auroc": 0.5, "image_aucroc": 0.5})


def _docstrings(tree) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def test_only_the_run_folder_knows_its_file_names():
    """Issue 34 item 1: the run folder's file names are spelled in run/folder.py only (docstrings may name them);
    every other module reads and writes a run folder through RunFolder. A dataset's own files (MedIAnomaly's
    data.json) are the task module's; predict's output folder (its scores.csv) is deploy.outputs', which must not
    import the run package (`predict --model` runs without it)."""
    import re

    from medrecontrast.run.folder import RunFolder

    names = {
        value for key, value in vars(RunFolder).items() if key.isupper() and isinstance(value, str) and "." in value
    }
    assert {"config.json", "metrics.json", "scores.csv", "status.json", "model.pt", "checkpoint.pt"} <= names
    pattern = re.compile(r"(?<![\w.])(" + "|".join(re.escape(n) for n in sorted(names)) + r")\b")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() == "run/folder.py":
            continue
        tree = ast.parse(path.read_text())
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                for hit in pattern.findall(node.value):
                    dataset_file = hit == RunFolder.DATA_RECORD and path.parent.name == "tasks"
                    prediction_file = (
                        hit == RunFolder.SCORES and path.relative_to(PACKAGE).as_posix() == "deploy/outputs.py"
                    )
                    if not (dataset_file or prediction_file):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {hit}")
    assert not found, found


def test_the_catalogue_is_the_card_and_construction_is_a_hook():
    """Issue 34 item 3: what the benchmark says about a method lives in its frozen MethodCard, never as a class
    attribute of Detector or of a method; a method builds its networks in ``construct`` (on its own random streams),
    with no rewriting of ``__init__``."""
    import dataclasses

    from medrecontrast.models import DETECTORS, Detector, MethodCard

    card_fields = {f.name for f in dataclasses.fields(MethodCard)}
    for cls in {Detector, *DETECTORS.values(), *(c.__mro__[1] for c in DETECTORS.values())}:
        stray = card_fields & set(vars(cls))
        assert not stray, f"{cls.__qualname__} declares {stray} outside its card"
    for name, cls in DETECTORS.items():
        assert isinstance(cls.card, MethodCard), name
        with pytest.raises(dataclasses.FrozenInstanceError):
            cls.card.order = 0
        with pytest.raises(TypeError):
            cls.card.paper_results["x"] = {}  # the published numbers are read-only too
    assert "__init_subclass__" not in vars(Detector)


def test_the_command_line_stays_thin():
    """Issue 34 item 4: the CLI prints what the package computes; it stays under 600 lines."""
    assert len((PACKAGE / "cli.py").read_text().splitlines()) < 600
