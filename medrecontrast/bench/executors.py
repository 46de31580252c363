"""Executors run planned runs: one after the other in this process, or as Ray tasks.

Both call :func:`execute_run` on each :class:`RunSpec` (planned by :mod:`.sweep`, which imports
this module, never the reverse) and write into the same run folders, so moving a sweep from a
laptop to a cluster changes only ``--executor``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from medrecontrast.bench.store import Claim, RunSpec, run_status
from medrecontrast.errors import UserInputError
from medrecontrast.paths import CACHE_ENV
from medrecontrast.run import run_training
from medrecontrast.run.folder import RunFolder
from medrecontrast.tasks import DATA_ROOT_ENV

# soft_wrap: a sweep's lines are never wrapped at the terminal's (or a pipe's 80-column) width; logs keep them whole
console = Console(stderr=True, highlight=False, soft_wrap=True)
RAY_INSTALL = "pip install 'medrecontrast[ray]'"


@dataclass
class Outcome:
    """What became of one run in this invocation."""

    key: str
    task: str
    method: str
    seed: int
    status: str  # finished | skipped | busy | failed
    seconds: float = 0.0
    error: str | None = None
    metrics: dict = field(default_factory=dict)


def execute_run(spec: RunSpec, progress: bool | int = True) -> Outcome:
    """Run one planned run unless it is finished or another process holds it; never raises for a failed run."""
    outcome = Outcome(spec.key, spec.task, spec.method, spec.seed, status="skipped")
    claim = Claim(spec.claims, spec.key)
    if not claim.acquire():
        outcome.status, outcome.error = "busy", f"running in another process ({claim.describe()})"
        return outcome
    with claim:
        status = run_status(spec.folder)["status"]
        if status == "finished" and not spec.force:
            outcome.metrics = _read_metrics(spec.folder)
            return outcome
        if spec.config.runtime.threads:
            torch.set_num_threads(spec.config.runtime.threads)
        began = time.perf_counter()
        try:
            outcome.metrics = run_training(
                spec.config,
                spec.folder,
                resume=status != "absent" and not spec.force,
                force=spec.force,
                data_root=spec.data_root,
                progress=progress,
            )
            outcome.status = "finished"
        except Exception as exc:  # recorded in the run's status.json by train_run; the sweep goes on
            outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
        outcome.seconds = time.perf_counter() - began
    return outcome


def _read_metrics(folder: str) -> dict:
    return RunFolder(folder).metrics()


def run_local(
    specs: list[RunSpec], progress: bool | int = True, log: Path | None = None, quiet: bool = False
) -> Iterator[Outcome]:
    """Run each spec in this process, printing one line per run with the sweep's elapsed time and
    ETA (:func:`eta_text`), and its training progress; runs already finished are summed up in one line;
    every line also goes to ``log`` (``bench.log``). ``quiet`` prints only failures (the log keeps everything)."""
    began = time.perf_counter()
    durations: dict[str, list[float]] = {}
    already = 0
    for number, spec in enumerate(specs, start=1):
        if not spec.to_do:  # finished when the sweep was planned
            outcome = execute_run(spec, progress=progress)  # claims it, reads its metrics
            if outcome.status == "skipped":
                already += 1
                yield outcome
                continue
            _report(outcome, log, quiet)
            yield outcome
            continue
        already = _say_already(already, log, quiet)
        line = f"[bold]\\[{number}/{len(specs)}][/] {escape(spec.label)}"
        if durations:
            elapsed = duration_text(time.perf_counter() - began)
            line += f"  (sweep {elapsed} elapsed, {eta_text(specs[number - 1 :], durations)})"
        say(line, log, quiet)
        outcome = execute_run(spec, progress=progress)
        if outcome.status in ("finished", "failed"):
            durations.setdefault(spec.method, []).append(outcome.seconds)
        _report(outcome, log, quiet)
        yield outcome
    _say_already(already, log, quiet)


def _say_already(count: int, log: Path | None, quiet: bool) -> int:
    """One line for ``count`` runs found finished (instead of one line each); returns 0."""
    if count:
        say(f"  [dim]{count} run(s) already finished: kept as they are (force redoes them)[/]", log, quiet)
    return 0


def eta_text(remaining: list[RunSpec], durations: dict[str, list[float]]) -> str:
    """``ETA ~6 h 30 min``: each remaining run at the mean duration of its own method's runs so far; runs of a
    method not yet timed are counted, not guessed (timing them at another method's pace was 2x off)."""
    timed = [statistics.mean(durations[s.method]) for s in remaining if s.method in durations]
    untimed = len(remaining) - len(timed)
    text = f"ETA ~{duration_text(sum(timed))}"
    if untimed:
        text += f" for {len(timed)} run(s), + {untimed} run(s) of methods not timed yet"
    return text


def duration_text(seconds: float) -> str:
    """``42 s``, ``12 min``, ``6 h 30 min``."""
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min"


def say(text: str, log: Path | None, quiet: bool = False) -> None:
    """Print a line (unless ``quiet``) and append it, without markup and with the time, to ``log``."""
    if not quiet:
        console.print(text)
    if log is not None:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {Text.from_markup(text).plain}\n")


def run_ray(
    specs: list[RunSpec],
    address: str | None = None,
    gpus_per_run: float | None = None,
    cpus_per_run: int = 1,
    log: Path | None = None,
    quiet: bool = False,
) -> Iterator[Outcome]:
    """Submit every spec as a Ray task (one GPU each where the cluster has GPUs) and yield outcomes as they finish.

    ``address=None`` starts a local Ray instance on this machine; ``"auto"`` or ``"ray://host:10001"``
    joins an existing cluster. Run folders must be on storage every worker can reach.
    """
    try:
        import ray
    except ImportError:
        raise UserInputError(f"executor='ray' needs Ray, which is an optional extra: {RAY_INSTALL}") from None
    env = {name: os.environ[name] for name in (CACHE_ENV, DATA_ROOT_ENV) if name in os.environ}
    started_here = not ray.is_initialized()
    if started_here:
        options = {"num_cpus": os.cpu_count()} if address is None else {"address": address}
        ray.init(
            **options,
            runtime_env={"env_vars": env} if env else None,
            include_dashboard=False,
            logging_level="WARNING",
            log_to_driver=False,
        )
    try:
        if gpus_per_run is None:
            gpus_per_run = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(_execute_quietly)
        pending = {remote.remote(spec): spec for spec in specs}
        console.print(f"submitted {len(pending)} run(s) to Ray ({cpus_per_run} CPU, {gpus_per_run} GPU each)")
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                outcome = ray.get(done[0])
            except Exception as exc:  # the worker itself died (out of memory, node lost)
                outcome = Outcome(
                    spec.key,
                    spec.task,
                    spec.method,
                    spec.seed,
                    status="failed",
                    error=f"Ray worker failed: {type(exc).__name__}: {exc}",
                )
            _report(outcome, log, quiet)
            yield outcome
    finally:
        if started_here:
            ray.shutdown()


def _execute_quietly(spec: RunSpec) -> Outcome:
    return execute_run(spec, progress=False)


def _report(outcome: Outcome, log: Path | None = None, quiet: bool = False) -> None:
    if outcome.status == "finished":
        auroc = outcome.metrics.get("image_auroc")
        say(
            f"  [green]finished[/] {escape(outcome.key)} in {duration_text(outcome.seconds)}"
            + (f", image AUROC {auroc:.3f}" if auroc is not None else ""),
            log,
            quiet,
        )
    elif outcome.status == "skipped":
        _say_already(1, log, quiet)
    elif outcome.status == "busy":
        say(f"  [yellow]skipped[/] {escape(outcome.key)}: {escape(str(outcome.error))}", log, quiet)
    else:
        say(f"  [red]failed[/] {escape(outcome.key)}: {escape(str(outcome.error))}", log)
