"""Building the BentoML services: one task's API on its own, or every registered task's on one port."""

from __future__ import annotations

import importlib
from typing import Any

import bentoml

from models.registry import task_names
from services.base import ZooService
from services.inference_protocol import protocol_app
from services.middleware import with_middleware
from services.options import service_options, serving


def task_api(task: str) -> type[ZooService]:
    """The ``API`` class of ``services/<task>.py`` (a ZooService subclass for that task)."""
    api = getattr(importlib.import_module(f"services.{task}"), "API", None)
    if not (isinstance(api, type) and issubclass(api, ZooService)) or api.task != task:
        raise TypeError(f"services/{task}.py must define API, a ZooService subclass declared with task={task!r}")
    return api


def build(name: str, cls: type[ZooService], doc: str) -> Any:
    """Decorate ``cls`` as a BentoML service named ``name``, with the project's middleware."""
    cls.__doc__ = doc
    service = bentoml.service(**service_options(name, cls.compute_bound))(cls)
    return with_middleware(service, cls.routes(), serving(), cls.api_tasks(), protocol_app())


def single_task_service(api: type[ZooService], compute_bound: bool = False) -> Any:
    """The service of one task's API (``bentoml serve services.<task>:Service``)."""
    task = api.task
    assert task is not None
    cls = type(f"{task.capitalize()}Service", (api,), {"__module__": api.__module__, "compute_bound": compute_bound})
    return build(task, cls, f"The {task} API of course-zoo, serving the registry's champion.")


def all_tasks_service() -> Any:
    """Every registered task's API on one port, composed from the task registry."""
    apis = tuple(task_api(task) for task in task_names())
    cls = type("Zoo", apis, {"__module__": __name__, "discover": True})
    return build("zoo", cls, "Every course-zoo task with a champion (or those in ZOO_TASKS); the other APIs answer 503.")
