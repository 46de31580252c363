"""The `medrecontrast` command: a thin typer layer over the Python API."""

from __future__ import annotations

import enum
import errno
import functools
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from medrecontrast import __version__
from medrecontrast.errors import UserInputError

# The command line starts in well under a second (`--help`, `tasks`, argument errors): torch, MONAI,
# scikit-learn and matplotlib are imported inside the commands that need them, never here. So the
# few names that --help shows are spelled here instead of imported from the modules that own them
# (run.PROFILES, bench.config.EXECUTORS, tasks.DATA_ROOT_ENV); tests/test_cli.py checks that they agree.
PROFILE_NAMES = ("paper", "demo", "lite")
EXECUTOR_NAMES = ("local", "ray")
DATA_ROOT_ENV = "MEDRECONTRAST_DATA"
ProfileChoice = enum.Enum("ProfileChoice", {name: name for name in PROFILE_NAMES}, type=str)
ExecutorChoice = enum.Enum("ExecutorChoice", {name: name for name in EXECUTOR_NAMES}, type=str)

app = typer.Typer(
    name="medrecontrast",
    help="Unsupervised anomaly detection benchmark for medical images (ReContrast, RD4AD, PatchCore).\n\n"
    "Example: medrecontrast bench --tasks synth-fundus synth-oct",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(
    help="Check dataset layouts and prepare data once.\n\nExample: medrecontrast data check oct --data-root /data",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

# Tables are wide: outside a terminal (logs, pipes) rich would squeeze them into 80 columns.
# and lines are never wrapped there either (soft_wrap), so a log keeps each sweep line whole
console = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True)

# Options that take several values after one flag (`--tasks aptos oct isic`); click wants the flag
# repeated, so `main` rewrites argv before typer sees it.
VARIADIC_OPTIONS = ("--tasks", "--methods", "--seeds")

DataRoot = Annotated[
    Optional[Path],
    typer.Option(
        "--data-root",
        help=f"Folder holding one sub-folder per dataset (default: ${DATA_ROOT_ENV}).",
        show_default=False,
    ),
]
SweepFolder = Annotated[Path, typer.Argument(help="A sweep folder written by `bench`, e.g. runs/demo.")]
ReportFolder = Annotated[
    Optional[Path],
    typer.Option("--report", help="Where to write (default: the sweep's report folder).", show_default=False),
]
HOLDOUT_HELP = (
    "Fraction of the training normals held out to fix a decision threshold without test labels (e.g. 0.05). "
    "Default: 0 in the paper profile (every normal trains, as the authors do), 0.15 in the demo profile."
)


# Core messages say what to do in the API's terms (``force=True``, ``out=DIR``); the command line
# says it in its flags. Longest first, so ``out=DIR`` is not taken for a part of another term.
API_TERMS = {
    "force=True": "--force",
    "resume=True": "--resume",
    "data_root=DIR": "--data-root DIR",
    "weights=PATH": "--weights PATH",
    "executor='ray'": "--executor ray",
    "profile='demo'": "--profile demo",
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


def _version(value: bool):
    if value:
        console.print(f"medrecontrast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", metavar="", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
):
    pass


METHOD_SETTINGS_NOTE = (
    "Each method's own per-task settings (e.g. ReContrast's iterations, batch size, encoder BatchNorm and "
    "score) are listed under task_settings by `medrecontrast methods --json`."
)


@app.command("tasks")
def tasks_command(
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object (for scripts).")] = False,
):
    """List every task: modality, protocol, masks, sizes and how it finds each image's patient (each method's own
    settings: `methods --json`).

    Example: medrecontrast tasks
    """
    from medrecontrast.tasks import footnotes, layouts, registry_records, registry_rows

    rows = registry_rows()
    notes = [*footnotes(), METHOD_SETTINGS_NOTE]
    if as_json:
        print(json.dumps({"tasks": registry_records(), "layouts": layouts(), "notes": notes}))
        return
    table = Table(title="medrecontrast tasks", show_lines=False)
    for column in rows[0]:
        table.add_column(column, no_wrap=column not in ("train | test", "patients"))
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    for note in notes:
        console.print(escape(note))
    console.print("Files each task expects under the data root:")
    for label, layout in layouts().items():
        console.print(f"  {escape(label)}: {escape(layout)}", highlight=False, soft_wrap=True)
    console.print(
        f"Real tasks read their files from --data-root or ${DATA_ROOT_ENV}; see README 'Pointing it at real data'."
    )


@app.command("methods")
def methods_command(
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object (for scripts).")] = False,
):
    """List every registered method with each of its options and their defaults.

    Example: medrecontrast methods
    """
    import dataclasses

    from medrecontrast.models import DETECTORS, registered_methods
    from medrecontrast.tasks.registry import families

    examples = [(label, task) for family in families().values() for label, task in family.examples()]
    methods = {}
    for name in registered_methods():
        cls = DETECTORS[name]
        options = {
            f.name: (
                f.default
                if f.default is not dataclasses.MISSING
                else f.default_factory()
                if f.default_factory is not dataclasses.MISSING
                else None
            )
            for f in dataclasses.fields(cls.Config)
        }
        methods[name] = {
            "display_name": cls.display_name,
            "trains": cls.trains,
            "size_multiple": cls.size_multiple,
            "reference": cls.citation,
            "requires": cls.requires,
            "options": options,
        }
        # what differs from the authors' networks with a timm backbone (ReContrast, RD4AD: a generic decoder)
        methods[name]["backbone_notes"] = cls.notes({"backbone": "timm:<name>"})
        # the method's own per-task settings (e.g. ReContrast's TASK_SETTINGS), for the tasks `tasks` lists
        settings = {label: cls.task_options(task) for label, task in examples}
        methods[name]["task_settings"] = {label: options for label, options in settings.items() if options}
    from medrecontrast.catalog import NEEDS_DOWNLOAD, NOT_OFFERED

    refused = {f"anomalib:{name}": f"needs {what} (downloaded at run time)" for name, what in NEEDS_DOWNLOAD.items()}
    refused.update({f"anomalib:{name}": why for name, why in NOT_OFFERED.items()})
    if as_json:
        print(json.dumps({**methods, "not_offered": refused}, default=str))
        return
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
            "README."
        )
    )


@data_app.command("check")
@user_errors
def data_check(
    task: Annotated[str, typer.Argument(help="Task name, e.g. aptos, oct, isic, mvtec:bottle, folder:/data/xrays.")],
    data_root: DataRoot = None,
    as_json: Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object (for scripts).")] = False,
    deep: Annotated[bool, typer.Option("--deep", metavar="", help="Decode every image, not only its header.")] = False,
    duplicates: Annotated[
        bool,
        typer.Option(
            "--duplicates",
            metavar="",
            help="Also list near-duplicate images (perceptual hash; re-encoded or resized copies).",
        ),
    ] = False,
    slice_axis: Annotated[int, typer.Option(help="Axis along which 3-D NIfTI volumes are sliced (folder tasks).")] = 2,
    patient: Annotated[
        Optional[str],
        typer.Option(
            help="Who each image belongs to (folder tasks): subfolder, file, or a regular expression with one group "
            "over the path below the class folder. Default: sub-folders, DICOM PatientID, volumes."
        ),
    ] = None,
    task_option: Annotated[
        Optional[list[str]],
        typer.Option(
            "--task-option",
            help="An option of the task itself, KEY=VALUE (as [task.T.data] in a sweep file), e.g. missing=skip.",
        ),
    ] = None,
    window: Annotated[
        Optional[str],
        typer.Option(
            help="DICOM/NIfTI window 'center,width' or a preset (brain, soft-tissue, lung, ...; folder tasks)."
        ),
    ] = None,
):
    """Validate a task's files and print counts per split, label and class.

    Opens every image and mask (header and size; --deep decodes them) so that a broken file is
    found now, not at hour three of training; counts patients where the task knows them, and looks
    for patients and byte-identical files shared by training and test (--duplicates: near-duplicates
    too). Exits 1 when a file is broken or a folder task's training and test share a patient.

    Example: medrecontrast data check aptos --data-root /data --json
    """
    is_folder = task.lower().startswith("folder:")
    options = {"slice_axis": slice_axis, "window": window, "patient": patient} if is_folder else {}
    if window is not None and not is_folder:
        raise UserInputError(f"--window applies to folder: tasks; task '{task}' has its own reading rule")
    if patient is not None and not is_folder:
        raise UserInputError(f"--patient applies to folder: tasks; task '{task}' has its own patient rule")
    for given in task_option or []:
        key, sep, value = given.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"--task-option takes KEY=VALUE (e.g. missing=skip), got {given!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value  # a plain word: a string
    from medrecontrast.data.check import check_task_data
    from medrecontrast.tasks import get_task

    data = get_task(task, **options).load(data_root)
    report = check_task_data(data, deep=deep, progress=not as_json, leaks=True, near=duplicates)
    summary = report.to_dict()
    if as_json:
        print(json.dumps(summary, indent=None))
    else:
        _print_check(summary)
    if not report.ok:
        raise typer.Exit(1)


def _print_check(summary: dict) -> None:
    table = Table(title=f"task {summary['task']}")
    patients = summary.get("patients")
    for column in ("split", "label / class", "images", *(["patients"] if patients else [])):
        table.add_column(column)
    for split in ("train", "test"):
        for label, n in summary[split].items():
            table.add_row(split, label, str(n), *([str(patients[split].get(label, 0))] if patients else []))
            for category, count in summary["categories_by_label"][split].get(label, {}).items():
                # under the label it belongs to
                table.add_row("", f"  {escape(category)}", str(count), *([""] if patients else []), style="dim")
    console.print(table)
    console.print(
        escape(
            f"unit of analysis: {summary['unit']}"
            if patients
            else "unit of analysis: one image = one unit (the files name no patient)"
        ),
        highlight=False,
        soft_wrap=True,
    )
    for line in summary.get("labelling", []):
        err_console.print(f"[yellow]note:[/] {escape(line)}", highlight=False, soft_wrap=True)
    leaks = summary.get("leaks") or {}
    for index, line in enumerate(leaks.get("warnings", [])):
        # a refused leak is the shared patients', the first line where there are any (DataLeaks.lines)
        style = "[red]problem:[/]" if leaks.get("refused") and index == 0 else "[yellow]warning:[/]"
        err_console.print(f"{style} {escape(line)}", highlight=False, soft_wrap=True)
    console.print(f"test images with a pixel mask: {summary['masks']}; files opened: {summary['checked']}")
    if summary.get("masks_missing"):
        err_console.print(
            f"[yellow]warning:[/] {summary['masks_missing']} abnormal test image(s) have no mask: pixel AUROC and "
            "AUPRO will use the others only"
        )
    if summary["fundus_crop"]:
        console.print(f"fundus border crop: {summary['fundus_crop']}")
    for problem in summary["problems"][:20]:
        err_console.print(
            f"[red]problem:[/] {escape(str(problem['file']))}: {escape(str(problem['problem']))}",
            highlight=False,
            soft_wrap=True,
        )
    if len(summary["problems"]) > 20:
        err_console.print(f"... and {len(summary['problems']) - 20} more problems (use --json for all)")
    if not summary["ok"]:
        what = (
            "move each shared patient's images to one side" if leaks.get("refused") else "fix or remove the files above"
        )
        console.print(f"[red]FAILED[/]: {what}, then check again")
    elif summary["checked"] == "headers":
        console.print(
            "[green]OK[/] (headers and sizes only: a truncated or corrupt file passes this check; --deep decodes "
            "every image, as bench does before training)"
        )
    else:
        console.print("[green]OK[/] (every image and mask decoded)")


@data_app.command("prepare")
@user_errors
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="Dataset to prepare; only 'aptos' needs it.")],
    data_root: DataRoot = None,
):
    """Do slow preprocessing once: for APTOS, crop the fundus border and save 512x512 PNGs.

    Writes <data root>/aptos/prepared_512/ beside the originals (which are never modified); the
    aptos task then uses those files. Interrupted runs resume.

    Example: medrecontrast data prepare aptos --data-root /data
    """
    if dataset.lower() != "aptos":
        raise UserInputError(f"nothing to prepare for '{dataset}'; only 'aptos' has a preparation step.")
    from medrecontrast.tasks.aptos import prepare_aptos

    result = prepare_aptos(data_root)
    console.print(
        f"wrote {result['written']} cropped images to {result['folder']} ({result['already_present']} were already "
        "there)"
    )


@app.command("bench")
@user_errors
def bench(
    tasks: Annotated[
        Optional[list[str]],
        typer.Option(
            "--tasks", help="Tasks to run (default: the built-in synthetic tasks, demo profile).", show_default=False
        ),
    ] = None,
    methods: Annotated[
        Optional[list[str]],
        typer.Option(
            "--methods",
            help="Methods or a config's variants (default: ReContrast, RD4AD and PatchCore, every method but those "
            "that need weights you fetch first, such as Dinomaly; `medrecontrast methods` lists them).",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[
        Optional[list[int]],
        typer.Option("--seeds", help="Seeds (default: demo 0 1, paper and lite 0 1 2).", show_default=False),
    ] = None,
    profile: Annotated[
        Optional[ProfileChoice],
        typer.Option(
            "--profile",
            help="paper (WRN50-2, ImageNet weights, paper sizes), demo (resnet18, random weights, 64 px, minutes on a "
            "CPU) or lite (EfficientNet-Lite0 with ImageNet weights that install offline, 224 px, minutes per run on a "
            "CPU). Default: demo for the built-in tasks, else paper.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="TOML file with any of these settings plus per-task/per-method overrides.",
            show_default=False,
        ),
    ] = None,
    data_root: DataRoot = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Sweep folder (default: runs/<name>).", show_default=False)
    ] = None,
    report: Annotated[
        Optional[Path], typer.Option("--report", help="Report folder (default: reports/<name>).", show_default=False)
    ] = None,
    executor: Annotated[
        Optional[ExecutorChoice],
        typer.Option(
            "--executor", help="local (one run after the other) or ray (one Ray task per run).", show_default=False
        ),
    ] = None,
    address: Annotated[
        Optional[str],
        typer.Option(
            "--address", help="Ray cluster to join (e.g. auto); default: a local Ray instance.", show_default=False
        ),
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            "--weights", help="Local file with the backbone's ImageNet weights (no download).", show_default=False
        ),
    ] = None,
    device: Annotated[
        Optional[str],
        typer.Option(
            "--device",
            help="Where every run computes: auto (a GPU if there is one), cpu, cuda or cuda:<index>.",
            show_default=False,
        ),
    ] = None,
    holdout: Annotated[Optional[float], typer.Option("--holdout", help=HOLDOUT_HELP, show_default=False)] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            metavar="",
            help="Plan and check everything (names, options, data, weights, disk), print the plan with each run's "
            "settings, disk and expected time, and exit without training.",
        ),
    ] = False,
    keep_checkpoints: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoints",
            metavar="",
            help="Keep each finished run's checkpoint.pt (by default it is deleted when the run finishes: model.pt "
            "holds the fitted detector).",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", metavar="", help="Continue interrupted runs from their checkpoints and retry failed ones."
        ),
    ] = False,
    no_report: Annotated[
        bool,
        typer.Option(
            "--no-report", metavar="", help="Only run; make tables and figures later with `tables`/`figures`."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            metavar="",
            help="Redo every planned run from scratch (e.g. after changing settings of failed runs); their old "
            "results are deleted.",
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", metavar="", help="Print failures only (bench.log in the sweep folder keeps every line)."
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", metavar="", help="A plain progress line for every training iteration.")
    ] = False,
):
    """Train and evaluate every task x method x seed, then write tables, figures and a report.

    Finished runs are skipped, so the same command continues a sweep after a crash or Ctrl-C
    (add --resume to continue interrupted runs); a failed run is recorded and the others go on.

    Examples:
      medrecontrast bench
      medrecontrast bench --tasks aptos oct isic --seeds 0 1 2 --data-root /data
      medrecontrast bench --config sweep.toml --executor ray --address auto
    """
    _quick_checks(tasks=tasks, methods=None if config else methods, holdout=holdout, report=report, sweep_folder=None)
    if config is not None:  # a TOML mistake answered before torch loads (it took ~9 s)
        from medrecontrast.sweepfile import read_sweep_file

        raw, _ = read_sweep_file(config)
        _quick_checks(tasks=raw.get("tasks") if not tasks else None, methods=None)
    from medrecontrast.bench import (
        SweepConfig,
        build_report,
        load_sweep_config,
        run_sweep,
    )
    from medrecontrast.tasks import expand_tasks

    flags = dict(
        tasks=tasks,
        methods=methods,
        seeds=seeds,
        profile=profile.value if profile else None,
        data_root=_str(data_root),
        out=_str(out),
        report=_str(report),
        executor=executor.value if executor else None,
        address=address,
        weights=_str(weights),
    )
    sweep = (
        load_sweep_config(config, **flags)
        if config
        else SweepConfig(**{k: v for k, v in flags.items() if v is not None})
    )
    # the command line's settings: one more layer, over every section of the file
    given = {"holdout": holdout, "device": device, "keep_checkpoints": keep_checkpoints or None}
    sweep.flags = {**sweep.flags, **{k: v for k, v in given.items() if v is not None}}
    sweep = sweep.resolved()
    if quiet and verbose:
        raise UserInputError("--quiet and --verbose exclude each other; choose one")
    progress = False if quiet else 1 if verbose else True
    if dry_run:
        _print_dry_run(sweep, resume=resume, force=force)
        return

    def announce(specs) -> None:  # once the plan is valid (a bad option is reported without a plan line before it)
        if not quiet:
            tasks_planned = len(expand_tasks(sweep.tasks))
            console.print(
                f"sweep [bold]{escape(sweep.name)}[/]: {tasks_planned} task(s) x {len(sweep.methods)} method(s) x "
                f"{len(sweep.seeds)} seed(s) = {len(specs)} runs, profile {sweep.profile}, executor "
                f"{sweep.executor} -> {escape(str(sweep.out))} (an ETA follows each finished run)"
            )

    began = time.perf_counter()
    try:
        outcomes = run_sweep(
            sweep,
            resume=resume,
            command=" ".join(["medrecontrast", *sys.argv[1:]]),
            force=force,
            progress=progress,
            quiet=quiet,
            on_planned=announce,
        )
    except KeyboardInterrupt as exc:
        from medrecontrast.bench.executors import say
        from medrecontrast.signals import interruption_of

        name, code = interruption_of(exc)
        again = _continue_command()
        say(
            f"[yellow]interrupted by {name}[/] ({escape(str(exc) or 'Ctrl-C')}): finished runs are kept, the run in "
            f"progress keeps its last checkpoint and is marked interrupted; continue with: {escape(again)}",
            Path(sweep.out) / "bench.log" if (Path(sweep.out) / "bench.log").exists() else None,
        )
        raise typer.Exit(code) from None
    counts = Counter(outcome.status for outcome in outcomes)
    from medrecontrast.bench.executors import duration_text

    console.print(
        f"runs: {', '.join(f'{n} {s}' for s, n in counts.items())} in {duration_text(time.perf_counter() - began)}"
    )
    if not no_report:
        readme = build_report(sweep.out, sweep.report)
        answers = readme.parent / "answers.md"
        for line in answers.read_text().splitlines() if answers.is_file() else []:
            console.print(escape(line), highlight=False, soft_wrap=True)
        console.print(f"report: {escape(str(readme))}", highlight=False)
    if counts.get("failed"):
        err_console.print(
            f"[red]{counts['failed']} run(s) failed[/]; their errors are in the report and in each run's status.json. "
            "Rerun with --resume to retry them (with the settings you have corrected since, if any: a failed run is "
            "redone from scratch with them)."
        )
        raise typer.Exit(1)


@app.command("tables")
@user_errors
def tables_command(
    sweep: SweepFolder,
    report: ReportFolder = None,
):
    """Collect every finished run into results.csv/.parquet and write the paper-style tables.

    Example: medrecontrast tables runs/demo
    """
    _quick_checks(sweep_folder=sweep, report=report)
    from medrecontrast.bench import (
        collect_results,
        paper_table,
        report_folder,
        write_tables,
    )

    results = collect_results(sweep)
    written = write_tables(results, report or report_folder(sweep))
    frame = paper_table(results, "rich")  # a table for the terminal, not raw Markdown with ** markers
    table = Table(title=f"{escape(str(sweep))}: mean ± std over seeds, in % (best per task in bold)")
    for column in frame.columns:
        table.add_column(escape(str(column)), overflow="fold")
    for row in frame.itertuples(index=False):
        table.add_row(*(str(value) for value in row))
    console.print(table)
    console.print(escape(f"wrote {', '.join(str(p) for p in written.values())}"), highlight=False)


@app.command("figures")
@user_errors
def figures_command(
    sweep: SweepFolder,
    report: ReportFolder = None,
):
    """Draw ROC curves, AUROC bars, score distributions, anomaly-map grids and loss curves (PNG + PDF).

    Example: medrecontrast figures runs/demo
    """
    _quick_checks(sweep_folder=sweep, report=report)
    from medrecontrast.bench import collect_results, make_figures, report_folder
    from medrecontrast.bench.statistics import sweep_statistics

    results = collect_results(sweep)
    # with the statistics: the AUROC intervals, the forest figure and the critical-difference diagram, as `report`
    written = make_figures(results, report or report_folder(sweep), sweep_statistics(results))
    console.print(
        escape(f"wrote {len(written)} figure(s) (PNG and PDF) to {Path(report or report_folder(sweep))}"),
        highlight=False,
    )


@app.command("report")
@user_errors
def report_command(
    sweep: SweepFolder,
    report: ReportFolder = None,
):
    """Rebuild a sweep's report folder: tables, figures and README.md.

    Example: medrecontrast report runs/demo
    """
    _quick_checks(sweep_folder=sweep, report=report)
    from medrecontrast.bench import build_report, report_folder

    target = Path(report) if report else report_folder(sweep)
    # said before writing: without --report the folder is the one the sweep recorded, which may lie elsewhere
    console.print(escape(f"writing the report of {sweep} to {target.resolve()}"), highlight=False)
    console.print(escape(f"report: {build_report(sweep, target)}"), highlight=False)


def _quick_checks(
    *,
    tasks=None,
    methods=None,
    holdout: float | None = None,
    report=None,
    run=None,
    sweep_folder=None,
    images=None,
) -> None:
    """The mistakes people make, answered before torch, MONAI or the models are imported (a misspelled task or
    method, a hold-out out of range, a missing run or sweep folder, a report folder that is not the suite's):
    each check here is the same one the API makes later, with the same message, only earlier."""
    if tasks:
        from medrecontrast.tasks import expand_tasks

        expand_tasks(list(tasks))
    if methods:
        from medrecontrast.catalog import check_method_names

        check_method_names(methods)
    if holdout is not None and not 0 <= holdout < 1:
        raise UserInputError(f"holdout must be a fraction in [0, 1), got {holdout!r} (set in --holdout)")
    if report is not None:
        from medrecontrast.paths import claim_report_folder

        claim_report_folder(report, write=False)
    if run is not None and not (Path(run) / "config.json").is_file():
        raise UserInputError(f"{run} is not a run folder (no config.json): give a folder written by train or bench.")
    if sweep_folder is not None and not (Path(sweep_folder) / "sweep.json").is_file():
        raise UserInputError(
            f"{sweep_folder} is not a sweep folder (no sweep.json); run `medrecontrast bench --out {sweep_folder}` "
            "first."
        )
    for image in images or ():
        if not Path(image).exists():
            raise UserInputError(f"{image} does not exist (give image files or folders).")


def _str(path) -> str | None:
    return None if path is None else str(path)


@app.command("train")
@user_errors
def train(
    task: Annotated[str, typer.Option("--task", help="Task name, e.g. synth-oct, aptos, mvtec:bottle.")],
    method: Annotated[
        str, typer.Option("--method", help="A registered method (`medrecontrast methods` lists them).")
    ] = "recontrast",
    seed: Annotated[int, typer.Option("--seed", help="Seed for Python, NumPy, torch and the data order.")] = 0,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", help="Run folder (default: runs/<task>-<method>-s<seed>).", show_default=False),
    ] = None,
    profile: Annotated[
        Optional[ProfileChoice],
        typer.Option(
            "--profile",
            help="paper: WRN50-2, ImageNet weights, paper sizes; demo: resnet18, no download, 64 px; lite: "
            "EfficientNet-Lite0 with offline ImageNet weights, 224 px. Default: demo for a built-in task, else paper.",
            show_default=False,
        ),
    ] = None,
    iters: Annotated[
        Optional[int], typer.Option("--iters", help="Override the number of training iterations.", show_default=False)
    ] = None,
    holdout: Annotated[Optional[float], typer.Option("--holdout", help=HOLDOUT_HELP, show_default=False)] = None,
    resume: Annotated[
        bool, typer.Option("--resume", metavar="", help="Continue an interrupted run from its last checkpoint.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Overwrite a finished run in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="No training progress.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", metavar="", help="A plain progress line for every training iteration.")
    ] = False,
    weights: Annotated[
        Optional[Path],
        typer.Option(
            "--weights", help="Local file with the backbone's ImageNet weights (no download).", show_default=False
        ),
    ] = None,
    data_root: DataRoot = None,
    device: Annotated[
        Optional[str],
        typer.Option(
            "--device",
            help="Where every run computes: auto (a GPU if there is one), cpu, cuda or cuda:<index>.",
            show_default=False,
        ),
    ] = None,
    keep_checkpoints: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoints",
            metavar="",
            help="Keep the finished run's checkpoint.pt (by default it is deleted when the run finishes: model.pt "
            "holds the fitted detector).",
        ),
    ] = False,
):
    """Train one method on one task with one seed, then evaluate it; everything lands in the run folder.

    Example: medrecontrast train --task synth-oct --method recontrast --seed 0 --out runs/oct-rc
    """
    _quick_checks(tasks=[task], methods=[method], holdout=holdout)
    from medrecontrast.run import default_profile, resolve_run_config, run_training
    from medrecontrast.tasks import get_task, task_slug

    profile = ProfileChoice(profile).value if profile is not None else default_profile([task])
    folder = out or Path("runs") / f"{task_slug(task)}-{method}-s{seed}"
    given = {"iters": iters, "holdout": holdout, "device": device, "keep_checkpoints": keep_checkpoints or None}
    flags = {k: v for k, v in given.items() if v is not None}
    the_task = get_task(task)
    config = resolve_run_config(
        the_task, method, seed, profile, layers=[("flags", flags)], weights=str(weights) if weights else None
    )
    try:
        metrics = run_training(
            config,
            folder,
            resume=resume,
            force=force,
            data_root=data_root,
            progress=False if quiet else 1 if verbose else True,
            task=the_task,
        )
    except KeyboardInterrupt as exc:
        from medrecontrast.signals import interruption_of

        name, code = interruption_of(exc)
        err_console.print(
            f"[yellow]interrupted by {name}[/] ({escape(str(exc) or 'Ctrl-C')}): {escape(str(folder))} keeps its last "
            f"checkpoint and is marked interrupted; continue with: {escape(_continue_command())}"
        )
        raise typer.Exit(code) from None
    _print_metrics(folder, metrics)


@app.command("evaluate")
@user_errors
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="A run folder written by `medrecontrast train`.")],
    data_root: DataRoot = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            metavar="",
            help="Replace the run's results (kept under previous/, recorded in evaluations.json), also if its "
            "recorded options no longer resolve to the same values.",
        ),
    ] = False,
):
    """Re-score a saved model on its task's test set without retraining (a run that has results needs --force).

    Example: medrecontrast evaluate --run runs/oct-rc
    """
    _quick_checks(run=run)
    from medrecontrast.run import evaluate_run

    _print_metrics(run, evaluate_run(run, data_root, force=force))


@app.command("predict")
@user_errors
def predict(
    images: Annotated[
        list[Path], typer.Argument(help="Image files or folders (searched recursively), any format the suite reads.")
    ],
    run: Annotated[
        Optional[Path],
        typer.Option("--run", help="A finished run folder (written by `train` or `bench`).", show_default=False),
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model",
            help="An exported file (`medrecontrast export`): .onnx (onnxruntime) or .torchscript.pt (torch.jit); "
            "runs without the suite's training code.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Where to write (default: <run>/predictions/<UTC time>, or beside the --model file); must be new or "
            "empty.",
            show_default=False,
        ),
    ] = None,
):
    """Score new images with a run's saved model (--run) or an exported file (--model), without retraining:
    scores.csv (and a label at the run's label-free threshold where it has one) and anomaly-map overlays as PNG.

    Example: medrecontrast predict --run runs/demo/synth-oct/patchcore/seed-0 scans/
    """
    if (run is None) == (model is None):
        raise UserInputError("give exactly one of --run RUN_FOLDER or --model FILE (an exported file).")
    _quick_checks(run=run, images=images)
    if model is not None:
        from medrecontrast.deploy.predict import predict_with_model

        folder = predict_with_model(model, [str(p) for p in images], out)
    else:
        from medrecontrast.run import predict_images

        folder = predict_images(run, [str(p) for p in images], out)
    console.print(escape(f"scores: {folder / 'scores.csv'}; overlays: {folder / 'overlays'}"), highlight=False)
    from medrecontrast.deploy.outputs import UNREADABLE

    if (folder / UNREADABLE).is_file():  # the readable images were scored; the others are listed, and the exit says so
        import pandas as pd

        for row in pd.read_csv(folder / UNREADABLE).itertuples():
            err_console.print(f"[red]not scored:[/] {escape(row.path)}: {escape(str(row.problem))}", highlight=False)
        raise typer.Exit(1)


ExportFormat = enum.Enum("ExportFormat", {name: name for name in ("onnx", "torchscript")}, type=str)


@app.command("export")
@user_errors
def export(
    run: Annotated[Path, typer.Option("--run", help="A finished run folder (written by `train` or `bench`).")],
    format: Annotated[
        ExportFormat, typer.Option("--format", help="onnx (onnxruntime; recommended) or torchscript (torch.jit).")
    ] = ExportFormat.onnx,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="The file to write (default: <run>/export/model.onnx or model.torchscript.pt); never overwritten "
            "without --force.",
            show_default=False,
        ),
    ] = None,
    check: Annotated[
        Optional[int],
        typer.Option(
            "--check",
            min=1,
            help="Compare the file with the checkpoint on N of the run's test images, spread over the set "
            "(default: all of them).",
            show_default=False,
        ),
    ] = None,
    data_root: DataRoot = None,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Replace an existing --out file.")] = False,
    verify: Annotated[
        Optional[Path],
        typer.Option(
            "--verify",
            help="Write nothing: check that this exported file scores the run's test images as its checkpoint does.",
            show_default=False,
        ),
    ] = None,
):
    """Export a run's detector (pre- and post-processing included) and check that the file scores the run's test
    images as the checkpoint does; a file that does not is not written (exit 1, with the numbers). The measured
    differences, AUROC both ways and versions go into export.json beside the file.

    Example: medrecontrast export --run runs/demo/synth-oct/patchcore/seed-0 --format onnx
    """
    _quick_checks(run=run)
    if verify is not None:
        from medrecontrast.run.export import verify_export

        found = verify_export(run, verify, check=check, data_root=data_root, progress=True)
        console.print(
            escape(
                f"{verify} scores {found['checked_images']} test image(s) of {run} as its checkpoint does: largest "
                f"difference score {found['max_score_difference_relative']:.2g}, map "
                f"{found['max_map_difference_relative']:.2g} of the largest."
            ),
            highlight=False,
        )
        return
    from medrecontrast.run.export import export_run

    entry = export_run(run, format.value, out, check=check, data_root=data_root, force=force, progress=True)
    folder = Path(out).parent if out else run / "export"
    console.print(
        escape(
            f"{folder / entry['file']}: {entry['checked_images']} test image(s) checked; largest difference from the "
            f"checkpoint: score {entry['max_score_difference_relative']:.2g}, map "
            f"{entry['max_map_difference_relative']:.2g} of the largest (tolerance {entry['tolerance']['score']:g}, "
            f"{entry['tolerance']['map']:g}); image AUROC {entry['image_auroc_checkpoint']} checkpoint, "
            f"{entry['image_auroc_exported']} exported. Record: {folder / 'export.json'}"
        ),
        highlight=False,
    )


def _print_metrics(folder: Path, metrics: dict) -> None:
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


def _print_dry_run(sweep, *, resume: bool, force: bool) -> None:
    """``bench --dry-run``: the checked plan, then exit (nothing is written)."""
    from rich.table import Table

    from medrecontrast.bench.executors import duration_text
    from medrecontrast.bench.sweep import describe_plan, disk_needed, free_space, plan_sweep

    specs = plan_sweep(sweep, resume=resume, force=force)
    plan = describe_plan(specs)
    table = Table(title=f"plan of sweep {escape(sweep.name)} (profile {sweep.profile}) -> {escape(str(sweep.out))}")
    for column in plan.columns:
        table.add_column(column, overflow="fold")
    for row in plan.itertuples(index=False):
        table.add_row(*("–" if value is None or value != value else escape(str(value)) for value in row))
    console.print(table)
    todo = [(s.label, s.storage) for s, status in zip(specs, plan["status"]) if s.storage and status == "to do"]
    kept, transient = disk_needed(todo)
    free = free_space(sweep.out)
    expected = plan.loc[plan["status"] == "to do", "expected s"]
    time_line = (
        f"expected time of the runs to do: {duration_text(expected.sum())}"
        if len(expected) and expected.notna().all()
        else "expected time: no basis yet for every run (no finished run of its method in this sweep folder)"
    )
    console.print(
        f"{len(plan)} run(s), {int((plan['status'] == 'to do').sum())} to do; disk: about {kept / 2**20:,.0f} MiB "
        f"kept + {transient / 2**20:,.0f} MiB while a checkpoint is written, {free / 2**30:,.1f} GiB free; "
        f"{time_line}. Nothing was run (--dry-run).",
        highlight=False,
    )


def _continue_command() -> str:
    """This command line with ``--resume`` (once): what continues an interrupted run or sweep."""
    args = [a for a in sys.argv[1:] if a != "--resume"]
    return shlex.join(["medrecontrast", *args, "--resume"])


def main(argv: list[str] | None = None) -> None:
    """Console entry point; accepts ``--tasks a b c`` as well as ``--tasks a --tasks b``."""
    args = expand_variadic(list(sys.argv[1:] if argv is None else argv), VARIADIC_OPTIONS)
    import warnings

    # a warning to the user is one line that says what is wrong, not the source line that raised it
    warnings.formatwarning = _one_line_warning
    app(args=args, prog_name="medrecontrast")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
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
