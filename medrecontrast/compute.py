"""Where and how a detector computes, for every method (the training engine is :mod:`medrecontrast.engine`).

Device, mixed precision, memory format, data loading, one seeding rule, and the atomic, versioned
save and load of the suite's state files. A method that never trains (PatchCore) and prediction
need these and nothing of the training loop, so they live here and ``engine`` imports them.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator

import numpy as np
import torch

from medrecontrast.errors import UserInputError
from medrecontrast.paths import atomic_path


@contextlib.contextmanager
def own_random_streams(seed: int) -> Iterator[None]:
    """Draw from Python's, NumPy's and torch's generators seeded with ``seed`` inside the block, and
    give every global stream (CUDA's included) back as it was: building a detector fixes its initial
    weights by its own seed without moving the caller's random streams. cuDNN flags are untouched.

    Written here because ``torch.random.fork_rng`` covers torch only, not ``random`` and NumPy."""
    python, numpy = random.getstate(), np.random.get_state()
    devices = (
        list(range(torch.cuda.device_count())) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    )
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def seed_everything(seed: int) -> None:
    """One seed for Python, NumPy and torch (MONAI's ``set_determinism``, imported here: MONAI takes ~2.5 s to
    import, which listing methods or refusing a bad option should not pay)."""
    from monai.utils import set_determinism

    set_determinism(seed=seed)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device, amp: bool | str = True) -> torch.autocast:
    """Mixed precision as the ``amp`` option asks: ``True`` bf16 on CUDA only (on most CPUs bf16 is
    slower than fp32), ``"bf16"`` bf16 on any device, ``False`` fp32. Losses and anomaly maps are
    computed in fp32 from the bf16 features (see ``losses`` and ``anomaly_map``)."""
    check_amp(amp)
    enabled = amp == "bf16" or (amp is True and device.type == "cuda")
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def uses_channels_last(
    device: torch.device, amp: bool | str, channels_last: bool | None, inference: bool = False
) -> bool:
    """``channels_last`` if set, else NHWC where bf16 runs on CUDA's tensor cores, and for inference
    on the CPU, where oneDNN's NHWC convolutions score faster while a CPU training step (backward
    included) is slower in NHWC (measured: benchmarks/README.md, "Decisions measured in the code")."""
    if channels_last is not None:
        return channels_last
    return (device.type == "cuda" and amp in (True, "bf16")) or (inference and device.type == "cpu")


def to_channels_last(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Put ``model`` (a no-op once it is) and the batch ``images`` in NHWC memory format; returns the batch."""
    model.to(memory_format=torch.channels_last)
    return images.contiguous(memory_format=torch.channels_last)


def batch_to_device(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A batch of pixels (float16 from the datasets) on ``device`` as float32, copied asynchronously
    from pinned memory; the model normalises them (:class:`~medrecontrast.models.backbones.ResNetEncoder`)."""
    return images.to(device, non_blocking=True).float()


def loader_options(device: torch.device, num_workers: int | None = None) -> dict:
    """DataLoader settings that keep an accelerator fed: page-locked batches for asynchronous copies,
    workers that live across epochs and prefetch four batches each.

    ``num_workers=None`` chooses: none on the CPU (a worker would take cores from the model), and
    on a GPU up to 8: one worker feeds far fewer images per second than a bf16 WRN50 step consumes
    (benchmarks/README.md, "Decisions measured in the code")."""
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    options = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        options.update(persistent_workers=True, prefetch_factor=4)
    return options


def fused_optimizer_options(device: torch.device) -> dict:
    """``fused=True`` where torch has fused Adam/AdamW kernels (CPU and CUDA): one kernel for all
    parameters instead of one per tensor (benchmarks/README.md, "Decisions measured in the code")."""
    return {"fused": True} if device.type in ("cpu", "cuda") else {}


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through the suite's one atomic writer (:func:`~medrecontrast.paths.atomic_path`)."""
    with atomic_path(path) as partial, open(partial, "wb") as handle:
        torch.save(obj, handle)


def load_torch_file(path: str | os.PathLike, what: str, error: type[Exception] = UserInputError):
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code. A file it cannot read
    is ``error`` saying what the file is not — never torch's advice to pass ``weights_only=False``, which would run
    whatever code the file holds (wrong and unsafe for a file of unknown origin)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        text = str(exc)
        if "Unsupported global" in text:
            reason = (
                "it holds Python objects, not only tensors (a whole pickled model?): save its state_dict() with "
                "torch.save and give that file"
            )
        else:
            found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
            first = found.group(1) if found else text.strip().splitlines()[0] if text.strip() else type(exc).__name__
            reason = f"not a file written by torch.save ({first.strip()})"
        raise error(f"{what} {path} cannot be read: {reason}.") from None
    bad = _first_non_finite(state)
    if bad is not None:  # NaN weights gave NaN scores, and scikit-learn's "Input contains infinity" at the metrics
        raise error(f"{what} {path} holds NaN or infinite values (first in {bad}); it cannot give meaningful scores.")
    return state


def _first_non_finite(state, prefix: str = "") -> str | None:
    """The name of the first floating tensor of ``state`` (nested dicts and lists) with a NaN or inf, else None."""
    if isinstance(state, torch.Tensor):
        return prefix or "the tensor" if state.is_floating_point() and not torch.isfinite(state).all() else None
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    for key, value in items:
        found = _first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def load_versioned(path: str | os.PathLike, expected_format: int, what: str) -> dict:
    """A dict saved by this suite, read without unpickling code (``weights_only``), of the expected format."""
    state = load_torch_file(path, what)
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if found != expected_format:
        raise UserInputError(f"{path} is not a medrecontrast {what} of format {expected_format} (found {found}).")
    return state


def check_engineering_options(config) -> None:
    """The values of ``amp``, ``device`` and ``num_workers`` of any method's configuration, checked
    when it is built (so a sweep refuses them when it is planned, not when a run starts); their
    types are :func:`~medrecontrast.errors.check_field_types`' job, which runs first."""
    check_amp(config.amp)
    check_placement(config)


def check_amp(amp) -> None:
    """The one rule for the ``amp`` option (a configuration's check and ``autocast`` both apply it)."""
    if amp not in (True, False, "bf16"):
        raise UserInputError(f"amp must be true, false or 'bf16', got {amp!r}")


def require_device(device: str) -> None:
    """A device this machine has: ``cuda`` / ``cuda:<index>`` only with that GPU, ``mps`` only where Metal is;
    else a user error naming it and what there is (torch's own message came from every run in turn, then
    ``--resume`` was advised). Checked when a sweep is planned or a run starts, never when a configuration is
    read (a GPU run's files stay readable on a laptop)."""
    if device in ("auto", "cpu"):
        return
    try:
        kind = torch.device(device)
    except (RuntimeError, ValueError):
        return  # not a device name at all: check_placement says so when the configuration is resolved
    if kind.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = kind.index or 0
        if index >= count:
            have = f"{count} CUDA device(s) (cuda:0 to cuda:{count - 1})" if count else "no CUDA device"
            raise UserInputError(
                f"device {device!r} does not exist here: this machine has {have}. Use --device cpu, or auto (a GPU "
                "where there is one)."
            )
    if kind.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UserInputError(f"device {device!r} is not available here (no Metal GPU); use --device cpu or auto.")


def check_placement(config) -> None:
    """The values of ``device`` and ``num_workers`` (of a detector's configuration or a run's Runtime)."""
    if config.device != "auto":
        try:
            kind = torch.device(config.device).type
        except (RuntimeError, ValueError):
            kind = None
        if kind not in ("cpu", "cuda", "mps"):
            raise UserInputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {config.device!r}")
    if config.num_workers is not None and config.num_workers < 0:
        raise UserInputError(f"num_workers must be a non-negative integer or null, got {config.num_workers!r}")
