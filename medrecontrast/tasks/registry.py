"""Task names -> :class:`Task`, from one table of dataset modules.

Each module in :data:`MODULES` declares its task families (``FAMILIES``: a :class:`TaskFamily` per
name it answers to, e.g. ``aptos``, ``mvtec`` and ``mvtec-unified``); everything here (parsing
``<family>[:<variant>]``, aliases, expanding ``mvtec`` to its classes, listing, the rows of
``medrecontrast tasks`` and did-you-mean hints) reads that table. A new dataset is one module plus
one entry in :data:`MODULES`. The one composition of other tasks, ``unified:<task>+<task>``, is
parsed here because its members are any registered tasks.
"""

from __future__ import annotations

import difflib
from dataclasses import replace

from medrecontrast.errors import UserInputError
from medrecontrast.tasks import (
    aptos,
    bmad,
    brain_mri,
    chest_xray,
    folder,
    isic2018,
    medianomaly,
    medmnist,
    mvtec,
    oct2017,
    synthetic,
    visa,
)
from medrecontrast.tasks.base import ONE_IMAGE, Task, TaskFamily
from medrecontrast.tasks.unified import unified_task

MODULES = (aptos, oct2017, isic2018, mvtec, visa, chest_xray, brain_mri, medmnist, medianomaly, bmad, folder, synthetic)


def _unified(variant: str) -> Task:
    """``unified:<task>+<task>``: one model for any registered tasks."""
    parts = [p for p in variant.split("+") if p]
    return unified_task(f"unified:{'+'.join(parts)}", [_build_task(p) for p in parts], " + ".join(parts))


def _generic_unified_example() -> list[tuple[str, Task]]:
    return [("unified:<task>+<task>", _unified("synth-fundus+synth-oct"))]


UNIFIED = TaskFamily(
    "unified",
    _unified,
    listed=("unified:<task>+<task>",),
    examples=_generic_unified_example,
    row_notes={
        "modality": "as members",
        "masks": "as members",
        "size": "members'",
        "patients": "as members (each member's rule)",
        "train | test": "the normals of all listed tasks together | each task's test set; metrics per task and their "
        "mean",
    },
)


def families() -> dict[str, TaskFamily]:
    """Every registered family by name, in the order of :data:`MODULES`, then ``unified``."""
    return {family.name: family for family in (*(f for module in MODULES for f in module.FAMILIES), UNIFIED)}


def _aliases() -> dict[str, str]:
    return {alias: family.name for family in families().values() for alias in family.aliases}


def get_task(name: str, **options) -> Task:
    """The task called ``name`` (aliases allowed); ``options`` go to its builder (e.g. ``slice_axis``)."""
    try:
        task = _build_task(name, **options)
    except TypeError as exc:  # a builder that does not take one of the options
        raise UserInputError(f"task '{name}' takes no option(s) {', '.join(sorted(options))} ({exc}).") from None
    return replace(task, user_options=dict(options))


def _build_task(name: str, **options) -> Task:
    prefix, _, variant = name.partition(":")
    prefix = prefix.lower()
    family = families().get(_aliases().get(prefix, prefix))
    if family is None:
        raise UserInputError(_unknown_message(name))
    return family.build(variant, **options)


def expand_tasks(names: list[str] | tuple[str, ...]) -> list[Task]:
    """Resolve names to tasks, expanding a family that stands for several tasks (``mvtec``, ``visa``)."""
    tasks = []
    for name in names:
        family = families().get(_aliases().get(name.lower(), name.lower()))
        if family is not None and family.members is not None:
            tasks.extend(_build_task(member) for member in family.members())
        else:
            tasks.append(get_task(name))
    return tasks


def family_classes(name: str) -> int | None:
    """How many member tasks a bare family name stands for (``mvtec``: 15), None for a task that is no such family."""
    family = families().get(name)
    return len(family.members()) if family is not None and family.members is not None else None


def task_names() -> list[str]:
    """Every name `get_task`/`expand_tasks` understands, as `medrecontrast tasks` lists them."""
    return [name for family in families().values() for name in family.listed]


def layouts() -> dict[str, str]:
    """The files each kind of task expects under the data root, by its label in the tasks table
    (tasks that carry their own files, such as the built-in ones, have none)."""
    return {label: task.layout for family in families().values() for label, task in family.examples() if task.folder}


def registry_rows() -> list[dict]:
    """One row per task kind, with what it is and what it trains with."""
    rows = []
    for family in families().values():
        for label, task in family.examples():
            rows.append({**_row(label, task), **family.row_notes})
    return rows


def registry_records() -> list[dict]:
    """:func:`registry_rows` for scripts (`medrecontrast tasks --json`): stable snake_case keys (``task``,
    ``modality``, ``train``, ``test``, ``masks``, ``size``, ``patients``) instead of the table's display headers."""
    records = []
    for row in registry_rows():
        train, _, test = row["train | test"].partition(" | ")
        records.append(
            {
                "task": row["task"],
                "modality": row["modality"],
                "train": train,
                "test": test,
                "masks": row["masks"],
                "size": row["size"],
                "patients": row["patients"],
            }
        )
    return records


def footnotes() -> list[str]:
    """The notes printed under the tasks table (marked in the rows by ``row_notes``)."""
    return [family.footnote for family in families().values() if family.footnote]


def _row(label: str, task: Task) -> dict:
    return {
        "task": label,
        "modality": task.modality,
        "train | test": f"{task.protocol.train} | {task.protocol.test}",
        "masks": {True: "yes", False: "no", None: "optional"}[task.protocol.has_masks],
        "size": f"{task.image_size}" + (f"/{task.crop_size}" if task.crop_size else ""),
        "patients": task.patients or ONE_IMAGE,
    }


def _unknown_message(name: str) -> str:
    known = task_names()
    candidates = [k.split(":")[0] for k in known] + list(_aliases())
    close = difflib.get_close_matches(name.lower(), candidates, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown task '{name}'.{hint} Known tasks: {', '.join(known)} (run `medrecontrast tasks`)."
