"""Issue 24 in part: tables that go into a paper as they are (LaTeX that compiles, Markdown that cannot be split
or inject HTML)."""

import shutil
import subprocess

import numpy as np
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


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """One finished sweep (synth-oct, RD4AD and PatchCore, one seed, 32 px) that the report tests below read."""
    from medrecontrast.bench import SweepConfig, run_sweep

    out = tmp_path_factory.mktemp("sweep") / "runs"
    config = SweepConfig(
        tasks=["synth-oct"],
        methods=["rd4ad", "patchcore"],
        seeds=[0],
        out=str(out),
        options={"image_size": 32, "iters": 2},
        profile="tiny",
    )
    run_sweep(config, progress=False)
    return out


def test_tables_renders_a_terminal_table_and_figures_makes_every_figure(tiny_sweep, tmp_path):
    """`medrecontrast tables` printed raw Markdown with `**` markers wrapped mid-row; it prints a table (display
    names, the best cell bold) and still writes every file."""
    from typer.testing import CliRunner

    from medrecontrast.cli import app

    out = tiny_sweep
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


def test_a_map_goes_back_on_the_original_image_where_the_crop_was():
    """predict's overlays were the run's 64 x 64 input (aspect lost); the map is now placed where the centre crop
    was and resized to the original's size and aspect, NaN (not scored) outside the crop."""
    from medrecontrast.run.prediction import map_on_original

    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    placed = map_on_original(heat, 30, 60, image_size=8, crop_size=4)
    assert placed.shape == (30, 60)
    assert np.isnan(placed[0, 0]) and np.isnan(placed[29, 59]) and np.isfinite(placed[15, 30])
    assert np.nanmin(placed) >= 0 and np.nanmax(placed) <= 15 + 1e-4
    whole = map_on_original(heat, 40, 20, image_size=4, crop_size=None)
    assert whole.shape == (40, 20) and np.isfinite(whole).all()


@pytest.mark.slow
def test_predict_writes_overlays_at_the_images_size_and_a_sorted_escaped_index(tmp_path):
    from PIL import Image

    from medrecontrast.run import train_run
    from medrecontrast.run.prediction import predict_images
    from medrecontrast.tasks import get_task

    task = get_task("synth-fundus", size=32, n_train=6, n_test_normal=3, n_test_abnormal=3)
    train_run(task, "patchcore", tmp_path / "pc", overrides={"holdout": 0.25}, progress=False, profile="tiny")
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    Image.fromarray(rng.integers(0, 255, (300, 600, 3), dtype=np.uint8)).save(tmp_path / "in" / "wide.png")
    Image.fromarray(rng.integers(0, 255, (80, 40, 3), dtype=np.uint8)).save(tmp_path / "in" / "tall_<b>.png")
    out = predict_images(tmp_path / "pc", [tmp_path / "in"], tmp_path / "out")
    wide = Image.open(out / "overlays" / "wide.png")
    assert wide.width > 2 * 600 * 0.9 and wide.height > 300  # two 600-px panels side by side, not 64 x 64
    html = (out / "index.html").read_text()
    scores = pd.read_csv(out / "scores.csv").sort_values("score", ascending=False)
    positions = [
        html.index(f"<td>{identifier.replace('<', '&lt;').replace('>', '&gt;')}<br>") for identifier in scores["id"]
    ]
    assert positions == sorted(positions)  # highest score first
    assert "tall_<b>" not in html and "tall_&lt;b&gt;" in html and "overlays/wide.png" in html


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def test_the_html_report_is_one_offline_page_that_a_browser_renders(tiny_sweep, tmp_path):
    """report.html beside README.md: the same text, every figure inlined, no raw HTML from names; rendered by a real
    headless Chromium where one is installed (Debian's chromium)."""
    from PIL import Image

    from medrecontrast.bench import build_report

    out = tiny_sweep
    readme = build_report(out, tmp_path / "report")
    page = (readme.parent / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "Benchmark report" in page and "<table>" in page
    inlined = page.count('src="data:image/png;base64,')
    assert inlined >= 6 and 'src="roc.png"' not in page and 'href="results.csv"' in page
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no headless browser installed (Debian: chromium): the page was checked as text only")
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", (readme.parent / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "The answer" in dom.stdout and dom.stdout.count("data:image/png;base64,") == inlined
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1200,1600", f"--screenshot={shot}", (readme.parent / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.std() > 10  # text, tables and figures, not a blank page
