"""What a task is: where its files are, which protocol splits them, which settings it overrides.

A task turns a dataset's official layout into two MONAI-style lists of dicts,
``{"image": path, "label": 0|1, "mask": path|None, "id": str, "category": str}``, one for the
normal training images and one for the test images. Everything downstream (transforms, detectors,
metrics) sees only those lists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# the item vocabulary, and TaskData re-exported
from medrecontrast.data.items import ABNORMAL, NORMAL, ONE_IMAGE, TaskData  # noqa: F401
from medrecontrast.errors import DataLayoutError, UserInputError

DATA_ROOT_ENV = "MEDRECONTRAST_DATA"


@dataclass(frozen=True)
class Protocol:
    """Which images train and which test, in words, and whether pixel masks exist."""

    name: str
    train: str
    test: str
    has_masks: bool | None  # None: optional (folder tasks); whether a loaded task has them is TaskData.has_masks


@dataclass(frozen=True)
class Task:
    """A named benchmark task: its files, its protocol and its preprocessing. Each dataset module
    builds its own (see :class:`TaskFamily`); a method's settings per task live in the method's
    module (e.g. ReContrast's ``TASK_SETTINGS``), never here."""

    name: str
    modality: str
    protocol: Protocol
    image_size: int
    crop_size: int | None
    # Reads the layout under the task's folder and returns (train items, test items), or (train, test, notes): lines
    # the run, `data check` and the report must say (files of a released split left out, ...), or (train, test,
    # notes, validation): the normals of a released validation split, held out in place of training normals.
    list_items: Callable[["Task", Path], tuple[list[dict], list[dict]]] = field(repr=False, compare=False)
    folder: str | None = None  # folder under the data root; None for tasks that carry their own path
    layout: str = ""  # the expected files, in words, for error messages and `medrecontrast tasks`
    # Finds the task's folder when it is not under the data root (folder tasks, synthetic tasks).
    locate: Callable[["Task", Path | None], Path] | None = field(default=None, repr=False, compare=False)
    fundus_crop: bool = False
    options: dict = field(default_factory=dict, compare=False)
    # What was passed to get_task besides the name: get_task(name, **user_options) rebuilds this task.
    user_options: dict = field(default_factory=dict, compare=False)
    # A unified multi-class task: one model trains on the normals of all these tasks together and is
    # evaluated on each one's test set (items carry their member's name as "group") and their mean.
    members: tuple["Task", ...] = field(default=(), repr=False, compare=False)
    # How the task finds the patient (any unit of analysis: patient, eye, volume) of each item, in words, for
    # `medrecontrast tasks`; "" where its files say nothing of patients: then one image is one unit, never guessed.
    patients: str = ""
    # Sizes a benchmark prescribes to every method (BMAD ran each at 224 px, no crop): a run's sizes after the
    # method's own (profile, task settings); the user's layers still override them. None: each method its own.
    prescribed_sizes: dict | None = field(default=None, compare=False)
    # What is known of the benchmark's published numbers, in words: the report's comparison with the published
    # numbers repeats it for each task of the sweep (which table the numbers come from, what could not be found)
    published: str = field(default="", compare=False)

    def root(self, data_root: str | os.PathLike | None = None) -> Path:
        """The folder holding this task's files."""
        if self.locate is not None:
            return self.locate(self, data_root)
        return resolve_data_root(data_root, self) / self.folder

    def load(self, data_root: str | os.PathLike | None = None) -> TaskData:
        """List the task's items; raise :class:`DataLayoutError` with the missing piece named."""
        if self.members:
            return self._load_members(data_root)
        root = self.root(data_root)
        if not root.is_dir():
            raise DataLayoutError(f"task '{self.name}': folder {root} does not exist. {self.layout_hint()}")
        listed = self.list_items(self, root)
        train, test = listed[:2]
        notes = list(listed[2]) if len(listed) > 2 else []  # what the loader must tell (e.g. files left out)
        validation = list(listed[3]) if len(listed) > 3 else []  # a released validation split's normals (BMAD)
        if not any(it["label"] == NORMAL for it in train):
            raise DataLayoutError(
                f"task '{self.name}': no normal training images found under {root}. {self.layout_hint()}"
            )
        if not test:
            raise DataLayoutError(f"task '{self.name}': no test images found under {root}. {self.layout_hint()}")
        labels = {it["label"] for it in test}
        if labels != {NORMAL, ABNORMAL}:  # every detection metric needs both; refused now, not after training
            missing = "abnormal" if NORMAL in labels else "normal"
            raise DataLayoutError(
                f"task '{self.name}': the test set under {root} has {len(test)} image(s), none of them {missing}; "
                f"AUROC and every other metric need both normal and abnormal test images. {self.layout_hint()}"
            )
        _require_unique_ids(self, train)
        _require_unique_ids(self, test)
        return TaskData(
            task=self,
            train=train,
            test=test,
            fundus_crop=self.fundus_crop and not _all_prepared(train + test),
            notes=notes,
            validation=validation,
        )

    def _load_members(self, data_root) -> TaskData:
        """Every member's items, tagged with the member's name (``group``) and ids made unique by it."""
        parts = [member.load(data_root) for member in self.members]
        if len({part.fundus_crop for part in parts}) > 1:
            raise DataLayoutError(
                f"task '{self.name}': some members need the fundus crop and others do not; prepare them alike."
            )

        def tagged(part: TaskData, items: list[dict]) -> list[dict]:
            return [
                {
                    **it,
                    "group": part.task.name,
                    "id": f"{part.task.name}/{it['id']}",
                    **({"patient": f"{part.task.name}/{it['patient']}"} if "patient" in it else {}),
                }
                for it in items
            ]

        return TaskData(
            task=self,
            train=[it for part in parts for it in tagged(part, part.train)],
            test=[it for part in parts for it in tagged(part, part.test)],
            fundus_crop=parts[0].fundus_crop,
            notes=[note for part in parts for note in part.notes],
            # a member without a validation split would hold none out: then none of them uses one
            validation=[it for part in parts for it in tagged(part, part.validation)]
            if all(part.validation for part in parts)
            else [],
        )

    def layout_hint(self) -> str:
        return f"Expected layout: {self.layout}" if self.layout else ""


@dataclass(frozen=True)
class TaskFamily:
    """What a dataset module declares to the registry (``tasks/registry.py``), which holds no other
    knowledge of it: a new dataset is one module with a ``FAMILIES`` tuple plus one line there.

    ``build(variant, **options)`` returns the task named ``<name>[:<variant>]`` (``variant`` is ""
    when the name has none) and raises :class:`UserInputError` for a variant it does not know.
    """

    name: str  # as typed, lower case: "aptos", "mvtec"
    build: Callable[..., "Task"] = field(repr=False)
    listed: tuple[str, ...]  # how `medrecontrast tasks` and error messages list its names
    examples: Callable[[], list[tuple[str, "Task"]]] = field(repr=False)  # rows of `medrecontrast tasks`
    aliases: tuple[str, ...] = ()  # other names of the family ("oct2017")
    members: Callable[[], list[str]] | None = field(
        default=None, repr=False
    )  # a bare family name stands for these tasks
    row_notes: dict = field(
        default_factory=dict
    )  # cells of its `medrecontrast tasks` rows to replace (with a footnote mark)
    footnote: str = ""  # printed under the tasks table


def require_class(cls: str, classes: tuple[str, ...], dataset: str, family: str) -> str:
    """``cls`` if it is one of ``classes``; else a user error listing them."""
    if not cls:
        raise UserInputError(
            f"task '{family}' needs a class, e.g. {family}:{classes[0]} ('{family}' alone, in a sweep, stands for all "
            f"{len(classes)} classes)"
        )
    if cls in classes:
        return cls
    raise UserInputError(f"'{cls}' is not a {dataset} class; known classes: {', '.join(classes)}")


def task_slug(name: str) -> str:
    """The one folder name for a task name (``mvtec:bottle`` -> ``mvtec-bottle``; paths lose their slashes)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name.replace(":", "-")).strip("-")


def _require_unique_ids(task: "Task", items: list[dict]) -> None:
    """Within a split, every item's id names one file: two files that share a stem (``t000.png`` and
    ``t000.jpg``) would share an id, so scores and examples could mix them up."""
    first: dict[str, str] = {}
    for it in items:
        key = f"{it['id']}#{it.get('slice', '')}"
        if key in first:
            if first[key] == it["image"]:
                raise DataLayoutError(
                    f"task '{task.name}': {it['image']} is listed twice (image '{it['id']}'); remove the repeated "
                    "entry."
                )
            raise DataLayoutError(
                f"task '{task.name}': {first[key]} and {it['image']} would both be image '{it['id']}' (the same name "
                "without its "
                f"extension); rename or remove one of them."
            )
        first[key] = it["image"]


def _all_prepared(items: list[dict]) -> bool:
    return bool(items) and all(it.get("prepared", False) for it in items)


def resolve_data_root(data_root: str | os.PathLike | None, task: Task | None = None) -> Path:
    """``--data-root`` if given, else ``$MEDRECONTRAST_DATA``; an error that says both otherwise."""
    value = data_root or os.environ.get(DATA_ROOT_ENV)
    if not value:
        needed = (
            f" Task '{task.name}' expects its files in <data root>/{task.folder}/. {task.layout_hint()}" if task else ""
        )
        raise DataLayoutError(f"no data root: pass data_root=DIR or set {DATA_ROOT_ENV}=DIR.{needed}")
    root = Path(value).expanduser()
    if not root.is_dir():
        raise DataLayoutError(
            f"data root {root} does not exist (from {'data_root=DIR' if data_root else DATA_ROOT_ENV})."
        )
    return root


def item(
    image: Path | str, label: int, category: str, mask: Path | str | None = None, id: str | None = None, **extra
) -> dict:
    """One MONAI-style record; ``id`` defaults to the file stem."""
    record = {
        "image": str(image),
        "label": int(label),
        "mask": None if mask is None else str(mask),
        "id": id if id is not None else Path(image).stem,
        "category": category,
    }
    record.update(extra)
    return record


def require_dir(path: Path, what: str, task: Task) -> Path:
    if not path.is_dir():
        raise DataLayoutError(f"task '{task.name}': missing folder {path} ({what}). {task.layout_hint()}")
    return path


def require_file(path: Path, what: str, task: Task) -> Path:
    if not path.is_file():
        raise DataLayoutError(f"task '{task.name}': missing file {path} ({what}). {task.layout_hint()}")
    return path


def read_label_csv(
    path: Path,
    columns: tuple[str, ...],
    task: Task,
    *,
    ids: str | None = None,
    paths: tuple[str, ...] = (),
    unique: tuple[str, ...] = (),
):
    """A label file as a DataFrame, with a clear error when it is missing or lacks a column.

    ``ids`` names the column of image ids: read as text (``0002`` stays ``0002``), each unique (a
    duplicated id would put one image in both train and test) and a plain file name (no folder, no
    ``..``: an id cannot reach outside the data root). ``paths`` names columns of relative paths inside
    the data folder (VisA's), refused when absolute or climbing out with ``..``; empty cells allowed.
    ``unique`` names further columns whose values must not repeat.
    """
    import pandas as pd

    require_file(path, "label file", task)
    try:
        frame = pd.read_csv(path, dtype={c: str for c in (ids, *paths) if c}, keep_default_na=False)
    except Exception as exc:
        raise DataLayoutError(f"task '{task.name}': cannot parse {path} as CSV ({exc}).") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataLayoutError(
            f"task '{task.name}': {path} lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}, found "
            f"{', '.join(map(str, frame.columns))}."
        )
    if ids is not None:
        _check_ids(frame[ids], ids, path, task)
    for column in paths:
        _check_relative_paths(frame[column], column, path, task)
    for column in unique:
        _check_unique(frame[column], column, path, task)
    return frame


def _check_ids(values, column: str, path: Path, task: Task) -> None:
    for row, value in enumerate(values):
        if not value or value in (".", "..") or any(c in value for c in "/\\\0") or Path(value).is_absolute():
            raise DataLayoutError(
                f"task '{task.name}': {path} row {row + 2}: {column} {value!r} is not a plain file name (no folders, "
                "no '..'); ids name files inside the data folder."
            )
    _check_unique(values, column, path, task)


def _check_unique(values, column: str, path: Path, task: Task) -> None:
    duplicated = values[values.duplicated(keep=False)]
    if len(duplicated):
        first = duplicated.iloc[0]
        rows = [str(i + 2) for i in duplicated.index[duplicated == first]]
        raise DataLayoutError(
            f"task '{task.name}': {path}: {column} {first!r} appears on rows {', '.join(rows)} "
            f"({duplicated.nunique()} duplicated id(s) in all); one image must have one label, or it could land in "
            "both train and test."
        )


def _check_relative_paths(values, column: str, path: Path, task: Task) -> None:
    for row, value in enumerate(values):
        parts = Path(value.replace("\\", "/")).parts if value else ()
        if value and (Path(value).is_absolute() or value.startswith(("/", "\\")) or ".." in parts):
            raise DataLayoutError(
                f"task '{task.name}': {path} row {row + 2}: {column} {value!r} leaves the data folder; paths must be "
                "relative to it, without '..'."
            )
