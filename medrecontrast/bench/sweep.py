"""Plan a sweep, check everything that can be checked before training, run it, summarise it.

``run_sweep(SweepConfig(...))`` is what ``medrecontrast bench`` calls and what a notebook can call.
Finished runs are skipped, so rerunning the same command after a crash or Ctrl-C continues where
it stopped (an interrupted run is redone from its last checkpoint with ``resume=True``); a failed
run is recorded with its error and the others go on.
"""

from __future__ import annotations

import functools
import time
import warnings
from pathlib import Path

from rich.markup import escape

from medrecontrast.bench.config import SweepConfig, locate_option
from medrecontrast.bench.executors import Outcome, console, duration_text, run_local, run_ray, say
from medrecontrast.bench.store import (
    Claim,
    RunSpec,
    check_sweep_folder,
    open_sweep_folder,
    run_folder,
    run_status,
    sweep_log,
)
from medrecontrast.compute import require_device
from medrecontrast.data.check import check_task_data
from medrecontrast.data.items import TaskData
from medrecontrast.data.leaks import enforce, find_leaks
from medrecontrast.errors import UserInputError
from medrecontrast.models.base import detector_class
from medrecontrast.paths import cache_dir, claim_report_folder, require_writable_folder, write_json
from medrecontrast.run import RunConfig, RunFolder, accepted_keys, environment, resolve_run_config
from medrecontrast.run.split import holdout_split
from medrecontrast.tasks import expand_tasks, get_task


def plan_sweep(config: SweepConfig, resume: bool = False, force: bool = False) -> list[RunSpec]:
    """Every run of the sweep, checked before any training starts.

    Each run's :class:`~medrecontrast.run.RunConfig` is resolved here, once; the executor runs
    exactly these. Unknown tasks or methods, a missing data folder, a bad option, a run folder that
    holds another run (another :meth:`~medrecontrast.run.RunConfig.identity`: a changed device,
    worker count or a restated default is the same run), or unfinished runs without ``resume``: each
    raises :class:`UserInputError` here, saying what gets the user out. ``force`` redoes every
    planned run from scratch (e.g. after changing the learning rate of runs that failed), whatever
    its folder holds.
    """
    config = config.resolved()
    names = [t.name for t in expand_tasks(config.tasks)]
    tasks = {name: get_task(name, **config.task_options(name)) for name in names}
    _refuse_shared_folders(Path(config.out), Path(config.report))
    _warn_unreached_options(config)
    for name, task in tasks.items():  # before the folder checks below, which would blame a non-empty --out
        for part in task.members or (task,):  # a unified task's data are its members'
            _refuse_outputs_in_data(part.root(config.data_root), {"out": config.out, "report": config.report}, name)
    require_writable_folder(config.out, "out")
    check_sweep_folder(Path(config.out))
    claim_report_folder(
        config.report, write=False, sweep=config.out
    )  # a user's folder is refused now, not after hours of training
    specs = []
    disk: list[tuple[str, dict]] = []  # (run label, storage estimate) of every run to do
    # (task, holdout) -> how many training images its runs train on: the hold-out draw, made (and checked) once
    train_counts: dict = {}
    for device in sorted({str(config.flags.get("device", "auto")), *_devices_set(config)}):
        require_device(device)  # a missing GPU is refused now, once, not by every run in turn
    for name in names:
        task = tasks[name]
        data, fingerprint = _check_data(task, config.data_root)
        manifest = functools.cache(data.manifest)  # every file stat'ed once, and only if a finished run needs it
        for method in config.methods:
            base = config.base_method(method)
            layers = config.layers(name, method)
            if config.executor == "ray":
                layers.append(("executor", {"threads": config.cpus_per_run}))
            for seed in config.seeds:
                try:
                    planned = resolve_run_config(
                        task,
                        base,
                        seed,
                        config.profile,
                        layers=layers,
                        weights=config.weights,
                        variant=method if base != method else None,
                    )
                except (
                    UserInputError
                ) as exc:  # a bad option: say which run and where it was set, before anything trains
                    raise UserInputError(f"{exc} [task {name}, method {method}]{locate_option(config, exc)}") from None
                if (name, planned.holdout) not in train_counts:
                    try:  # the run would fail on it after the plan was accepted (and a rerun be refused)
                        train_counts[name, planned.holdout] = len(holdout_split(data, planned.holdout)[0])
                    except UserInputError as exc:
                        raise UserInputError(
                            f"task '{name}': {exc}; lower holdout (0 trains on every normal) or add training images "
                            f"[method {method}]{locate_option(config, exc)}"
                        ) from None
                train_images = train_counts[name, planned.holdout]
                try:  # what needs the training set's size (e.g. PatchCore's memory plan), before anything trains
                    detector_class(base).check_plan(
                        planned.method_config(),
                        train_images=train_images,
                        input_size=planned.input_size,
                    )
                except UserInputError as exc:
                    raise UserInputError(f"{exc} [task {name}, method {method}]") from None
                folder = run_folder(config.out, name, method, seed)
                detector = planned.detector
                status = run_status(folder)["status"]  # read once: the plan carries it
                to_do = force or status != "finished"
                if not to_do:
                    _say_changed_data(folder, fingerprint, manifest)
                estimate = detector_class(base).storage_estimate(
                    planned.method_config(),
                    train_images=train_images,
                    input_size=planned.input_size,
                )
                if estimate is not None:  # what the finished run keeps: model.pt, and its checkpoint if asked to
                    kept = estimate["checkpoint"] if planned.runtime.keep_checkpoints else 0
                    estimate = {**estimate, "kept": estimate["model"] + kept}
                    if to_do:
                        disk.append((f"{name} {method} seed {seed}", estimate))
                weights = None  # (method, network, weights file) of a run that loads pretrained weights
                if detector.get("pretrained") or detector.get("weights"):
                    weights = (base, detector_class(base).backbone_of(detector), detector.get("weights"))
                redo = force
                if not force:
                    redo = _check_existing(folder, planned, status, retry_failed=resume)
                specs.append(
                    RunSpec(
                        config=planned,
                        folder=str(folder),
                        claims=str(Path(config.out) / ".claims"),
                        data_root=config.data_root,
                        force=redo,
                        storage=estimate,
                        status=status,
                        train_images=train_images,
                        weights=weights,
                    )
                )
    _check_weights(specs)
    check_disk_space(config.out, disk)
    unfinished_states = ("running", "failed", "evaluating", "interrupted")
    unfinished = [s for s in specs if s.status in unfinished_states]
    live = [
        s for s in unfinished if Claim(s.claims, s.key).held_elsewhere()
    ]  # another bench runs them now: they are skipped, not resumed
    unfinished = [s for s in unfinished if s not in live]
    if live:
        console.print(
            escape(
                f"{len(live)} run(s) are running in another process and will be skipped: "
                f"{', '.join(s.label for s in live[:3])}{' ...' if len(live) > 3 else ''}"
            )
        )
    if unfinished and not resume and not force:
        listed = ", ".join(s.label for s in unfinished[:3]) + (" ..." if len(unfinished) > 3 else "")
        raise UserInputError(
            f"{len(unfinished)} run(s) in {config.out} are unfinished or failed ({listed}); pass resume=True to "
            "continue them, "
            "force=True to redo them from scratch (e.g. with changed settings), or choose another out=DIR."
        )
    return specs


def describe_plan(specs: list[RunSpec]):
    """The plan as a table (a ``bench --dry-run``): one row per run with its status, the settings a profile,
    the method or the user set (``RunConfig.sources``), what it will keep on disk and need while it trains, and
    its expected time where there is a basis: the mean of this method's finished runs of this task in the
    sweep folder (else of any task; none without a finished run)."""
    import pandas as pd

    finished_seconds: dict[tuple[str, str], list[float]] = {}
    for spec in specs:
        if spec.status == "finished":
            timings = RunFolder(spec.folder).metrics().get("timings", {})
            seconds = (timings.get("train_s") or 0) + (timings.get("inference_s") or 0)
            if seconds:
                finished_seconds.setdefault((spec.method, spec.task), []).append(seconds)
    rows = []
    for spec in specs:
        same = finished_seconds.get((spec.method, spec.task)) or [
            t for (method, _), values in finished_seconds.items() if method == spec.method for t in values
        ]
        config = spec.config
        settings = {k: _setting(config, k) for k in sorted(config.sources)}
        storage = spec.storage or {}
        rows.append(
            {
                "task": spec.task,
                "method": spec.method,
                "seed": spec.seed,
                "status": "to do" if spec.to_do else "finished",
                "settings": ", ".join(f"{k}={v}" for k, v in settings.items()),
                "model MiB": round(storage["model"] / 2**20) if storage else None,
                "checkpoint MiB": round(storage["checkpoint"] / 2**20) if storage else None,
                "expected s": round(sum(same) / len(same)) if same else None,
            }
        )
    return pd.DataFrame(rows)


def _setting(config: RunConfig, key: str):
    if key in config.detector:
        return config.detector[key]
    if hasattr(config.runtime, key):
        return getattr(config.runtime, key)
    return getattr(config, key, None)


def disk_needed(disk: list[tuple[str, dict]]) -> tuple[int, int]:
    """``(what the finished runs keep, the most one run needs on top while it trains)`` in bytes: each run
    keeps its model.pt (and its checkpoint with keep_checkpoints); while a run trains, its checkpoint and the
    next one being written (the atomic writer's temporary) sit beside them."""
    kept = sum(estimate["kept"] for _, estimate in disk)
    transient = max((2 * estimate["checkpoint"] for _, estimate in disk), default=0)
    return kept, transient


def free_space(out) -> int:
    """Free bytes on the disk that holds (or will hold) the folder ``out``."""
    import shutil

    folder = Path(out).resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_disk_space(out, disk: list[tuple[str, dict]]) -> None:
    """Refuse, before anything trains, a sweep whose runs cannot fit the free space of ``out``'s disk."""
    kept, transient = disk_needed(disk)
    free = free_space(out)
    if kept + transient > free:
        largest = max(disk, key=lambda item: item[1]["kept"])
        raise UserInputError(
            f"the sweep needs about {_gib(kept + transient)} on the disk of {out}: {len(disk)} run(s) keep "
            f"{_gib(kept)} (the largest, {largest[0]}, {_gib(largest[1]['kept'])}), plus {_gib(transient)} while a "
            f"checkpoint is written (per run training at a time); {_gib(free)} are free. Free some space, choose "
            "another out=DIR, or run fewer tasks, methods or seeds."
        )


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def _check_weights(specs: list[RunSpec]) -> None:
    """Pretrained weights that the runs to do need and that cannot be had stop the sweep now, once, not as one
    failure per run."""
    needed: dict = {}  # (method, network, weights file) -> the options of the first run that asks for it
    for spec in specs:
        if spec.to_do and spec.weights is not None:
            needed.setdefault(spec.weights, spec.config.detector)
    checked = set()
    for (method, network, weights), options in sorted(needed.items(), key=lambda item: str(item[0])):
        cls = detector_class(method)
        key = (cls.require_weights.__func__, network, weights)  # one check per network, whichever method asks
        if key not in checked:
            checked.add(key)
            cls.require_weights(options)


def _warn_unreached_options(config: SweepConfig) -> None:
    """A key of a shared section ([options], [task.T]) that no method of this sweep takes changes nothing (a
    shared file's ``coreset_ratio`` in a sweep of RD4AD alone): said once, not silently dropped."""
    accepted = set().union(*(accepted_keys(config.base_method(m)) for m in config.methods))
    sections = [("[options]", config.options)] + [
        (f"[task.{task}]", {k: v for k, v in body.items() if k not in ("method", "data")})
        for task, body in config.task.items()
    ]
    for section, body in sections:
        unreached = sorted(set(body) - accepted)
        if unreached:
            warnings.warn(
                f"{section}: {', '.join(unreached)} reach(es) no method of this sweep ({', '.join(config.methods)}) "
                "and change(s) nothing",
                stacklevel=3,
            )


def _devices_set(config: SweepConfig) -> set[str]:
    """Every ``device`` a section of the sweep sets (``[options]``, ``[method.M]``, ``[task.T]``, ...)."""
    sections = [config.options, *config.method.values(), *config.variant.values()]
    for body in config.task.values():
        sections += [body, *body.get("method", {}).values()]
    return {str(s["device"]) for s in sections if isinstance(s, dict) and "device" in s}


def _say_changed_data(folder: Path, fingerprint: str, manifest) -> None:
    """A finished run is skipped; if the task's files changed since it trained (or was last evaluated), say which
    (its results are of the old files), once per run."""
    from medrecontrast.data.items import describe_changes, manifest_changes

    run = RunFolder(folder)
    recorded, trained = run.data_record(), run.training_data()
    if recorded is None or recorded.get("sha256") == fingerprint:
        return
    detail = ""
    if trained is not None:
        changes = manifest_changes(trained["files"], manifest())
        detail = f" ({describe_changes(changes)})" if changes else ""
    warnings.warn(
        f"{folder}: finished on other files than the task has now{detail}; it is kept as it is: re-score it with "
        "`medrecontrast evaluate --run DIR --force` or redo it with `bench --force`",
        stacklevel=3,
    )


def _refuse_shared_folders(out: Path, report: Path) -> None:
    """``--report`` equal to ``--out`` (or one inside the other) failed only after the whole sweep had trained."""
    out, report = out.resolve(), report.resolve()
    if out == report or out in report.parents or report in out.parents:
        raise UserInputError(
            f"the report folder {report} and the runs folder {out} overlap; the report's files would land among the "
            "runs (or the runs in the report). Give them separate folders (--out DIR, --report DIR)."
        )


def _refuse_outputs_in_data(data: Path, outputs: dict[str, str], task: str) -> None:
    """An output folder inside a task's data (the report's PNGs became test images of the next run), or the data
    inside an output folder (a report rebuild could touch it): refused, naming both."""
    data = data.resolve()
    for key, folder in outputs.items():
        folder = Path(folder).resolve()
        if folder == data or data in folder.parents or folder in data.parents:
            inside = "inside the data" if data in folder.parents or folder == data else "holds the data"
            raise UserInputError(
                f"--{key} {folder} is {inside} of task '{task}' ({data}): its files would become the task's images, "
                f"or the task's images its files. Choose an --{key} folder apart from the data."
            )


def _check_data(task, data_root) -> tuple[TaskData, str]:
    """Missing folders and broken files stop the sweep now, not at hour three: every image and mask
    is decoded once (a truncated file passes a header check); returns the loaded data and its fingerprint. A task
    whose files (paths, sizes, modification times) were all decoded before is not decoded again: the fingerprint is
    remembered in the cache folder."""
    data = task.load(data_root)
    for line in enforce(data, find_leaks(data)):  # a user's split sharing a patient is refused; others warned
        warnings.warn(f"{line} (the report repeats this)", stacklevel=2)
    fingerprint = data.fingerprint()
    memo = cache_dir() / "checked" / f"{fingerprint['sha256']}.ok"
    if memo.is_file():
        return data, fingerprint["sha256"]
    report = check_task_data(data, deep=True, progress=True)
    if not report.ok:
        first = report.problems[0]
        raise UserInputError(
            f"task '{task.name}': {len(report.problems)} broken file(s), e.g. {first['file']}: {first['problem']}. "
            f"Run `medrecontrast data check {task.name} --deep` to list them all, then fix or remove them."
        )
    write_json(memo, {"task": task.name, "files": fingerprint["files"], "decoded": True})
    return data, fingerprint["sha256"]


def _check_existing(folder: Path, planned: RunConfig, status: str, retry_failed: bool = False) -> bool:
    """A folder's recorded run must be the planned one: the same identity (where and how it computed
    does not count). Old folders (format 3) are read into a RunConfig and compared the same way.

    With ``retry_failed`` (``--resume``), a *failed* run whose settings the user has since corrected is redone from
    scratch with them (returns True: the run is forced): a failed run holds no result to keep, and ``--resume`` is
    what the failure message advises (it was refused after the fix)."""
    if not RunFolder(folder).has_config():
        return False
    existing = RunFolder(folder).config()
    if existing.identity() != planned.identity():
        if retry_failed and status == "failed":
            return True
        raise UserInputError(
            f"{folder} holds a run with another configuration ({', '.join(existing.differences(planned))} differ); "
            "redo the planned runs with these settings "
            "with force=True (their old results are deleted), or choose another out=DIR for a different sweep."
        )
    return False


def run_sweep(
    config: SweepConfig,
    resume: bool = False,
    progress: bool | int = True,
    command: str | None = None,
    force: bool = False,
    quiet: bool = False,
    on_planned=None,
) -> list[Outcome]:
    """Plan, check and run every run of the sweep with its executor; returns one outcome per run.

    ``command`` (the command line, if any) is recorded in ``sweep.json`` for the report; every
    sweep-level line (runs, ETA, outcomes) is appended to ``<out>/bench.log``. ``progress``: see
    :func:`medrecontrast.engine.train_loop`; ``quiet`` prints failures only. ``on_planned(specs)`` is called once
    the plan is checked, before anything runs (the command line prints its plan line there, so that no plan is
    announced before it is valid)."""
    config = config.resolved()
    specs = plan_sweep(config, resume=resume, force=force)
    if on_planned is not None:
        on_planned(specs)
    out = Path(config.out)
    planned = [
        {"task": s.task, "method": s.method, "seed": s.seed, "folder": Path(s.folder).relative_to(out).as_posix()}
        for s in specs
    ]
    open_sweep_folder(
        out,
        {
            "config": config.__dict__,
            "command": command,
            "environment": environment(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "planned": planned,
        },
    )
    log = sweep_log(out)
    todo = sum(s.to_do for s in specs)
    say(
        escape(
            f"sweep {config.name}: {len(specs)} run(s) planned ({todo} to do), profile {config.profile}, executor "
            f"{config.executor}" + (f"; command: {command}" if command else "")
        ),
        log,
        quiet=True,
    )
    if config.executor == "ray":
        return list(
            run_ray(
                specs,
                address=config.address,
                gpus_per_run=config.gpus_per_run,
                cpus_per_run=config.cpus_per_run,
                log=log,
                quiet=quiet,
            )
        )
    return list(run_local(specs, progress=progress, log=log, quiet=quiet))


def dry_run(sweep, *, resume: bool = False, force: bool = False):
    """``bench --dry-run``: the checked plan (:func:`describe_plan`) and one line on the runs to do, the disk they
    need and their expected time; nothing is written."""
    specs = plan_sweep(sweep, resume=resume, force=force)
    plan = describe_plan(specs)
    todo = [(s.label, s.storage) for s, status in zip(specs, plan["status"]) if s.storage and status == "to do"]
    kept, transient = disk_needed(todo)
    free = free_space(sweep.out)
    expected = plan.loc[plan["status"] == "to do", "expected s"]
    time_line = (
        f"expected time of the runs to do: {duration_text(expected.sum())}"
        if len(expected) and expected.notna().all()
        else "expected time: no basis yet for every run (no finished run of its method in this sweep folder)"
    )
    summary = (
        f"{len(plan)} run(s), {int((plan['status'] == 'to do').sum())} to do; disk: about {kept / 2**20:,.0f} MiB "
        f"kept + {transient / 2**20:,.0f} MiB while a checkpoint is written, {free / 2**30:,.1f} GiB free; "
        f"{time_line}. Nothing was run (--dry-run)."
    )
    return plan, summary
