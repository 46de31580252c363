"""Benchmark tasks: dataset layouts, protocols and per-task settings."""

from medrecontrast.tasks.base import (
    DATA_ROOT_ENV,
    Hyperparameters,
    Protocol,
    Task,
    TaskData,
    resolve_data_root,
)
from medrecontrast.tasks.registry import (
    expand_tasks,
    get_task,
    registry_rows,
    task_names,
)

__all__ = [
    "DATA_ROOT_ENV", "Hyperparameters", "Protocol", "Task", "TaskData", "expand_tasks", "get_task",
    "registry_rows", "resolve_data_root", "task_names",
]
