"""The kinds of failure the platform tells apart (the CLI turns each into its own exit code), and a full disk.

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


def out_of_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an error behind it is a full disk (ENOSPC, or SQLite's own message for it)."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "database or disk is full" in str(exc) or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
