"""The iteration loop shared by every trainable method: seeding, data order, AMP, checkpoints, resume.

What survives a crash: every ``checkpoint_every`` iterations the model, the optimisers, the
iteration, the RNG states and the loss curve are written to one file, atomically (a temporary file
renamed over the old one), so ``kill -9`` at any moment leaves the previous checkpoint or the new
one. The data order is a pure function of (seed, iteration), so a resumed run sees the same
batches as an uninterrupted one and, on the CPU, reaches the same weights bit for bit.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch.utils.data import DataLoader, Dataset

from medrecontrast.compute import (  # noqa: F401  (re-exported: the engine's public helpers)
    atomic_torch_save,
    autocast,
    batch_to_device,
    check_engineering_options,
    fused_optimizer_options,
    load_versioned,
    loader_options,
    resolve_device,
    seed_everything,
    to_channels_last,
    uses_channels_last,
)
from medrecontrast.errors import UserInputError, check_field_types, require_positive_ints
from medrecontrast.paths import write_csv
from medrecontrast.signals import Interrupted, deferred_stop

CHECKPOINT_FORMAT = 1


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stops without writing a result."""


@dataclass(kw_only=True)
class TrainingConfig:
    """How the engine trains: the schedule and the engineering switches. Each trainable method's
    configuration extends this dataclass (``ReContrastConfig(TrainingConfig)``), so these options are
    declared once, here, and reach :func:`train_loop` as they are."""

    iters: int | None = 1000
    epochs: int | None = None  # instead of iters: whole passes over the training set (see resolve_iterations)
    batch_size: int = 16
    drop_last: bool = False  # keep each epoch's last incomplete batch, as the per-task official loaders do
    seed: int = 0
    device: str = "auto"
    amp: bool | str = True  # see ``autocast``: True = bf16 on CUDA, "bf16" = bf16 on every device, False = fp32
    channels_last: bool | None = None  # None: with bf16 autocast on CUDA (where tensor cores want NHWC)
    compile: bool = False  # torch.compile the model for training (minutes of compilation, then faster steps)
    cudnn_benchmark: bool = True  # let cuDNN pick the fastest kernels (not bitwise reproducible on the GPU)
    num_workers: int | None = None  # None: see ``loader_options``
    checkpoint_every: int = 100
    # Every clip_grad_norm_ in the released training scripts is commented out: no clipping unless asked
    # (then over the gradients of all trained parameters).
    grad_clip_norm: float | None = None
    lr_milestone: float | None = None  # fraction of the iterations after which every lr *= lr_gamma (MultiStepLR)
    lr_gamma: float = 0.2
    # TensorBoard event files (loss and learning rates per iteration) in <run>/tensorboard/; needs the
    # tensorboard package and a run folder (train, bench)
    tensorboard: bool = False

    def __post_init__(self):
        check_field_types(self)
        if (self.iters is None) == (self.epochs is None):
            raise UserInputError(
                f"give exactly one of iters and epochs (got iters={self.iters!r}, epochs={self.epochs!r})"
            )
        require_positive_ints(self, "iters" if self.epochs is None else "epochs", "batch_size", "checkpoint_every")
        if self.lr_milestone is not None and not 0 < self.lr_milestone < 1:
            raise UserInputError(f"lr_milestone must be a fraction in (0, 1) or null, got {self.lr_milestone!r}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise UserInputError(f"grad_clip_norm must be positive or null (no clipping), got {self.grad_clip_norm!r}")
        check_engineering_options(self)
        if self.tensorboard:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise UserInputError(
                    "tensorboard = true needs the tensorboard package: pip install 'medrecontrast[tensorboard]'"
                )


def apply_schedule(options: dict, given: dict) -> dict:
    """``options`` updated with ``given``, where a schedule given replaces the other kind: ``iters``
    without ``epochs`` clears ``epochs`` and the reverse, so ``iters=500`` on RD4AD (200 epochs by
    default) trains 500 iterations and ``epochs=10`` on ReContrast trains 10 epochs. The one rule
    for every layer of a run's settings and for ``build_detector``."""
    merged = {**options, **given}
    if "iters" in given and "epochs" not in given:
        merged["epochs"] = None
    elif "epochs" in given and "iters" not in given:
        merged["iters"] = None
    return merged


def resolve_iterations(config: TrainingConfig, dataset_size: int) -> int:
    """Training iterations: ``iters``, or ``epochs`` whole passes of :func:`batches_per_epoch`, as the
    official epoch loops run."""
    if config.iters is not None:
        return config.iters
    return config.epochs * batches_per_epoch(dataset_size, config.batch_size, config.drop_last)


@dataclass
class TrainingResult:
    losses: list[float] = field(default_factory=list)  # one per iteration, from iteration 0
    seconds: float = 0.0  # wall time of the iterations run in this call
    total_seconds: float = 0.0  # wall time of all iterations, earlier (resumed) segments included
    iteration_seconds: list[float] = field(default_factory=list)  # each of them (the loss read syncs the device)
    iterations_run: int = 0
    resumed_from: int = 0


def batches_per_epoch(dataset_size: int, batch_size: int, drop_last: bool = False) -> int:
    """``ceil(N / batch)`` (the last incomplete batch kept), or ``floor`` with ``drop_last``; a dataset
    smaller than one batch is one batch of all of it."""
    batch = min(batch_size, dataset_size)
    return dataset_size // batch if drop_last else -(-dataset_size // batch)


def batch_indices(
    dataset_size: int, batch_size: int, seed: int, start_iteration: int, drop_last: bool = False
) -> Iterator[list[int]]:
    """Batches of a shuffled, endless pass over the data, starting at ``start_iteration``.

    Epoch ``e`` is ``randperm`` seeded with ``(seed, e)``. Its last incomplete batch is kept
    (``ceil(N / batch)`` batches per epoch), as the official per-task loaders do
    (``DataLoader(..., drop_last=False)`` in ReContrast's ``recontrast_*.py`` and RD4AD's
    ``main.py``); ``drop_last=True`` (the unified multi-class scripts) drops it unless the dataset
    is smaller than one batch.
    """
    if dataset_size == 0:
        raise UserInputError("cannot train on an empty dataset")
    batch = min(batch_size, dataset_size)
    per_epoch = batches_per_epoch(dataset_size, batch_size, drop_last)
    iteration = start_iteration
    while True:
        epoch, position = divmod(iteration, per_epoch)
        order = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
        for index in range(position, per_epoch):
            yield order[index * batch : (index + 1) * batch]
            iteration += 1


@dataclass(frozen=True)
class TrainingFiles:
    """Where a trainer writes while it trains: the checkpoint (for resume), the loss log (read while a long run
    trains) and TensorBoard's folder. A run folder gives all three (``RunFolder.training_files``); a bare path given
    as ``checkpoint`` is the checkpoint alone."""

    checkpoint: Path
    loss_log: Path | None = None
    tensorboard: Path | None = None

    @classmethod
    def of(cls, given: TrainingFiles | str | os.PathLike | None) -> TrainingFiles | None:
        if not given:
            return None
        return given if isinstance(given, TrainingFiles) else cls(Path(given))


def train_loop(
    model: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor],
    dataset: Dataset,
    config: TrainingConfig,
    identity: dict,
    checkpoint: TrainingFiles | str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool | int = True,
    lr_schedule: Callable[[int], float] | None = None,
) -> TrainingResult:
    """Train ``model`` for the iterations of ``config`` (:func:`resolve_iterations`) of
    ``loss_fn(model, images, iteration)``; ``config`` is a :class:`TrainingConfig` or extends it.

    ``identity`` (method, backbone, ...) is stored in the checkpoint; resuming from a checkpoint
    with another identity is refused. ``checkpoint``: a path, or the :class:`TrainingFiles` of a run folder (then
    at every checkpoint the losses so far are also written to its loss log, so a long run's curve can be read
    while it trains). ``progress``: True draws a bar on a terminal and prints a plain line every tenth of the run
    elsewhere (a log file); an integer N prints a plain line every N iterations; False prints nothing.
    ``lr_schedule``: the factor of every group's initial learning rate at an iteration (e.g. Dinomaly's warm-up
    and cosine), instead of ``lr_milestone``; a pure function of the iteration, so a resumed run needs no
    scheduler state.

    The steps, each a function below: :func:`_resume_or_seed`, :func:`_learning_rate_factor`, :func:`_one_iteration`,
    :class:`_Reporter` (progress, log lines, TensorBoard) and :func:`_write_checkpoint`.
    """
    if lr_schedule is not None and config.lr_milestone is not None:
        raise UserInputError("give either lr_milestone or a learning-rate schedule, not both")
    files = TrainingFiles.of(checkpoint)
    device = resolve_device(config.device)
    iters = resolve_iterations(config, len(dataset))
    channels_last = uses_channels_last(device, config.amp, config.channels_last)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config.compile else model
    result = TrainingResult()
    previous_seconds = _resume_or_seed(model, optimizers, identity, config, files, resume, result)
    start = result.resumed_from
    if device.type == "cuda" and config.cudnn_benchmark:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False  # after set_determinism

    model.train()
    batches = batch_indices(len(dataset), config.batch_size, config.seed, start, config.drop_last)
    trained = [p for optimizer in optimizers.values() for group in optimizer.param_groups for p in group["params"]]
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    loader = DataLoader(
        dataset, batch_sampler=_Sampler(batches, iters - start), **loader_options(device, config.num_workers)
    )
    began = last = time.perf_counter()
    board = _tensorboard(files) if config.tensorboard else None
    reporter = _Reporter(progress, iters, start, began, result.losses, board)
    with reporter, deferred_stop() as stop:
        for iteration, batch in enumerate(loader, start=start):
            factor = _learning_rate_factor(config, iters, lr_schedule, iteration)
            value = _one_iteration(
                step_model, optimizers, loss_fn, batch, iteration, device, channels_last, factor, trained, config
            )
            if not np.isfinite(value):
                raise NonFiniteLossError(
                    # counted from 1, as the progress bar and the log count iterations
                    f"the loss became {value} at iteration {iteration + 1} of {iters}; nothing was written for this "
                    "run"
                    + (f" after the checkpoint {files.checkpoint}" if files and files.checkpoint.is_file() else "")
                    + ". Try a lower learning rate, encoder BatchNorm in eval mode (encoder_bn_train = false), or "
                    "gradient clipping (grad_clip_norm)."
                )
            result.losses.append(value)
            result.iterations_run += 1
            now = time.perf_counter()
            result.iteration_seconds.append(now - last)
            last = now
            done = iteration + 1
            reporter.iteration(done, result.losses, now, optimizers)
            if files is not None and (done % config.checkpoint_every == 0 or done == iters or stop):
                _write_checkpoint(
                    files, model, optimizers, done, result.losses, identity, previous_seconds + now - began
                )
            if stop:  # Ctrl-C or SIGTERM during this iteration: stopped here, its checkpoint written
                raise Interrupted(
                    stop["signum"],
                    f"after iteration {done}/{iters}" + (f", checkpoint {files.checkpoint} written" if files else ""),
                )
    result.seconds = time.perf_counter() - began
    result.total_seconds = previous_seconds + result.seconds
    model.eval()
    return result


def _resume_or_seed(model, optimizers, identity, config, files, resume, result) -> float:
    """Load the checkpoint's model, optimisers, RNG states and losses when resuming (``result.resumed_from``
    says from which iteration), else seed every generator; returns the training seconds of earlier segments."""
    path = None if files is None else files.checkpoint
    if not (resume and path is not None and path.is_file()):
        seed_everything(config.seed)
        return 0.0
    try:
        state = load_checkpoint(path, identity)
    except UserInputError as exc:
        raise UserInputError(f"{exc} To start this run again, delete {path} or pass force=True.") from None
    model.load_state_dict(state["model"])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    _set_rng_state(state["rng"])
    result.losses = state["losses"].tolist()
    result.resumed_from = int(state["iteration"])
    return float(state.get("seconds", 0.0))


def _learning_rate_factor(config, iters: int, lr_schedule, iteration: int) -> float | None:
    """The factor of every group's initial learning rate at ``iteration`` (None: leave the rates as they are);
    a pure function of the iteration, so a resumed run needs no scheduler state."""
    if config.lr_milestone is not None:
        return config.lr_gamma if iteration >= int(iters * config.lr_milestone) else 1.0
    if lr_schedule is not None:
        return lr_schedule(iteration)
    return None


def _one_iteration(model, optimizers, loss_fn, batch, iteration, device, channels_last, factor, trained, config):
    """One optimisation step on ``batch``; returns the loss as a float (a non-finite loss returns before the step)."""
    images = batch_to_device(batch["image"], device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    if factor is not None:
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    with autocast(device, config.amp):
        loss = loss_fn(model, images, iteration)
    value = float(loss.detach())
    if not np.isfinite(value):
        return value
    loss.backward()
    if config.grad_clip_norm:
        torch.nn.utils.clip_grad_norm_(trained, max_norm=config.grad_clip_norm)
    for optimizer in optimizers.values():
        optimizer.step()
    return value


class _Reporter:
    """What a training run shows while it trains: the progress bar (a terminal), a plain line every tenth of the run
    or every ``progress`` iterations (a log file), and TensorBoard's loss and learning rates."""

    def __init__(self, progress, iters: int, start: int, began: float, losses: list[float], board):
        self.iters, self.start, self.began, self.first_loss = iters, start, began, loss_text(losses)
        console = Console(stderr=True)
        self.console = console
        self.every = (
            progress
            if not isinstance(progress, bool)
            else (max(1, iters // 10) if progress and not console.is_terminal else 0)
        )
        self.board = board
        self.bar = _progress(bool(progress) and not self.every)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        self.task = self.bar.add_task("training", total=self.iters, completed=self.start, loss=self.first_loss)
        return self

    def __exit__(self, *exc):
        if self.board is not None:
            self.board.close()
        return self.bar.__exit__(*exc)

    def iteration(self, done: int, losses: list[float], now: float, optimizers: dict) -> None:
        value, iteration = losses[-1], done - 1
        self.bar.update(self.task, completed=done, loss=loss_text(losses))
        if self.every and (done % self.every == 0 or done == self.iters):
            elapsed = now - self.began
            remaining = elapsed / max(done - self.start, 1) * (self.iters - done)
            self.console.print(
                f"  iteration {done}/{self.iters}  loss {value:.4f}  {elapsed:.0f} s elapsed, ETA {remaining:.0f} s",
                highlight=False,
            )
        if self.board is not None:
            self.board.add_scalar("loss", value, iteration)
            for name, optimizer in optimizers.items():
                for index, group in enumerate(optimizer.param_groups):
                    self.board.add_scalar(f"lr/{name}/{index}", group["lr"], iteration)


def _write_checkpoint(files: TrainingFiles, model, optimizers, done, losses, identity, seconds) -> None:
    save_checkpoint(files.checkpoint, model, optimizers, done, losses, identity, seconds)
    if files.loss_log is not None:
        write_loss_log(files.loss_log, losses)


def write_loss_log(path: str | os.PathLike, losses: list[float]) -> None:
    """The loss log (``iteration``, ``loss``: one row per iteration from 0), as a trainer writes it at each checkpoint
    and a run folder when the fit ends."""
    write_csv(path, pd.DataFrame({"iteration": range(len(losses)), "loss": losses}))


class _Sampler:
    """A batch sampler over a precomputed stream of index batches (DataLoader wants ``__len__``)."""

    def __init__(self, batches: Iterator[list[int]], count: int):
        self.batches, self.count = batches, max(count, 0)

    def __iter__(self):
        for _ in range(self.count):
            yield next(self.batches)

    def __len__(self) -> int:
        return self.count


def _tensorboard(files: TrainingFiles | None):
    """A TensorBoard writer into the run folder's ``tensorboard`` folder."""
    if files is None or files.tensorboard is None:
        raise UserInputError("tensorboard = true writes into the run folder; train through a run (train, bench)")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(files.tensorboard))


def loss_text(losses: list[float]) -> str:
    """The progress bar's loss: the last one, or a dash before the first iteration ends (not ``nan``, which
    would read as a diverged run: a NaN loss stops the run)."""
    return f"{losses[-1]:.4f}" if losses else "–"


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


# --- checkpoints ----------------------------------------------------------------------------------


def save_checkpoint(
    path: Path, model, optimizers: dict, iteration: int, losses: list[float], identity: dict, seconds: float = 0.0
) -> None:
    """Write the whole training state atomically (temporary file, fsync, rename)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "identity": dict(identity),
        "iteration": iteration,
        "model": model.state_dict(),
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "rng": _rng_state(),
        "losses": torch.tensor(losses, dtype=torch.float64),
        "seconds": float(seconds),  # training wall time so far, so that a resumed run reports all of it
    }
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, identity: dict) -> dict:
    """A training checkpoint, refused with a clear message if it belongs to another run kind."""
    state = load_versioned(path, CHECKPOINT_FORMAT, "training checkpoint")
    stored = state["identity"]
    different = {k: (stored.get(k), v) for k, v in identity.items() if stored.get(k) != v}
    if different:
        details = ", ".join(f"{k}: checkpoint has {a!r}, this run {b!r}" for k, (a, b) in different.items())
        raise UserInputError(
            f"checkpoint {path} belongs to another run ({details}); use another output folder or force=True."
        )
    return state


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": torch.tensor(internal, dtype=torch.int64),
        "python_version": version,
        "python_gauss": gauss,
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
