"""What a pass works with: the control-flow signals, step keys, operations and outcomes."""

from __future__ import annotations

import asyncio
import hashlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stepline.sdk.event import Event


class Suspended(BaseException):
    """Raised into a blocked step call when the run suspends; never catch it."""


class _Abort(BaseException):
    """Raised into the function when the run must fail at once (a limit was breached)."""


def step_hash(key: str) -> str:
    """The memo key of a step occurrence (``"fetch"``, ``"fetch:1"``…)."""
    return hashlib.sha1(key.encode()).hexdigest()


def error_dict(exc: BaseException) -> dict[str, Any]:
    """How an error is stored: name, message, stack."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"name": type(exc).__name__, "message": str(exc), "stack": stack[-8000:]}


@dataclass(eq=False)
class _Op:
    kind: str
    step_id: str
    key: str
    hash: str
    future: asyncio.Future[Any]
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    due_at: float | None = None
    event_name: str | None = None
    expression: str | None = None
    function_id: str | None = None
    data: dict[str, Any] | None = None
    user: dict[str, Any] | None = None
    events: list[Event] | None = None


@dataclass
class _Outcome:
    output_json: bytes | None = None
    error: BaseException | None = None
    retry_at: float | None = None
    final: bool = False
    started_at: float = 0.0
    duration: float = 0.0
