"""The notebooks run top to bottom on the built-in tasks, so they never rot."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


def test_notebooks_use_inferno_with_colour_bars_public_attributes_and_say_when_numbers_are_a_demo():
    """Issue 24 item 5: notebook 02 drew maps with `jet` and no colour bar (and read `detector.training_`);
    notebook 03's committed outputs showed chance-level numbers with no caveat."""
    import re

    import nbformat

    sources = {
        path.name: "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells) for path in NOTEBOOKS
    }
    for name, text in sources.items():
        assert "jet" not in text, name
        assert not re.search(r"\.\w+_\.\w", text), name  # no reaching into a fitted attribute's internals
        assert not re.search(r"\._[a-z]", text), name  # no private attribute
    assert "colorbar" in sources["02_train_and_inspect.ipynb"] and "inferno" in sources["02_train_and_inspect.ipynb"]
    assert "as a demo, not a result" in sources["03_sweep_results.ipynb"]
