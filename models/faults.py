"""Fail points for chaos testing: named places where a retrain can be made to die.

``ZOO_FAILPOINTS=register`` (comma-separated, from :data:`models.settings.FAILPOINTS`) makes the
process kill itself with SIGKILL when it reaches that point: no ``finally`` block, no exception
handler and no Prefect hook runs, as when the machine loses power or the kernel's OOM killer
picks the process. ``make chaos`` uses them to check that a retrain killed anywhere leaves
nothing registered and that the next one starts clean (:mod:`pipelines.recovery`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from models.settings import Settings

log = logging.getLogger(__name__)


def failpoint(settings: Settings, name: str) -> None:
    """Die here with SIGKILL when ``ZOO_FAILPOINTS`` names ``name``; otherwise nothing."""
    if name in settings.failpoints:
        log.warning("ZOO_FAILPOINTS: killing this process (pid %d) at %r", os.getpid(), name)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
