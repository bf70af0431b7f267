"""The task registry: the packages (or modules) of ``models/tasks`` that define ``TASK``.

Adding a task is adding one package there (plus its service file). Nothing
registers itself on import: the registry lists the package's modules and
imports one only when asked. Importing a task, or its serving hooks, imports
no PyTorch.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING

from models import tasks as _tasks_pkg
from models.errors import NotFound

if TYPE_CHECKING:  # listing task names imports neither (nor numpy): the ops commands answer at once
    from models.serving import Serving
    from models.task import Task


class UnknownTask(NotFound, KeyError):
    """Raised for a task name that no module defines."""

    def __str__(self) -> str:
        return f"unknown task {self.args[0]!r}; known tasks: {', '.join(task_names())}"


def task_names() -> list[str]:
    """Names of all task modules, sorted (nothing is imported)."""
    return sorted(m.name for m in pkgutil.iter_modules(_tasks_pkg.__path__) if not m.name.startswith("_"))


def _module(name: str, part: str = ""):
    if name not in task_names():
        raise UnknownTask(name)
    return importlib.import_module(f"{_tasks_pkg.__name__}.{name}{part}")


@cache
def get_task(name: str) -> Task:
    """Import ``models.tasks.<name>`` and return its ``TASK``."""
    from models.task import Task

    task = getattr(_module(name), "TASK", None)
    if not isinstance(task, Task) or task.name != name:
        raise TypeError(f"models/tasks/{name} must define TASK, a Task named {name!r}")
    return task


@cache
def get_serving(name: str) -> type[Serving]:
    """Import ``models.tasks.<name>.serving`` and return its ``SERVING`` class (the task's serving hooks)."""
    from models.serving import Serving

    hooks = getattr(_module(name, ".serving"), "SERVING", None)
    if not (isinstance(hooks, type) and issubclass(hooks, Serving)) or hooks.task != name:
        raise TypeError(f"models/tasks/{name}/serving.py must define SERVING, a Serving subclass for {name!r}")
    return hooks


def all_tasks() -> list[Task]:
    """Every registered task."""
    return [get_task(n) for n in task_names()]
