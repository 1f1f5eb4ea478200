"""What starts a function: events (with an optional CEL filter) and cron schedules."""

from __future__ import annotations

from dataclasses import dataclass, field

from stepline.errors import ConfigError
from stepline.expressions import Expression, compile_expression


@dataclass(frozen=True)
class TriggerEvent:
    """Run the function for every event named ``name`` whose data passes ``if_`` (CEL)."""

    name: str
    if_: str | None = None
    _filter: Expression | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("TriggerEvent: name must be a non-empty event name")
        if self.if_ is not None:
            object.__setattr__(self, "_filter", compile_expression(self.if_))

    def matches(self, payload: dict[str, object]) -> bool:
        """Whether an event (its JSON payload) triggers the function."""
        return self._filter is None or self._filter.matches({"event": payload})
