"""The hard limits a run lives within (defaults from Inngest)."""

from __future__ import annotations

from dataclasses import dataclass

from stepline.errors import ConfigError
from stepline.sdk._location import located


@dataclass(frozen=True)
class Limits:
    """Per-app limits. A breach fails the run with ``LimitExceededError`` naming the limit;
    an oversize event is refused when sent with ``EventError``."""

    max_steps: int = 1000
    max_step_output_bytes: int = 4 * 1024 * 1024
    max_run_state_bytes: int = 32 * 1024 * 1024
    max_event_bytes: int = 512 * 1024

    @located
    def __post_init__(self) -> None:
        for name in (
            "max_steps",
            "max_step_output_bytes",
            "max_run_state_bytes",
            "max_event_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"Limits.{name} must be a positive integer, got {value!r}")
