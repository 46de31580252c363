"""Issue 24 in part: tables that go into a paper as they are (LaTeX that compiles, Markdown that cannot be split
or inject HTML)."""

import shutil
import subprocess

import pandas as pd
import pytest

from medrecontrast.bench.tables import latex_table, markdown, paper_table

ODD = "folder:/data/scans_%&#$"


def results_with_odd_names() -> pd.DataFrame:
    """Finished runs whose task and method names hold every character LaTeX and Markdown treat specially."""
    rows = []
    for task in ("mvtec:metal_nut", ODD, "<img src=x onerror=alert(1)>|pipe|"):
        for method, base in (("recontrast", 0.9), ("pc_k3", 0.8)):
            for seed in (0, 1):
                rows.append(
                    {
                        "task": task,
                        "method": method,
                        "seed": seed,
                        "status": "finished",
                        "image_auroc": base + 0.01 * seed,
                        "pixel_auroc": base - 0.05,
                        "aupro": base - 0.2,
                    }
                )
    return pd.DataFrame(rows)


def compile_latex(tmp_path, body: str) -> subprocess.CompletedProcess:
    document = (
        "\\documentclass[twocolumn]{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        f"\\begin{{document}}\n{body}\n\\end{{document}}\n"
    )
    (tmp_path / "paper.tex").write_text(document)
    return subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def latex_or_skip() -> None:
    """Skip (with the packages to install) where pdflatex or booktabs is missing."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian: texlive-latex-base)")
    found = subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True).stdout.strip()
    if not found:
        pytest.skip("booktabs.sty not installed (Debian: texlive-latex-recommended)")


def test_the_latex_tables_compile_in_a_two_column_paper(tmp_path):
    """`--tasks mvtec` always holds mvtec:metal_nut, whose `_` made pdflatex fail; variants such as pc_k3 and paths
    with `% & # $` broke it too. table.tex (main metrics, booktabs) and the one-metric variant now compile."""
    latex_or_skip()
    results = results_with_odd_names()
    (tmp_path / "table.tex").write_text(latex_table(results))
    (tmp_path / "table_image_auroc.tex").write_text(latex_table(results, metrics=("image_auroc",)))
    body = (
        "\\begin{table*}\\centering\\input{table.tex}\\caption{Main.}\\end{table*}\n"
        "\\begin{table}\\centering\\resizebox{\\columnwidth}{!}{\\input{table_image_auroc.tex}}\\caption{One.}\\end{table}"
    )
    done = compile_latex(tmp_path, body)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 0
    text = (tmp_path / "table.tex").read_text()
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "ReContrast" in text and "metal\\_nut" in text and "pc\\_k3" in text


def test_the_unescaped_table_is_what_broke_pdflatex(tmp_path):
    """The check above can fail: the table as written before (pandas' to_latex, escape=False) does not compile."""
    latex_or_skip()
    frame = paper_table(results_with_odd_names(), "markdown")
    (tmp_path / "old.tex").write_text(frame.to_latex(index=False, escape=False))
    done = compile_latex(tmp_path, "\\begin{table*}\\input{old.tex}\\end{table*}")
    assert done.returncode != 0


def test_markdown_cells_cannot_split_a_row_or_pass_html():
    table = markdown(paper_table(results_with_odd_names(), "markdown"))
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len({line.count("|") - line.count("\\|") for line in rows}) == 1  # every row has the same cells
    assert "<img" not in table and "&lt;img src=x onerror=alert(1)&gt;\\|pipe\\|" in table


def test_tables_renders_a_terminal_table_and_figures_makes_every_figure(tmp_path):
    """`medrecontrast tables` printed raw Markdown with `**` markers wrapped mid-row; it prints a table (display
    names, the best cell bold) and still writes every file."""
    from typer.testing import CliRunner

    from medrecontrast.bench import SweepConfig, run_sweep
    from medrecontrast.cli import app

    out = tmp_path / "runs"
    config = SweepConfig(
        tasks=["synth-oct"],
        methods=["rd4ad", "patchcore"],
        seeds=[0],
        out=str(out),
        options={"image_size": 32, "iters": 2},
    )
    run_sweep(config, progress=False)
    result = CliRunner().invoke(app, ["tables", str(out), "--report", str(tmp_path / "report")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "**" not in result.output and "PatchCore" in result.output and "RD4AD" in result.output
    assert "┃ task" in result.output and (tmp_path / "report" / "table.tex").is_file()
    # `figures` made no forest or rank figure before (only `report` did); with one task, a paired-difference plot
    drawn = CliRunner().invoke(app, ["figures", str(out), "--report", str(tmp_path / "report")])
    assert drawn.exit_code == 0, drawn.output
    for name in ("forest", "paired_differences", "auroc", "scores_synth-oct"):
        assert (tmp_path / "report" / f"{name}.png").is_file(), name
    assert not (tmp_path / "report" / "critical_difference.png").exists()  # ranks over one task say nothing
