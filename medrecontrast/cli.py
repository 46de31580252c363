"""The `medrecontrast` command: a thin typer layer over the Python API."""

from __future__ import annotations

import enum
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from medrecontrast import __version__
from medrecontrast.checks import check_inputs
from medrecontrast.errors import UserInputError
from medrecontrast.terminal import (  # noqa: F401  (in_flags and expand_variadic: part of the command line's API)
    console,
    continue_command,
    err_console,
    expand_variadic,
    in_flags,
    interruptions,
    key_values,
    one_line_warning,
    print_frame,
    print_methods,
    print_metrics,
    print_plan,
    print_tasks,
    progress_of,
    user_errors,
)

# The command line starts in well under a second (`--help`, `tasks`, argument errors): torch, MONAI,
# scikit-learn and matplotlib are imported inside the commands that need them, never here. So the
# few names that --help shows are spelled here instead of imported from the modules that own them
# (run.PROFILES, bench.config.EXECUTORS, tasks.DATA_ROOT_ENV); tests/test_cli.py checks that they agree.
PROFILE_NAMES = ("paper", "demo", "lite", "tiny")
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

# Options that take several values after one flag (`--tasks aptos oct isic`); click wants the flag
# repeated, so `main` rewrites argv before typer sees it.
VARIADIC_OPTIONS = ("--tasks", "--methods", "--seeds")


def _flag(name: str, help: str, *aliases: str):
    """A boolean flag (no value) in the help's style of this command line."""
    return Annotated[bool, typer.Option(name, *aliases, metavar="", help=help)]


def _given(name: str, help: str, kind=str, **options):
    """An optional value whose absence means "the profile's or the file's value" (no default shown)."""
    return Annotated[Optional[kind], typer.Option(name, help=help, show_default=False, **options)]


DataRoot = _given("--data-root", f"Folder holding one sub-folder per dataset (default: ${DATA_ROOT_ENV}).", Path)
SweepFolder = Annotated[Path, typer.Argument(help="A sweep folder written by `bench`, e.g. runs/demo.")]
ReportFolder = _given("--report", "Where to write (default: the sweep's report folder).", Path)
HOLDOUT_HELP = (
    "Fraction of the training normals held out to fix a decision threshold without test labels (e.g. 0.05). "
    "Default: 0 in the paper profile (every normal trains, as the authors do), 0.05 in lite, 0.15 in demo and tiny."
)


# The options several commands share, declared once.
AsJson = _flag("--json", "Print one JSON object (for scripts).")
Profile = _given(
    "--profile",
    "paper (WRN50-2, ImageNet weights, paper sizes), demo (EfficientNet-Lite0 with the ImageNet weights installed "
    "with the package, 128 px, short schedules: minutes on a CPU), lite (the same weights at 224 px, minutes per run "
    "on a CPU) or tiny (resnet18 from random weights, 64 px: seconds per run, for tests). Default: demo for the "
    "built-in tasks, else paper.",
    ProfileChoice,
)
Weights = _given("--weights", "Local file with the backbone's ImageNet weights (no download).", Path)
Device = _given("--device", "Where every run computes: auto (a GPU if there is one), cpu, cuda or cuda:<index>.")
Holdout = _given("--holdout", HOLDOUT_HELP, float)
KeepCheckpoints = _flag(
    "--keep-checkpoints",
    "Keep each finished run's training checkpoint (by default it is deleted when the run finishes: the saved model "
    "holds the fitted detector).",
)
Resume = _flag("--resume", "Continue interrupted runs from their checkpoints (bench: and retry failed ones).")
Quiet = _flag("--quiet", "Print no training progress (bench: failures only; its bench.log keeps every line).", "-q")
Verbose = _flag("--verbose", "A plain progress line for every training iteration.", "-v")


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
    as_json: AsJson = False,
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
    print_tasks(rows, notes, layouts(), DATA_ROOT_ENV)


@app.command("methods")
def methods_command(
    as_json: AsJson = False,
):
    """List every registered method with each of its options and their defaults.

    Example: medrecontrast methods
    """
    from medrecontrast.models.catalogue import method_catalogue

    methods = method_catalogue()
    refused = methods.pop("not_offered")
    if as_json:
        print(json.dumps({**methods, "not_offered": refused}, default=str))
        return
    print_methods(methods, refused)


@data_app.command("check")
@user_errors
def data_check(
    task: Annotated[str, typer.Argument(help="Task name, e.g. aptos, oct, isic, mvtec:bottle, folder:/data/xrays.")],
    data_root: DataRoot = None,
    as_json: AsJson = False,
    deep: _flag("--deep", "Decode every image, not only its header.") = False,
    duplicates: _flag(
        "--duplicates", "Also list near-duplicate images (perceptual hash; re-encoded or resized copies)."
    ) = False,
    slice_axis: Annotated[int, typer.Option(help="Axis along which 3-D NIfTI volumes are sliced (folder tasks).")] = 2,
    patient: _given(
        "--patient",
        "Who each image belongs to (folder tasks): subfolder, file, or a regular expression with one group over the "
        "path below the class folder. Default: sub-folders, DICOM PatientID, volumes.",
    ) = None,
    task_option: _given(
        "--task-option",
        "An option of the task itself, KEY=VALUE (as [task.T.data] in a sweep file), e.g. missing=skip.",
        list[str],
    ) = None,
    window: _given(
        "--window", "DICOM/NIfTI window 'center,width' or a preset (brain, soft-tissue, lung, ...; folder tasks)."
    ) = None,
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
    options.update(key_values(task_option or [], "--task-option"))
    from medrecontrast.data.check import check_task_data, print_check
    from medrecontrast.tasks import get_task

    data = get_task(task, **options).load(data_root)
    report = check_task_data(data, deep=deep, progress=not as_json, leaks=True, near=duplicates)
    summary = report.to_dict()
    if as_json:
        print(json.dumps(summary, indent=None))
    else:
        print_check(summary, console, err_console)
    if not report.ok:
        raise typer.Exit(1)


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
    tasks: _given("--tasks", "Tasks to run (default: the built-in synthetic tasks, demo profile).", list[str]) = None,
    methods: _given(
        "--methods",
        "Methods or a config's variants (default: ReContrast, RD4AD and PatchCore, every method but those that need "
        "weights you fetch first, such as Dinomaly; `medrecontrast methods` lists them).",
        list[str],
    ) = None,
    seeds: _given("--seeds", "Seeds (default: demo and tiny 0 1, paper and lite 0 1 2).", list[int]) = None,
    profile: Profile = None,
    config: _given("--config", "TOML file with any of these settings plus per-task/per-method overrides.", Path) = None,
    data_root: DataRoot = None,
    out: _given("--out", "Sweep folder (default: runs/<name>).", Path) = None,
    report: _given("--report", "Report folder (default: reports/<name>).", Path) = None,
    executor: _given(
        "--executor", "local (one run after the other) or ray (one Ray task per run).", ExecutorChoice
    ) = None,
    address: _given("--address", "Ray cluster to join (e.g. auto); default: a local Ray instance.") = None,
    weights: Weights = None,
    device: Device = None,
    holdout: Holdout = None,
    dry_run: _flag(
        "--dry-run",
        "Plan and check everything (names, options, data, weights, disk), print the plan with each run's settings, "
        "disk and expected time, and exit without training.",
    ) = False,
    keep_checkpoints: KeepCheckpoints = False,
    resume: Resume = False,
    no_report: _flag("--no-report", "Only run; make tables and figures later with `tables`/`figures`.") = False,
    force: _flag(
        "--force",
        "Redo every planned run from scratch (e.g. after changing settings of failed runs); their old results are "
        "deleted.",
    ) = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
):
    """Train and evaluate every task x method x seed, then write tables, figures and a report.

    Finished runs are skipped, so the same command continues a sweep after a crash or Ctrl-C
    (add --resume to continue interrupted runs); a failed run is recorded and the others go on.

    Examples:
      medrecontrast bench
      medrecontrast bench --tasks aptos oct isic --seeds 0 1 2 --data-root /data
      medrecontrast bench --config sweep.toml --executor ray --address auto
    """
    check_inputs(tasks=tasks, methods=None if config else methods, holdout=holdout, report=report, sweep_folder=None)
    if config is not None:  # a TOML mistake answered before torch loads (it took ~9 s)
        from medrecontrast.sweepfile import read_sweep_file

        raw, _ = read_sweep_file(config)
        check_inputs(tasks=raw.get("tasks") if not tasks else None, methods=None)
    from medrecontrast.bench import run_sweep, write_report
    from medrecontrast.bench.config import sweep_from_command_line
    from medrecontrast.bench.store import sweep_log

    fields = dict(tasks=tasks, methods=methods, seeds=seeds, profile=profile.value if profile else None)
    fields.update(data_root=_str(data_root), out=_str(out), report=_str(report), weights=_str(weights))
    fields.update(executor=executor.value if executor else None, address=address)
    settings = {"holdout": holdout, "device": device, "keep_checkpoints": keep_checkpoints or None}
    sweep = sweep_from_command_line(config, fields, settings)
    progress = progress_of(quiet, verbose)
    if dry_run:
        from medrecontrast.bench.sweep import dry_run

        print_plan(sweep, *dry_run(sweep, resume=resume, force=force))
        return

    def announce(specs) -> None:  # once the plan is valid (a bad option is reported without a plan line before it)
        if not quiet:
            tasks_planned = len({spec.task for spec in specs})
            console.print(
                f"sweep [bold]{escape(sweep.name)}[/]: {tasks_planned} task(s) x {len(sweep.methods)} method(s) x "
                f"{len(sweep.seeds)} seed(s) = {len(specs)} runs, profile {sweep.profile}, executor "
                f"{sweep.executor} -> {escape(str(sweep.out))} (an ETA follows each finished run)"
            )

    began = time.perf_counter()
    with interruptions("finished runs are kept, the run in progress", sweep_log(sweep.out)):
        outcomes = run_sweep(
            sweep,
            resume=resume,
            command=" ".join(["medrecontrast", *sys.argv[1:]]),
            force=force,
            progress=progress,
            quiet=quiet,
            on_planned=announce,
        )
    counts = Counter(outcome.status for outcome in outcomes)
    from medrecontrast.bench.executors import duration_text

    console.print(
        f"runs: {', '.join(f'{n} {s}' for s, n in counts.items())} in {duration_text(time.perf_counter() - began)}"
    )
    if not no_report:
        written = write_report(sweep.out, sweep.report)
        for line in written.answers:
            console.print(escape(line), highlight=False, soft_wrap=True)
        console.print(f"report: {escape(str(written.readme))}", highlight=False)
    if counts.get("failed"):
        err_console.print(
            f"[red]{counts['failed']} run(s) failed[/]; their errors are in the report and in each run folder's "
            "status. Rerun with --resume to retry them (with the settings you have corrected since, if any: a failed "
            "run is redone from scratch with them)."
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
    check_inputs(sweep_folder=sweep, report=report)
    from medrecontrast.bench import collect_results, paper_table, report_folder, write_tables

    results = collect_results(sweep)
    written = write_tables(results, report or report_folder(sweep))
    # a table for the terminal, not raw Markdown with ** markers
    print_frame(paper_table(results, "rich"), f"{sweep}: mean ± std over seeds, in % (best per task in bold)")
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
    check_inputs(sweep_folder=sweep, report=report)
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
    check_inputs(sweep_folder=sweep, report=report)
    from medrecontrast.bench import build_report, report_folder

    target = Path(report) if report else report_folder(sweep)
    # said before writing: without --report the folder is the one the sweep recorded, which may lie elsewhere
    console.print(escape(f"writing the report of {sweep} to {target.resolve()}"), highlight=False)
    console.print(escape(f"report: {build_report(sweep, target)}"), highlight=False)


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
    out: _given("--out", "Run folder (default: runs/<task>-<method>-s<seed>).", Path) = None,
    profile: Profile = None,
    iters: _given("--iters", "Override the number of training iterations.", int) = None,
    holdout: Holdout = None,
    resume: Resume = False,
    force: _flag("--force", "Overwrite a finished run in --out.") = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    weights: Weights = None,
    data_root: DataRoot = None,
    device: Device = None,
    keep_checkpoints: KeepCheckpoints = False,
):
    """Train one method on one task with one seed, then evaluate it; everything lands in the run folder.

    Example: medrecontrast train --task synth-oct --method recontrast --seed 0 --out runs/oct-rc
    """
    check_inputs(tasks=[task], methods=[method], holdout=holdout)
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
    with interruptions(f"{folder}", None):
        metrics = run_training(
            config,
            folder,
            resume=resume,
            force=force,
            data_root=data_root,
            progress=progress_of(quiet, verbose),
            task=the_task,
        )
    print_metrics(folder, metrics)


@app.command("evaluate")
@user_errors
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="A run folder written by `medrecontrast train`.")],
    data_root: DataRoot = None,
    force: _flag(
        "--force",
        "Replace the run's results (the previous ones are kept under previous/ and the re-evaluation is recorded), "
        "also if its recorded options no longer resolve to the same values.",
    ) = False,
):
    """Re-score a saved model on its task's test set without retraining (a run that has results needs --force).

    Example: medrecontrast evaluate --run runs/oct-rc
    """
    check_inputs(run=run)
    from medrecontrast.run import evaluate_run

    print_metrics(run, evaluate_run(run, data_root, force=force))


@app.command("predict")
@user_errors
def predict(
    images: Annotated[
        list[Path], typer.Argument(help="Image files or folders (searched recursively), any format the suite reads.")
    ],
    run: _given("--run", "A finished run folder (written by `train` or `bench`).", Path) = None,
    model: _given(
        "--model",
        "An exported file (`medrecontrast export`): .onnx (onnxruntime) or .torchscript.pt (torch.jit); runs without "
        "the suite's training code.",
        Path,
    ) = None,
    out: _given(
        "--out",
        "Where to write (default: <run>/predictions/<UTC time>, or beside the --model file); must be new or empty.",
        Path,
    ) = None,
):
    """Score new images with a run's saved model (--run) or an exported file (--model), without retraining:
    scores.csv (and a label at the run's label-free threshold where it has one) and anomaly-map overlays as PNG.

    Example: medrecontrast predict --run runs/demo/synth-oct/patchcore/seed-0 scans/
    """
    if (run is None) == (model is None):
        raise UserInputError("give exactly one of --run RUN_FOLDER or --model FILE (an exported file).")
    check_inputs(run=run, images=images)
    if model is not None:
        from medrecontrast.deploy.predict import predict_with_model

        folder = predict_with_model(model, [str(p) for p in images], out)
    else:
        from medrecontrast.run import predict_images

        folder = predict_images(run, [str(p) for p in images], out)
    from medrecontrast.deploy.outputs import PREDICTION_SCORES, UNREADABLE

    console.print(escape(f"scores: {folder / PREDICTION_SCORES}; overlays: {folder / 'overlays'}"), highlight=False)

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
    out: _given(
        "--out",
        "The file to write (default: <run>/export/model.onnx or model.torchscript.pt); never overwritten without "
        "--force.",
        Path,
    ) = None,
    check: _given(
        "--check",
        "Compare the file with the checkpoint on N of the run's test images, spread over the set (default: all).",
        int,
        min=1,
    ) = None,
    data_root: DataRoot = None,
    force: _flag("--force", "Replace an existing --out file.") = False,
    verify: _given(
        "--verify",
        "Write nothing: check that this exported file scores the run's test images as its checkpoint does.",
        Path,
    ) = None,
):
    """Export a run's detector (pre- and post-processing included) and check that the file scores the run's test
    images as the checkpoint does; a file that does not is not written (exit 1, with the numbers). The measured
    differences, AUROC both ways and versions go into export.json beside the file.

    Example: medrecontrast export --run runs/demo/synth-oct/patchcore/seed-0 --format onnx
    """
    check_inputs(run=run)
    if verify is not None:
        from medrecontrast.run.export import describe_verification, verify_export

        found = verify_export(run, verify, check=check, data_root=data_root, progress=True)
        console.print(escape(describe_verification(found, verify, run)), highlight=False)
        return
    from medrecontrast.run.export import describe_export, export_run

    entry = export_run(run, format.value, out, check=check, data_root=data_root, force=force, progress=True)
    console.print(escape(describe_export(entry, run, out)), highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Console entry point; accepts ``--tasks a b c`` as well as ``--tasks a --tasks b``."""
    args = expand_variadic(list(sys.argv[1:] if argv is None else argv), VARIADIC_OPTIONS)
    import warnings

    # a warning to the user is one line that says what is wrong, not the source line that raised it
    warnings.formatwarning = one_line_warning
    app(args=args, prog_name="medrecontrast")
