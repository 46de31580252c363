"""Benchmark tasks: dataset layouts, protocols and per-task settings (one module per dataset)."""

from medrecontrast.tasks.base import (
    DATA_ROOT_ENV,
    Protocol,
    Task,
    TaskData,
    TaskFamily,
    resolve_data_root,
    task_slug,
)
from medrecontrast.tasks.registry import (
    expand_tasks,
    family_classes,
    footnotes,
    get_task,
    layouts,
    registry_records,
    registry_rows,
    task_names,
)

__all__ = [
    "DATA_ROOT_ENV",
    "Protocol",
    "Task",
    "TaskData",
    "TaskFamily",
    "expand_tasks",
    "family_classes",
    "footnotes",
    "layouts",
    "get_task",
    "registry_records",
    "registry_rows",
    "resolve_data_root",
    "task_names",
    "task_slug",
]
