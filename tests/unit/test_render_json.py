"""The JSON of ``stepline runs show --json`` says what the table says."""

from __future__ import annotations

from datetime import UTC, datetime

from stepline import StepInfo
from stepline.server.views import iso, step_json


def test_an_executing_step_carries_its_attempt_number_and_start_in_json() -> None:
    # issue 6 review item 3: the table said "attempt 1 executing" while JSON gave attempts: 0
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    running = step_json(StepInfo("charge", "run", "RUNNING", 0, None, None, at))
    assert running["attempts"] == 0  # made before the one executing
    assert running["executing_attempt"] == 1
    assert running["started_at"] == iso(at) == "2026-01-02T03:04:05.000000Z"
    retried = step_json(StepInfo("charge", "run", "RUNNING", 2, None, None, at))
    assert retried["executing_attempt"] == 3
    done = step_json(StepInfo("charge", "run", "COMPLETED", 1, "ok", None, at, at))
    assert done["executing_attempt"] is None
