"""All task APIs on one port, composed from the task registry: every task with a champion (or those in ``ZOO_TASKS``)."""

from __future__ import annotations

from services.compose import all_tasks_service

Zoo = all_tasks_service()
