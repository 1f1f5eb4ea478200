"""A function definition: its id, triggers, retry policy, failure handler and body."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stepline.errors import ConfigError
from stepline.sdk.triggers import TriggerEvent

if TYPE_CHECKING:
    from stepline.sdk.context import Context

Handler = Callable[["Context"], Any]

MAX_TRIGGERS = 10
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")


@dataclass(frozen=True)
class FunctionDef:
    """A registered function. Pass it to ``step.invoke(function=...)``; call ``.handler`` to test
    the body directly."""

    id: str
    handler: Handler
    triggers: tuple[TriggerEvent, ...]
    retries: int
    is_async: bool
    on_failure_of: str | None = None

    @property
    def name(self) -> str:
        """The function's id (Inngest calls it the slug)."""
        return self.id


def build_function(
    *,
    id: str,
    handler: Handler,
    trigger: TriggerEvent | None,
    triggers: Sequence[TriggerEvent] | None,
    retries: int,
    on_failure_of: str | None = None,
) -> FunctionDef:
    """Validate options and build a FunctionDef; every problem raises ``ConfigError``."""
    if not isinstance(id, str) or not _ID.match(id):
        raise ConfigError(
            f"function id {id!r} is invalid: use 1-128 letters, digits and _ . : / - "
            "(starting with a letter or digit)"
        )
    if trigger is not None and triggers is not None:
        raise ConfigError(f"function {id!r}: pass either trigger= or triggers=, not both")
    found: list[TriggerEvent] = (
        [trigger] if trigger is not None else list(triggers) if triggers is not None else []
    )
    if len(found) > MAX_TRIGGERS:
        raise ConfigError(f"function {id!r}: at most {MAX_TRIGGERS} triggers, got {len(found)}")
    for item in found:
        if not isinstance(item, TriggerEvent):
            raise ConfigError(
                f"function {id!r}: triggers must be TriggerEvent objects, got {item!r}"
            )
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
        raise ConfigError(f"function {id!r}: retries must be an integer from 0 to 20")
    if not callable(handler):
        raise ConfigError(f"function {id!r}: the decorated object is not callable")
    return FunctionDef(
        id=id,
        handler=handler,
        triggers=tuple(found),
        retries=retries,
        is_async=inspect.iscoroutinefunction(handler),
        on_failure_of=on_failure_of,
    )
