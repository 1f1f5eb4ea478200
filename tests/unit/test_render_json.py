"""The JSON of ``stepline runs show --json`` says what the table says."""

from __future__ import annotations

from datetime import UTC, datetime

from stepline import StepInfo
from stepline.cli._render import step_dict


def test_an_executing_step_carries_its_attempt_number_and_start_in_json() -> None:
    # issue 6 review item 3: the table said "attempt 1 executing" while JSON gave attempts: 0
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    running = step_dict(StepInfo("charge", "run", "RUNNING", 0, None, None, at))
    assert running["attempts"] == 0  # made before the one executing
    assert running["executing_attempt"] == 1
    assert running["started_at"] == at.isoformat()
    retried = step_dict(StepInfo("charge", "run", "RUNNING", 2, None, None, at))
    assert retried["executing_attempt"] == 3
    done = step_dict(StepInfo("charge", "run", "COMPLETED", 1, "ok", None, at, at))
    assert done["executing_attempt"] is None
