"""A short seeded Schemathesis run over every operation of the session's all-tasks service (``make fuzz`` runs the long one)."""

from __future__ import annotations

import pytest
from reliability.fuzz import fuzz

pytestmark = pytest.mark.slow


def test_generated_requests_get_no_5xx_and_match_the_declared_schema(server: str) -> None:
    result = fuzz(server, max_examples=12, seed=0, workers=1)
    assert not result["failures"] and not result["errors"] and result["exit_code"] == 0, result["output_tail"]
    assert result["ready_after"]
    tasks = {op: n for op, n in result["per_operation"].items() if op.startswith("POST")}
    assert len(tasks) == 10 and min(tasks.values()) >= 12, tasks  # the seven task routes, /feedback and the protocol's two infer routes
    assert not [(op, codes) for op, codes in result["statuses"].items() if any(c >= 500 for c in codes)]
