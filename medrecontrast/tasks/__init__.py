"""Benchmark tasks: dataset layouts, protocols and per-task settings (one module per dataset)."""

import random

# the imports below load Rich and MONAI, whose imports draw from Python's global random stream: a caller's seeded
# stream is restored once they are done (as medrecontrast.models does)
_CALLER_RANDOM_STATE = random.getstate()

from medrecontrast.tasks.base import (  # noqa: E402
    DATA_ROOT_ENV,
    Protocol,
    Task,
    TaskData,
    TaskFamily,
    resolve_data_root,
    task_slug,
)
from medrecontrast.tasks.registry import (  # noqa: E402
    expand_tasks,
    family_classes,
    footnotes,
    get_task,
    layouts,
    registry_records,
    registry_rows,
    task_names,
)

random.setstate(_CALLER_RANDOM_STATE)
del _CALLER_RANDOM_STATE

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
