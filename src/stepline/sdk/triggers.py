"""What starts a function: events (with an optional CEL filter) and cron schedules."""

from __future__ import annotations

from dataclasses import dataclass, field

from stepline._text import clipped
from stepline.cron import CronSchedule, parse_cron
from stepline.errors import ConfigError
from stepline.expressions import Expression, compile_condition
from stepline.sdk._location import located
from stepline.sdk.event import event_name_problem


@dataclass(frozen=True)
class TriggerEvent:
    """Run the function for every event named ``name`` whose data passes ``if_`` (CEL).

    Raises ``ExpressionError`` for an invalid ``if_``, or one whose result is known not to be a
    boolean (``"event.data.x + 1"``)."""

    name: str
    if_: str | None = None
    _filter: Expression | None = field(default=None, init=False, repr=False, compare=False)

    @located
    def __post_init__(self) -> None:
        problem = event_name_problem(self.name)
        if problem is not None:  # no event can have it (check_event_name)
            shown = clipped(self.name) if isinstance(self.name, str) else self.name
            raise ConfigError(f"TriggerEvent: name {shown!r} {problem}")
        if self.if_ is not None:
            object.__setattr__(self, "_filter", compile_condition(self.if_))

    def matches(self, payload: dict[str, object]) -> bool:
        """Whether an event (its JSON payload) triggers the function."""
        return self._filter is None or self._filter.matches({"event": payload})


CRON_EVENT = "inngest/scheduled.timer"


@dataclass(frozen=True)
class TriggerCron:
    """Run the function on a schedule: a 5-field cron string with an optional ``TZ=Area/City``
    prefix (``"TZ=Europe/Paris 0 12 * * 5"``: Fridays at noon, Paris time). Each tick starts
    one run, whatever the number of workers; ticks missed while no worker ran are not replayed,
    except the latest one, once. The run's event is ``inngest/scheduled.timer`` with the tick
    time in ``data.cron``/``ts``."""

    cron: str
    schedule: CronSchedule = field(init=False, repr=False, compare=False)

    @located
    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", parse_cron(self.cron))
