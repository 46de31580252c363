"""The paper's unified multi-class setting: one model trains on the normals of several tasks together
and is evaluated on each one's test set, per member and on their mean
(``recontrast_{mvtec,visa}_multiclass.py``). Dataset modules compose their own unified task from
their classes with :func:`unified_task`; the registry composes ``unified:<task>+<task>``."""

from __future__ import annotations

from collections.abc import Callable

from medrecontrast.errors import UserInputError
from medrecontrast.tasks.base import Protocol, Task, TaskFamily


def unified_task(name: str, members: list[Task], what: str) -> Task:
    """One model for all ``members``, evaluated per member and on average; ``what`` names them in words."""
    if len(members) < 2:
        raise UserInputError(f"task '{name}' needs at least two member tasks, e.g. unified:synth-fundus+synth-oct")
    if len({m.name for m in members}) != len(members):
        raise UserInputError(f"task '{name}' lists a member twice")
    sizes = {(m.image_size, m.crop_size) for m in members}
    if len(sizes) > 1:
        raise UserInputError(
            f"task '{name}': its members have different image sizes {sorted(sizes, key=str)}; a unified model needs "
            "one size"
        )
    nested = [m.name for m in members if m.members]
    if nested:
        raise UserInputError(f"task '{name}': a member cannot itself be unified ({', '.join(nested)})")
    first = members[0]
    return Task(
        name=name,
        modality=first.modality if len({m.modality for m in members}) == 1 else "mixed",
        protocol=Protocol(
            "unified",
            f"the normals of all {len(members)} classes together ({what})",
            "each class's test set; metrics per class and their mean",
            has_masks=first.protocol.has_masks if len({m.protocol.has_masks for m in members}) == 1 else None,
        ),
        image_size=first.image_size,
        crop_size=first.crop_size,
        list_items=None,
        layout=first.layout,
        fundus_crop=first.fundus_crop,
        members=tuple(members),
        prescribed_sizes=first.prescribed_sizes if len({str(m.prescribed_sizes) for m in members}) == 1 else None,
        # each member's own rule; a member without patient information keeps one image = one unit
        patients="; ".join(dict.fromkeys(f"{m.name}: {m.patients}" for m in members if m.patients)),
    )


def unified_family(family: str, member: Callable[[str], Task], classes: tuple[str, ...], label: str) -> TaskFamily:
    """``<family>-unified``: one model for every class of a dataset (``member(class)`` builds each)."""
    name = f"{family}-unified"

    def build(variant: str = "") -> Task:
        if variant:
            raise UserInputError(f"task '{name}' has no variants (got '{name}:{variant}')")
        return unified_task(name, [member(c) for c in classes], f"all {len(classes)} {label} classes")

    return TaskFamily(name, build, listed=(name,), examples=lambda: [(name, build())])
