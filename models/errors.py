"""The kinds of failure the platform tells apart (the CLI turns each into its own exit code).

Concrete errors subclass one of these where they are raised (``ParityError``
is a :class:`GuardFailed`, ``DataValidationError`` a :class:`DataProblem`, ...).
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class of the platform's own errors."""


class GuardFailed(ZooError):
    """A safety or quality check stopped the run: ONNX parity, a checksum, a diverged loss, a model that does harm."""


class DataProblem(ZooError):
    """The data is missing, cannot be fetched, or fails its declared schema."""


class NotFound(ZooError, LookupError):
    """No such task, config, model version or alias."""


class Blocked(ZooError):
    """A promotion gate failed; nothing was changed."""
