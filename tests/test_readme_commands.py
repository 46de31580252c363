"""Issue 23 item 1: every command line the README and the documentation pages (docs/) show parses as written (a
stale flag fails here).

Each ``medrecontrast ...`` line of a shell block and each inline ``medrecontrast ...`` command is split as a
shell would and parsed by the CLI's own click commands down to the sub-command (unknown options, missing
values, bad choices and types are click errors); nothing runs."""

import re
import shlex
from pathlib import Path

import pytest
import typer

from medrecontrast.cli import VARIADIC_OPTIONS, app, expand_variadic

README = Path(__file__).parent.parent / "README.md"
PAGES = [README, *sorted((README.parent / "docs").glob("*.md"))]


def readme_command_lines(text: str) -> list[str]:
    """``medrecontrast`` command lines: those of fenced shell blocks (comments cut) and inline ones."""
    lines = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if "medrecontrast " in line:
                lines.append("medrecontrast " + line.split("medrecontrast ", 1)[1].split(" && ")[0].strip())
            elif line.endswith("medrecontrast"):
                lines.append("medrecontrast")
    lines += re.findall(r"`(medrecontrast [^`]*)`", text)
    return [line for line in dict.fromkeys(lines) if "..." not in line]


def parse(line: str) -> None:
    """Parse ``line`` as ``main`` does (variadic options expanded) with the CLI's click command tree, down to
    the sub-command; raises click's usage error for a bad command line. (Typer vendors its own click, so
    groups are recognised by what they do, not by class.)"""
    command = typer.main.get_command(app)
    args = expand_variadic(shlex.split(line)[1:], VARIADIC_OPTIONS)
    name = "medrecontrast"
    while True:
        context = command.make_context(name, list(args))
        if not hasattr(command, "resolve_command"):
            return
        rest = [*getattr(context, "_protected_args", getattr(context, "protected_args", [])), *context.args]
        if not rest:
            return
        name, command, _ = command.resolve_command(context, rest)
        args = rest[1:]


COMMANDS = list(
    dict.fromkeys(line for page in PAGES for line in readme_command_lines(page.read_text(encoding="utf-8")))
)


def test_the_readme_shows_command_lines_of_every_kind():
    kinds = {shlex.split(line)[1] for line in COMMANDS if len(shlex.split(line)) > 1}
    assert {
        "bench",
        "data",
        "train",
        "evaluate",
        "predict",
        "export",
        "tables",
        "figures",
        "report",
        "tasks",
        "methods",
    } <= kinds
    assert len(COMMANDS) >= 25


@pytest.mark.parametrize("line", COMMANDS)
def test_every_readme_command_line_parses(line):
    parse(line)


@pytest.mark.parametrize(
    "line, message",
    [
        ("medrecontrast data check isic --deep --skip-unreadable", "No such option: --skip-unreadable"),
        ("medrecontrast bench --tasks aptos oct --holdout abc", "valid number"),
        ("medrecontrast train --task synth-oct --profile papr", "'papr' is not one of"),
        ("medrecontrast dta check isic", "No such command 'dta'"),
    ],
)
def test_a_stale_or_wrong_command_line_is_caught(line, message):
    """The README line the issue found (`--skip-unreadable`, removed in issue 11) and other mistakes fail."""
    with pytest.raises(Exception, match=message):
        parse(line)
