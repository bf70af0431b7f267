"""The error raised for bad input to a model, with a reason for metrics."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Input a model cannot take: ``reason`` is a short label, ``status`` an HTTP 4xx."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
