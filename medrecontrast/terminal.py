"""How the command line talks to a terminal: its consoles, a user error as one line in flag names, Ctrl-C and SIGTERM
said with how to continue, one-line warnings and ``--tasks a b c`` as click wants it. Commands live in
:mod:`medrecontrast.cli`; this module holds what they share, and imports neither torch nor the models."""

from __future__ import annotations

import errno
import functools
import json
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medrecontrast.errors import UserInputError

# Tables are wide: outside a terminal (logs, pipes) rich would squeeze them into 80 columns.
# and lines are never wrapped there either (soft_wrap), so a log keeps each sweep line whole
console = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True)

# Core messages say what to do in the API's terms (``force=True``, ``out=DIR``); the command line
# says it in its flags. Longest first, so ``out=DIR`` is not taken for a part of another term.
API_TERMS = {
    "force=True": "--force",
    "resume=True": "--resume",
    "data_root=DIR": "--data-root DIR",
    "weights=PATH": "--weights PATH",
    "executor='ray'": "--executor ray",
    "profile='demo'": "--profile demo",
    "profile='tiny'": "--profile tiny",
    "profile='paper'": "--profile paper",
    "out=DIR": "--out DIR",
    "report folder": "--report",
}


def in_flags(message: str) -> str:
    """A core message with its API terms as this command line's flags (:data:`API_TERMS`)."""
    for term in sorted(API_TERMS, key=len, reverse=True):
        message = message.replace(term, API_TERMS[term])
    return message.replace("(set in flags)", "(set on the command line)")


ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def user_errors(command):
    """Print a user error as one line on stderr (in flag names) and exit 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserInputError as exc:
            err_console.print(f"[bold red]error:[/] {escape(in_flags(str(exc)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            if exc.errno not in ENVIRONMENT_ERRNOS:
                raise
            # a full disk, a quota, a read-only or forbidden folder: what to do is the user's, so one line
            where = f" ({exc.filename})" if exc.filename else ""
            remedy = {  # what the user can do depends on what stopped the write (a read-only folder is not full)
                errno.ENOSPC: "free space or choose another folder",
                errno.EDQUOT: "free space within your quota or choose another folder",
                errno.EROFS: "the file system is read-only: choose a folder on a writable one",
                errno.EACCES: "you may not write there: choose a folder you can write to, or change its permissions",
                errno.EPERM: "you may not write there: choose a folder you can write to, or change its permissions",
            }[exc.errno]
            err_console.print(
                f"[bold red]error:[/] {escape(exc.strerror or str(exc))}{escape(where)}; {remedy} (files already "
                "written are complete: each is written whole or not at all).",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def print_metrics(folder: Path, metrics: dict) -> None:
    table = Table(title=f"run {folder}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        if isinstance(value, (int, float)):
            table.add_row(name, f"{value:.4f}")
    for group, values in metrics.get("per_class", {}).items():
        table.add_row(f"{group}: image_auroc", f"{values['image_auroc']:.4f}")
    for name, value in metrics["timings"].items():
        table.add_row(name, value if isinstance(value, str) else "-" if value is None else f"{value:.2f}")
    console.print(table)


@contextmanager
def interruptions(what: str, log: Path | None):
    """Ctrl-C or SIGTERM while ``what`` runs (a run folder, or a sweep's runs): say what was kept and how to continue
    (on stderr, and in ``log`` where the sweep has written it by then), then exit with the signal's code."""
    try:
        yield
    except KeyboardInterrupt as exc:
        from medrecontrast.bench.executors import say
        from medrecontrast.signals import interruption_of

        name, code = interruption_of(exc)
        say(
            f"[yellow]interrupted by {name}[/] ({escape(str(exc) or 'Ctrl-C')}): {escape(what)} keeps its last "
            f"checkpoint and is marked interrupted; continue with: {escape(continue_command())}",
            log if log is not None and log.exists() else None,
        )
        raise typer.Exit(code) from None


def continue_command() -> str:
    """This command line with ``--resume`` (once): what continues an interrupted run or sweep."""
    args = [a for a in sys.argv[1:] if a != "--resume"]
    return shlex.join(["medrecontrast", *args, "--resume"])


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, UserWarning) and category.__module__ == "builtins":
        return f"warning: {message}\n"
    return f"{filename}:{lineno}: {category.__name__}: {message}\n"


def expand_variadic(args: list[str], options: tuple[str, ...]) -> list[str]:
    """Rewrite ``--opt a b c`` to ``--opt a --opt b --opt c`` for the given options."""
    out: list[str] = []
    current = None
    for arg in args:
        if arg.startswith("-"):
            current = arg if arg in options else None
            out.append(arg)
        elif current is not None and out[-1] != current:
            out.extend([current, arg])
        else:
            out.append(arg)
    return out


def key_values(given: list[str], option: str) -> dict:
    """``KEY=VALUE`` strings as a dict; each value read as JSON where it is JSON (``3``, ``true``), else a string."""
    options = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"{option} takes KEY=VALUE (e.g. missing=skip), got {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value  # a plain word: a string
    return options


def print_tasks(rows: list[dict], notes: list[str], layouts: dict, data_root_env: str) -> None:
    """``medrecontrast tasks``: the registry's rows as a table, its notes and each task's expected layout."""
    table = Table(title="medrecontrast tasks", show_lines=False)
    for column in rows[0]:
        table.add_column(column, no_wrap=column not in ("train | test", "patients"))
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    for note in notes:
        console.print(escape(note))
    console.print("Files each task expects under the data root:")
    for label, layout in layouts.items():
        console.print(f"  {escape(label)}: {escape(layout)}", highlight=False, soft_wrap=True)
    console.print(f"Real tasks read their files from --data-root or ${data_root_env}; see docs/data.md.")


def print_methods(methods: dict, refused: dict) -> None:
    """``medrecontrast methods``: each method's options and defaults, reference, needs and notes; then the anomalib
    models the suite refuses, with why."""
    for name, method in methods.items():
        table = Table(
            title=f"{name} ({method['display_name']}; {'trains' if method['trains'] else 'no training iterations'})"
        )
        table.add_column("option")
        table.add_column("default")
        for option, default in method["options"].items():
            table.add_row(option, json.dumps(default, default=str))
        console.print(table)
        if method["reference"]:
            console.print(f"  Reference: {escape(method['reference'])}", highlight=False)
        if method["requires"]:
            console.print(f"  Needs: {escape(method['requires'])}", highlight=False)
        for note in method["backbone_notes"]:
            console.print(f"  {escape(note)}", highlight=False)
    console.print("anomalib models not offered here (refused when a sweep is planned):")
    for name, why in refused.items():
        console.print(f"  {escape(name)}: {escape(why)}", highlight=False)
    console.print(
        escape(
            "Set options per sweep in a TOML file ([options], [method.<name>], [task.<task>.method.<name>]); see "
            "docs/bench.md."
        )
    )


def print_plan(sweep, plan, summary: str) -> None:
    """``bench --dry-run``: the checked plan and its summary (:func:`medrecontrast.bench.sweep.dry_run`)."""
    table = Table(title=f"plan of sweep {escape(sweep.name)} (profile {sweep.profile}) -> {escape(str(sweep.out))}")
    for column in plan.columns:
        table.add_column(column, overflow="fold")
    for row in plan.itertuples(index=False):
        table.add_row(*("–" if value is None or value != value else escape(str(value)) for value in row))
    console.print(table)
    console.print(summary, highlight=False)


def progress_of(quiet: bool, verbose: bool) -> bool | int:
    """The ``progress`` a run takes for ``--quiet`` (none), ``--verbose`` (a line per iteration) or neither."""
    if quiet and verbose:
        raise UserInputError("--quiet and --verbose exclude each other; choose one")
    return False if quiet else 1 if verbose else True


def print_frame(frame, title: str) -> None:
    """A pandas frame as a rich table (cells as they are: rich markup such as bold stays)."""
    table = Table(title=escape(title))
    for column in frame.columns:
        table.add_column(escape(str(column)), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(str(value) for value in row))
    console.print(table)
