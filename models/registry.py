"""The task registry: every module in ``models/tasks`` that defines ``TASK``.

Adding a task is adding one file there. Nothing registers itself on import:
the registry lists the package's modules and imports one only when asked.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from models import tasks as _tasks_pkg
from models.task import Task


class UnknownTask(KeyError):
    """Raised for a task name that no module defines."""

    def __str__(self) -> str:
        return f"unknown task {self.args[0]!r}; known tasks: {', '.join(task_names())}"


def task_names() -> list[str]:
    """Names of all task modules, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(_tasks_pkg.__path__) if not m.name.startswith("_"))


@cache
def get_task(name: str) -> Task:
    """Import ``models.tasks.<name>`` and return its ``TASK``."""
    if name not in task_names():
        raise UnknownTask(name)
    module = importlib.import_module(f"{_tasks_pkg.__name__}.{name}")
    task = getattr(module, "TASK", None)
    if not isinstance(task, Task) or task.name != name:
        raise TypeError(f"models/tasks/{name}.py must define TASK, a Task named {name!r}")
    return task


def all_tasks() -> list[Task]:
    """Every registered task."""
    return [get_task(n) for n in task_names()]
