r"""What a sweep runs: tasks x methods x seeds, a profile, and per-task/per-method overrides.

Everything a ``bench`` flag sets can also come from a TOML file; flags win over the file::

    name = "medical"
    tasks = ["aptos", "oct", "isic"]
    methods = ["recontrast", "rd4ad", "patchcore"]
    seeds = [0, 1, 2]
    profile = "paper"
    data_root = "/data"
    executor = "ray"
    patient_score = "max"          # a patient's score from its images' (max, mean, top<k>): statistics only

    [options]                      # every run
    holdout = 0.05
    [method.patchcore]             # every run of one method
    coreset_ratio = 0.01
    [task.oct]                     # every run of one task
    iters = 500
    [task.oct.method.patchcore]    # one task and one method
    coreset_ratio = 0.001
    [task.aptos.data]              # options of the task itself (get_task)
    n_train = 500
    [task."folder:/data/scans".data]
    patient = '^(\w+)_\d+'         # who each image belongs to (a folder task's option)
    [variant.rc-no-sg]             # a named method variant: a method plus overrides, listed in
    method = "recontrast"          # `methods` and shown as a row of every table and figure
    stop_gradient = false

Later sections win over earlier ones in the order above; a variant's own options sit between
[options] and [method.<variant>]; the command line's ``--device`` and ``--holdout`` (``flags``) win
over every section. Each section is one layer of :func:`medrecontrast.run.resolve_run_config`,
which resolves and checks every run of the plan once.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from medrecontrast.errors import UserInputError
from medrecontrast.models import DETECTORS, default_methods
from medrecontrast.models.base import detector_class
from medrecontrast.run import PROFILES, accepted_keys, default_profile
from medrecontrast.sweepfile import _line_of, check_patient_score, read_sweep_file
from medrecontrast.tasks import expand_tasks
from medrecontrast.tasks.synthetic import SYNTHETIC_TASKS

EXECUTORS = ("local", "ray")
DEFAULT_SEEDS = {"demo": (0, 1), "paper": (0, 1, 2), "lite": (0, 1, 2), "tiny": (0, 1)}


@dataclass
class SweepConfig:
    """A whole sweep. ``tasks=None`` means the built-in synthetic tasks with the demo profile."""

    tasks: list[str] | None = None
    methods: list[str] = field(default_factory=default_methods)  # every method that declares default_sweep
    seeds: list[int] | None = None  # default: the profile's (demo, tiny: 0 1; paper, lite: 0 1 2)
    profile: str | None = None  # default: demo for the built-in tasks, paper for real ones (run.default_profile)
    name: str | None = None  # default: the --out folder's name, else the profile
    out: str | None = None  # default: runs/<name>
    report: str | None = None  # default: reports/<name>
    data_root: str | None = None
    weights: str | None = None
    executor: str = "local"
    address: str | None = None  # Ray cluster address; None starts a local Ray instance
    gpus_per_run: float | None = None  # Ray: default 1 where the cluster has GPUs, else 0
    cpus_per_run: int = 1  # Ray: CPU cores (and torch threads) per run
    options: dict = field(default_factory=dict)
    method: dict = field(default_factory=dict)  # method -> options
    task: dict = field(default_factory=dict)  # task -> options (+ "method" -> method -> options, + "data")
    variant: dict = field(default_factory=dict)  # variant name -> {"method": base method, **options}
    flags: dict = field(
        default_factory=dict
    )  # the command line's settings (--device, --holdout): the last layer, over every section
    source: str | None = None  # the TOML file the settings came from (for error messages with its lines)
    # how a patient's image scores become its score in the patient-level results (max, mean or top<k>); statistics
    # only (no run depends on it), recorded in sweep.json for `tables`/`report`
    patient_score: str = "max"

    def resolved(self) -> "ResolvedSweep":
        """A :class:`ResolvedSweep`: every default filled in and every name checked (once: resolving a resolved
        sweep returns it as it is)."""
        c = dataclasses.replace(self)
        c.profile = c.profile or default_profile(c.tasks or SYNTHETIC_TASKS)
        if c.profile not in PROFILES:
            raise UserInputError(f"unknown profile '{c.profile}'; choose one of {', '.join(PROFILES)}")
        c.tasks = list(c.tasks or SYNTHETIC_TASKS)
        c.seeds = list(c.seeds if c.seeds is not None else DEFAULT_SEEDS[c.profile])
        for name, body in c.variant.items():
            if name in DETECTORS:
                raise UserInputError(f"variant '{name}' has the name of a method; choose another name")
            if not isinstance(body, dict) or not isinstance(body.get("method"), str):
                raise UserInputError(f"variant '{name}' needs method = \"<one of {', '.join(sorted(DETECTORS))}>\"")
            detector_class(body["method"])
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise UserInputError(
                    f"variant name '{name}' must be letters, digits, '-', '_' or '.' (it names a folder)"
                )
        for method in c.methods:
            if method not in c.variant:
                detector_class(method)
        unused = sorted(set(c.variant) - set(c.methods))
        if unused:
            raise UserInputError(
                f"variant(s) {', '.join(unused)} defined but not in methods ({', '.join(c.methods)}); add them to "
                "methods or remove them"
            )
        check_patient_score(c.patient_score)
        if c.executor not in EXECUTORS:
            raise UserInputError(f"unknown executor '{c.executor}'; choose one of {', '.join(EXECUTORS)}")
        if not c.tasks or not c.methods or not c.seeds:
            raise UserInputError("a sweep needs at least one task, one method and one seed")
        if len(set(c.seeds)) != len(c.seeds):
            raise UserInputError(f"seeds repeat: {c.seeds}")
        c.task = _resolve_task_sections(c.task, [t.name for t in expand_tasks(c.tasks)])
        _check_method_sections(c)
        c.name = c.name or (Path(c.out).name if c.out else c.profile)
        c.out = str(Path(c.out or Path("runs") / c.name).absolute())
        c.report = str(Path(c.report or Path("reports") / c.name).absolute())
        return ResolvedSweep(**{f.name: getattr(c, f.name) for f in dataclasses.fields(SweepConfig)})

    def base_method(self, method: str) -> str:
        """The registered method behind a name of ``methods`` (itself, or a variant's ``method``)."""
        return self.variant[method]["method"] if method in self.variant else method

    def layers(self, task: str, method: str) -> list[tuple[str, dict]]:
        """The user layers of one (task, method), lowest precedence first, each named by its TOML
        section: [options] < [variant.M] < [method.M] < [task.T] < [task.T.method.M] < flags.

        Keys of the shared sections ([options], [task.T], flags) apply to the methods that have them
        (``iters`` reaches ReContrast and RD4AD, not PatchCore); the loader checked that each is
        an option of at least one method. ``method`` may be a variant's name.
        """
        accepted = accepted_keys(self.base_method(method))
        variant = {k: v for k, v in self.variant.get(method, {}).items() if k != "method"}
        task_section = self.task.get(task, {})
        task_wide = {k: v for k, v in task_section.items() if k not in ("method", "data")}

        def applicable(section: dict) -> dict:
            return {k: v for k, v in section.items() if k in accepted}

        layers = [
            ("[options]", applicable(self.options)),
            (f"[variant.{method}]", variant),
            (f"[method.{method}]", dict(self.method.get(method, {}))),
            (f"[task.{task}]", applicable(task_wide)),
            (f"[task.{task}.method.{method}]", dict(task_section.get("method", {}).get(method, {}))),
            ("flags", applicable(self.flags)),
        ]
        return [(name, options) for name, options in layers if options]

    def overrides(self, task: str, method: str) -> dict:
        """The user layers of one (task, method) merged: what they set, later layers winning."""
        return {k: v for _, options in self.layers(task, method) for k, v in options.items()}

    def task_options(self, task: str) -> dict:
        """Options of the task itself, passed to ``get_task`` (e.g. APTOS ``n_train``)."""
        return dict(self.task.get(task, {}).get("data", {}))


def locate_option(config: "SweepConfig", error: UserInputError) -> str:
    """Where the option an error names was set: `` (sweep.toml, line 12: iters)`` when the sweep came
    from a file that sets it, else ""; the option is the error's first word (``iters must be ...``)
    and its section the layer the error names (``set in [task.oct]``), so the line is that section's."""
    message = str(error)
    named = re.match(r"unknown option '(\w+)'", message)
    key = named.group(1) if named else message.split(" ", 1)[0].rstrip(":")
    if not config.source or not key.isidentifier() or not Path(config.source).is_file():
        return ""
    section = re.search(r"set in \[([^\]]+)\]", message)
    line = _line_of(Path(config.source).read_text(), key, section.group(1) if section else None)
    return f" ({config.source}, line {line}: {key})" if line != "?" else ""


def _resolve_task_sections(sections: dict, planned: list[str]) -> dict:
    """``[task.X]`` sections keyed by the planned task names they reach: an alias (``oct2017``), any
    case (``OCT``) or a family (``mvtec`` reaches every ``mvtec:<class>`` of the sweep; a class's own
    section wins over its family's). A section that names no task at all (a typo) is refused with a
    did-you-mean; one for a real task that this sweep does not run (a shared file narrowed by
    ``--tasks``) reaches nothing and changes nothing. A ``folder:<path>`` section reaches the folder task of the
    same path however it is spelt (trailing slash, relative path); one that reaches no folder of the sweep is
    refused (it named a path nothing runs)."""
    resolved: dict[str, dict] = {}
    reached = {}
    for key in sections:
        try:
            names = [t.name for t in expand_tasks([key])]
        except UserInputError:
            close = difflib.get_close_matches(key.lower(), planned, n=1, cutoff=0.6)
            hint = f" Did you mean [task.{close[0]}]?" if close else ""
            raise UserInputError(
                f"[task.{key}] names no task (this sweep runs {', '.join(planned)}), so its settings would be "
                f"ignored.{hint}"
            ) from None
        reached[key] = [n for n in names if n in planned]
        if key.lower().startswith("folder:"):
            # a folder is its path, however spelt: a trailing slash or a relative spelling reaches the same task
            reached[key] = [n for n in planned if n.lower().startswith("folder:") and _same_folder(n, key)]
            if not reached[key]:
                folders = [n for n in planned if n.lower().startswith("folder:")]
                raise UserInputError(
                    f'[task."{key}"] names a folder this sweep does not run ('
                    + (f"its folder tasks: {', '.join(folders)}" if folders else "it runs no folder task")
                    + "), so its settings would be ignored; spell the section as the task's path."
                )
    for key in sorted(sections, key=lambda k: -len(reached[k])):  # families first, so each task's own section wins
        for name in reached[key]:
            merged = resolved.setdefault(name, {})
            for option, value in sections[key].items():
                if option in ("method", "data") and isinstance(value, dict):
                    inner = merged.setdefault(option, {})
                    for sub, sub_value in value.items():
                        inner[sub] = (
                            {**inner.get(sub, {}), **sub_value}
                            if option == "method" and isinstance(sub_value, dict)
                            else sub_value
                        )
                else:
                    merged[option] = value
    return resolved


def _same_folder(first: str, second: str) -> bool:
    """Whether two ``folder:<path>`` names are one folder (paths compared resolved, not as text)."""

    def path(name: str) -> Path:
        return Path(name.split(":", 1)[1]).expanduser().resolve()

    return path(first) == path(second)


def _check_method_sections(c: "SweepConfig") -> None:
    """``[method.M]`` and ``[task.T.method.M]`` must name a method or variant of the sweep, or a
    registered method (one a shared file configures although ``--methods`` left it out)."""
    named = [(f"method.{m}", m) for m in c.method] + [
        (f"task.{t}.method.{m}", m) for t, body in c.task.items() for m in body.get("method", {})
    ]
    for section, method in named:
        if method not in c.methods and method not in DETECTORS:
            close = difflib.get_close_matches(method, c.methods, n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UserInputError(
                f"[{section}] names '{method}', which is not a method of this sweep ({', '.join(c.methods)}), so its "
                f"settings would be ignored.{hint}"
            )


@dataclass
class ResolvedSweep(SweepConfig):
    """A sweep with every default filled in (:meth:`SweepConfig.resolved`): its tasks, seeds, profile, name and
    folders are set, its names checked. The plan, the executors, ``--dry-run`` and the report read this; nothing
    resolves it again."""

    tasks: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    profile: str = ""
    name: str = ""
    out: str = ""
    report: str = ""

    def resolved(self) -> "ResolvedSweep":
        return self


def load_sweep_config(path: str | Path, **flags) -> SweepConfig:
    """A sweep config from a TOML file, with ``flags`` (not None) taking precedence. The file's own checks (UTF-8,
    TOML, top-level keys and types, tables) are :func:`medrecontrast.sweepfile.read_sweep_file`'s, which the
    command line runs before torch loads; the option names of its sections are checked here."""
    raw, text = read_sweep_file(path)
    path = Path(path)
    _check_option_names(path, text, raw)
    return SweepConfig(**{**raw, **{k: v for k, v in flags.items() if v is not None}, "source": str(path)})


def sweep_from_command_line(config_file: str | Path | None, flags: dict, settings: dict) -> SweepConfig:
    """The resolved sweep a command line asks for: the TOML file (if any) with the ``flags`` that name sweep fields
    (not None) over it, then the run settings given on the command line (``holdout``, ``device``,
    ``keep_checkpoints``; not None) as one more layer over every section of the file."""
    given = {k: v for k, v in flags.items() if v is not None}
    sweep = load_sweep_config(config_file, **given) if config_file else SweepConfig(**given)
    sweep.flags = {**sweep.flags, **{k: v for k, v in settings.items() if v is not None}}
    return sweep.resolved()


def _check_option_names(path: Path, text: str, raw: dict) -> None:
    """Unknown run options are reported with their line now, not when the first run starts. What a
    section accepts is :func:`medrecontrast.run.accepted_keys` of its method (any method's for the
    shared sections), the resolver's own rule; its values are checked when the sweep is planned."""
    variants = raw.get("variant", {})
    any_method = set().union(*(accepted_keys(m) for m in DETECTORS))

    def allowed(method: str | None) -> set:
        base = variants[method].get("method") if method in variants else method
        return accepted_keys(base) if base in DETECTORS else any_method

    for name, body in variants.items():
        if body.get("method") not in DETECTORS:
            raise UserInputError(
                f"{path}, line {_line_of(text, name)}: [variant.{name}] needs method = one of "
                f"{', '.join(sorted(DETECTORS))}, got {body.get('method')!r}"
            )
    sections = [("options", raw.get("options", {}), any_method)]
    sections += [(f"method.{m}", body, allowed(m)) for m, body in raw.get("method", {}).items()]
    for task, body in raw.get("task", {}).items():
        sections.append((f"task.{task}", {k: v for k, v in body.items() if k not in ("method", "data")}, any_method))
        sections += [(f"task.{task}.method.{m}", b, allowed(m)) for m, b in body.get("method", {}).items()]
    sections += [
        (f"variant.{name}", {k: v for k, v in body.items() if k != "method"}, allowed(name))
        for name, body in variants.items()
    ]
    for section, body, known in sections:
        for key in body:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise UserInputError(
                    f"{path}, line {_line_of(text, key, section)}: unknown option '{key}' in [{section}].{hint} "
                    f"Known: {', '.join(sorted(known))}"
                )
