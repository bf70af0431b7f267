"""What the ``zoo`` commands print: tables that scripts and logs can read, JSON, and exit codes.

On a terminal, tables fit the window as Rich draws them. Off a terminal (a pipe,
a file, a CI log) Rich would assume 80 columns and cut or wrap cells; there the
tables are drawn at their full natural width instead, one line per row.
"""

from __future__ import annotations

import json
import sys
from enum import IntEnum
from typing import Any

from rich.console import Console

console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line in logs, whatever the width


class ExitCode(IntEnum):
    """What a ``zoo`` command's exit status means; scripts can tell the kinds of failure apart."""

    OK = 0
    ERROR = 1
    """Any other failure (a bad argument value, a file that cannot be read, ...)."""
    USAGE = 2
    """The command line itself is wrong (Click's own code)."""
    BLOCKED = 3
    """A promotion gate failed, or another retrain of the task is running: nothing changed."""
    DATA = 4
    """The data is missing, cannot be fetched, or fails its schema: nothing was trained."""
    NOT_FOUND = 5
    """No such task, config, model version or alias."""
    REGISTRY = 6
    """The model registry (or another server) could not be reached, or refused the credentials."""
    GUARD = 7
    """A safety or quality check stopped the run: ONNX parity, a checksum, a diverged loss, a harmful model."""


def emit(renderable: Any) -> None:
    """Print a Rich renderable (a table, text): to the terminal's width, or at full width off a terminal."""
    if console.is_terminal:
        console.print(renderable)
        return
    Console(file=sys.stdout, width=1_000_000, color_system=None, soft_wrap=True).print(renderable)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (no Rich markup, no wrapping)."""
    print(json.dumps(value, indent=2, default=str))
