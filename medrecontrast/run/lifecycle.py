"""A run's life in its folder: claim, train, evaluate, finish or fail; re-evaluate later.

What the folder holds and how each file is written is :class:`~medrecontrast.run.folder.RunFolder`'s; a finished
run is never overwritten unless asked (``force``).
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
import warnings
from datetime import datetime, timezone

from medrecontrast.compute import require_device
from medrecontrast.data.items import describe_changes, manifest_changes, unit_of
from medrecontrast.errors import UserInputError
from medrecontrast.paths import remove_stale_partials
from medrecontrast.resources import peak_memory
from medrecontrast.run.artefacts import data_record, evaluate_detector
from medrecontrast.run.config import RunConfig, expected_network, resolve_run_config
from medrecontrast.run.environment import environment
from medrecontrast.run.folder import RunFolder
from medrecontrast.run.split import groups_of_test_images, holdout_split, run_datasets
from medrecontrast.signals import interruption_of, sigterm_raises


def train_run(
    task,
    method: str,
    out: str | os.PathLike,
    seed: int = 0,
    profile: str | None = None,
    overrides: dict | None = None,
    resume: bool = False,
    force: bool = False,
    data_root: str | os.PathLike | None = None,
    weights: str | None = None,
    progress: bool | int = True,
    variant: str | None = None,
) -> dict:
    """Train ``method`` on ``task`` with ``seed`` into ``out`` and evaluate it; returns the metrics.

    ``overrides`` are one layer of settings above the built-in ones (:func:`resolve_run_config`);
    the run itself is :func:`run_training` of the resolved configuration.
    """
    config = resolve_run_config(
        task, method, seed, profile, layers=[("overrides", overrides or {})], weights=weights, variant=variant
    )
    return run_training(
        config,
        out,
        resume=resume,
        force=force,
        data_root=data_root,
        progress=progress,
        task=None if isinstance(task, str) else task,
    )


def run_training(
    config: RunConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
    data_root: str | os.PathLike | None = None,
    progress: bool | int = True,
    task=None,
) -> dict:
    """Train and evaluate the run ``config`` into the folder ``out``; returns the metrics.

    ``task`` is the task object when the caller has it (else it is rebuilt from the config). An
    exception marks the run ``failed`` (with its error) in ``status.json`` and is re-raised; Ctrl-C or SIGTERM
    marks it ``interrupted`` (training stops after the current iteration, with a checkpoint) and re-raises;
    a killed process leaves it ``running``. ``resume=True`` continues either.
    """
    from medrecontrast.tasks import get_task

    task = task if task is not None else get_task(config.task, **config.task_options)
    require_device(config.runtime.device)  # a GPU this machine lacks: refused before any folder is written
    out = RunFolder(out)
    _claim_folder(out, config, resume, force)
    remove_stale_partials(out.path)  # temporaries of a killed process (a full disk keeps them otherwise)
    out.write_config(config)
    out.write_environment(environment())
    out.write_status({"status": "running", "started": _now()})
    try:
        with sigterm_raises():  # a scheduler's SIGTERM ends the run as Ctrl-C does, recorded (medrecontrast.signals)
            metrics = _train_and_evaluate(task, config, out, resume, data_root, progress)
    except KeyboardInterrupt as exc:
        name, _ = interruption_of(exc)
        out.write_status({"status": "interrupted", "signal": name, "detail": str(exc), "at": _now()})
        raise
    except Exception as exc:
        _record_failure(out, exc)
        raise
    out.write_status({"status": "finished", "finished": _now()})
    if not config.runtime.keep_checkpoints:  # a finished run needs its model only (keep_checkpoints = true keeps it)
        out.remove_checkpoint()
    return metrics


def _record_failure(out: RunFolder, exc: BaseException) -> None:
    """Mark the run ``failed`` even on a full disk: the atomic write needs room for a second copy, so
    after freeing this run's temporaries a plain in-place write of the small status is tried."""
    status = {
        "status": "failed",
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": traceback.format_exc(),
        "finished": _now(),
    }
    try:
        out.write_status(status)
    except OSError:
        remove_stale_partials(out.path, including_own=True)
        try:
            out.write_status_in_place({k: v for k, v in status.items() if k != "traceback"})
        except OSError:
            pass  # nothing can be written: the report counts the run as unknown (status "running", no live claim)


def patient_lists(data, config) -> dict:
    """The patient of each test image and of each held-out normal, in the order the run scores them (None where
    the task names no patient): ``evaluate_detector``'s ``patients`` and ``holdout_patients``."""
    if not data.has_patients:
        return {"patients": None, "holdout_patients": None}
    held = holdout_split(data, config.holdout)[1]
    return {"patients": [unit_of(it) for it in data.test], "holdout_patients": [unit_of(it) for it in held] or None}


def _train_and_evaluate(task, config: RunConfig, out: RunFolder, resume: bool, data_root, progress) -> dict:
    data = task.load(data_root)
    record = data_record(data, data_root)
    out.write_data_record(record)
    out.write_training_data({"sha256": record["sha256"], "files": data.manifest()})
    train, test, holdout = run_datasets(data, config)
    from medrecontrast.models.base import detector_class

    # the checks a sweep makes when it is planned (PatchCore's memory plan, Dinomaly's patch multiple), for a
    # run trained on its own (train, the API) too
    detector_class(config.method).check_plan(
        config.method_config(), train_images=len(train), input_size=config.input_size
    )
    detector = config.build_detector()
    with peak_memory(detector.device) as memory:
        began = time.perf_counter()
        detector.fit(
            train, checkpoint=out.training_files() if detector.trains else None, resume=resume, progress=progress
        )
        train_seconds = detector.train_seconds_ if detector.train_seconds_ is not None else time.perf_counter() - began
    if detector.losses_ is not None:
        out.write_loss(detector.losses_)
    if detector.stats_:
        out.write_fit_stats(detector.stats_)
    images_seen, iterations = detector.images_seen_, detector.iters_
    detector.save(out.model_path)
    if progress:
        from rich.console import Console

        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"  trained; scoring {len(test)} test images" + (f" and {len(holdout)} held-out normals" if holdout else "")
        )
    metrics = evaluate_detector(
        detector,
        test,
        holdout,
        out,
        config.threshold_quantile,
        groups_of_test_images(data),
        progress=progress,
        **patient_lists(data, config),
    )
    metrics["timings"].update(
        train_s=train_seconds,
        train_images_per_s=images_seen / train_seconds if train_seconds else None,
        train_iterations=iterations,
        train_peak_memory_mb=memory["peak_memory_mb"],
        peak_memory_kind=memory["peak_memory_kind"],
    )
    out.write_metrics(metrics)
    return metrics


def evaluate_run(run: str | os.PathLike, data_root: str | os.PathLike | None = None, force: bool = False) -> dict:
    """Re-score a finished run's saved detector on its test set, without retraining.

    Refused (unless ``force``) when the run's recorded settings no longer resolve to the same
    identity with this version of the suite, e.g. after a default changed: its numbers would mean
    something else. Refused too (unless ``force``) when the run already holds results: they are then
    kept under ``previous/`` and the re-evaluation is recorded in ``evaluations.json``.
    """
    from medrecontrast.models.base import Detector
    from medrecontrast.tasks import get_task

    run = RunFolder(run)
    run.require_trained()
    model_path = run.model_path
    config = run.config()
    task = get_task(config.task, **config.task_options)
    current = resolve_run_config(
        task,
        config.method,
        config.seed,
        config.profile,
        layers=[("recorded", config.user_settings())],
        weights=config.detector.get("weights"),
        variant=config.variant,
    )
    if current.identity() != config.identity() and not force:
        raise UserInputError(
            f"{run} was trained with settings that no longer resolve to the same values "
            f"({', '.join(current.differences(config))} differ); "
            "re-evaluate it anyway with force=True."
        )
    detector = Detector.load(model_path, **expected_network(config))
    if detector.name != config.method:
        raise UserInputError(f"{model_path} holds a '{detector.name}' detector but the run is '{config.method}'.")
    data = task.load(data_root)
    fingerprint = data_record(data, data_root)
    # what the run was trained on: its training record (never overwritten), else (runs of earlier versions) the data
    # record as it stood before this evaluation
    trained = run.training_data()
    recorded = {"sha256": trained["sha256"]} if trained else run.data_record()
    changes = manifest_changes(trained["files"], data.manifest()) if trained else {}
    if changes:
        fingerprint["changed_since_training"] = changes
        warnings.warn(
            f"{run}: the task's files changed since the run was trained ({describe_changes(changes)}); its new "
            "numbers are of these files",
            stacklevel=2,
        )
    has_results = run.has_results()
    if has_results and not force:
        same = recorded is not None and recorded.get("sha256") == fingerprint["sha256"]
        raise UserInputError(
            f"{run} already holds results; re-evaluating replaces its {run.SCORES} and {run.METRICS}, which a "
            "sweep's report reads"
            + ("" if same else " (and the task's files differ from those it was trained on)")
            + f". Re-evaluate with force=True: the previous results are kept under {run.PREVIOUS}/ and the "
            f"re-evaluation is recorded in {run.EVALUATIONS}."
        )
    previous = run.metrics()
    kept_in = run.keep_previous_results() if has_results else None
    status = run.status()
    # While the results are replaced the run is "evaluating", which the report does not read as finished: a
    # process killed half-way leaves a run the report lists as unfinished, never a mix of old and new files.
    run.write_status({**status, "status": "evaluating", "evaluating_since": _now()})
    _, test, holdout = run_datasets(data, config)
    metrics = evaluate_detector(
        detector,
        test,
        holdout,
        run,
        config.threshold_quantile,
        groups_of_test_images(data),
        **patient_lists(data, config),
    )
    kept = {k: v for k, v in previous.get("timings", {}).items() if k.startswith("train")}
    metrics["timings"].update(kept)
    run.write_metrics(metrics)
    run.write_data_record(fingerprint)
    status.pop("evaluating_since", None)
    run.write_status({**status, "status": "finished", "evaluated": _now()})
    history = run.evaluations()
    history.append(
        {
            "when": _now(),
            "data": fingerprint,
            "trained_on": recorded,
            "same_data_as_training": recorded is not None and recorded.get("sha256") == fingerprint["sha256"],
            "previous_results": None if kept_in is None else str(kept_in.relative_to(run.path)),
            "forced": force,
        }
    )
    run.write_evaluations(history)
    return metrics


def _claim_folder(out: RunFolder, config: RunConfig, resume: bool, force: bool) -> None:
    if out.path.exists() and any(out.path.iterdir()):
        if not out.is_run_folder():
            raise UserInputError(f"{out} is not empty and is not a run folder; choose an empty or new out=DIR.")
        status = out.status().get("status")
        if force:
            shutil.rmtree(out.path)
        elif status == "finished":
            raise UserInputError(
                f"{out} already holds a finished run; pass force=True to overwrite it or choose another out=DIR."
            )
        elif not resume:
            raise UserInputError(
                f"{out} holds an unfinished run; pass resume=True to continue it or force=True to start again."
            )
        elif out.has_config():
            previous = out.config()
            if previous.identity() != config.identity():
                raise UserInputError(
                    f"{out} holds a run whose recorded options differ from what this call resolves to "
                    f"({', '.join(previous.differences(config))} differ; "
                    "a default may have changed); resume=True needs the same task, method, seed, profile and "
                    "settings. Pass force=True to start it again."
                )
    out.path.mkdir(parents=True, exist_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
