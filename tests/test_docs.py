"""The documentation site (docs/, mkdocs.yml) builds with warnings as errors, every page is in its navigation, and
every link from a page to one of the repository's own files (reports/, benchmarks/, configs/) points at a file that
exists, as does every repository path a page, the changelog or a config names in prose. (Every command line the
pages show is parsed by tests/test_readme_commands.py.)"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_every_page_is_in_the_navigation():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python/name:", ""))
    listed = {next(iter(entry.values())) for entry in config["nav"]}
    assert listed == {path.name for path in DOCS.glob("*.md")}


def test_links_to_the_repositorys_files_exist():
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.name}: {target}")
    assert not missing, missing


# paths a page names that are not in the repository on purpose, with the reason
NAMED_BUT_ABSENT = {
    "benchmarks/results": "written by the benchmark scripts when they run",
    "benchmarks/training_step.py": "named as history: the script was replaced by throughput.py",
    "reports/mine": "an example of where build_report writes",
}


def test_every_repository_path_a_page_or_config_names_exists():
    """A folder or file of the repository named in prose ("the numbers are in reports/x") exists: readers follow it."""
    pages = [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "benchmarks" / "README.md",
        ROOT / "reports" / "README.md",
        *sorted(DOCS.glob("*.md")),
        *sorted((ROOT / "configs").glob("*.toml")),
    ]
    named = re.compile(r"(?<![\w/.-])((?:reports|configs|benchmarks|notebooks|docs)/[\w.-]+(?:/[\w.-]+)*)")
    missing = []
    for page in pages:
        for path in named.findall(page.read_text()):
            path = path.rstrip(".")
            if path not in NAMED_BUT_ABSENT and not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, missing


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert "RunFolder" in page and "MethodCard" in page  # the reference is generated from the docstrings
