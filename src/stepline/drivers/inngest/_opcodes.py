"""The ops of a 206 reply (what the function did or wants next), read into typed records.

Both SDKs' forms are accepted: a sleep's time as an ISO instant in ``name`` (Python), a duration
string in ``name`` (JS) or ``opts.duration`` (Go); a wait's event in ``name`` or
``opts.event``; ``step.sendEvent`` (JS) as a ``StepRun`` with ``opts.type ==
"step.sendEvent"``. An op Stepline does not drive (``Gateway``, ``WaitForSignal``, ``DeferAdd``
...) is read as ``UnsupportedOp`` so the driver can fail the run naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stepline._text import bounded, clipped, escaped_surrogates, shown_text, text_problem
from stepline.drivers.inngest._errors import ProtocolError
from stepline.durations import parse_duration, parse_instant
from stepline.engine._ops import MAX_ERROR_MESSAGE_CHARS, MAX_ERROR_STACK_CHARS
from stepline.errors import DurationError
from stepline.sdk.event import event_name_problem


@dataclass(frozen=True)
class ErrorInfo:
    """An error reported by an SDK (a step's or the function's): ``name``, ``message``,
    ``stack`` and, from the Python SDK, ``code``; ``raw`` is the object as sent."""

    name: str
    message: str
    stack: str | None = None
    code: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, value: object) -> ErrorInfo:
        # the texts kept as the step's or the run's error, as in-process errors
        # (``error_dict``): bounded (an SDK's error may carry a whole response body: it was
        # kept whole in the step's error, its memo, the run's error and the history), and a
        # lone surrogate (JSON's "\ud800", which Python's json decodes as such) written as its
        # escape (else the stored error could not be serialized)
        if not isinstance(value, dict):
            text = "" if value is None else _kept(str(value))
            return cls(name="Error", message=text, raw={"message": text})
        stack = value.get("stack")
        code = value.get("code")
        return cls(
            name=_kept(str(value.get("name") or "Error")),
            message=_kept(str(value.get("message") or "")),
            stack=escaped_surrogates(stack[-MAX_ERROR_STACK_CHARS:])
            if isinstance(stack, str)
            else None,
            code=_kept(code) if isinstance(code, str) else None,
            raw=value,
        )

    def memo(self) -> dict[str, Any]:
        """The memo stored for a step that failed for good (``{"error": {...}}``, no code)."""
        error: dict[str, Any] = {"name": self.name, "message": self.message}
        if self.stack is not None:
            error["stack"] = self.stack
        return {"error": error}


def _kept(text: str) -> str:
    """An SDK error's text as kept: bounded, lone surrogates escaped (see ``ErrorInfo.read``)."""
    return escaped_surrogates(bounded(text, MAX_ERROR_MESSAGE_CHARS))


@dataclass(frozen=True)
class StepRunOp:
    """A step ran in this request and returned ``data`` (``sent_event``: a JS
    ``step.sendEvent``, whose data holds the sent ids)."""

    id: str
    display_name: str
    data: Any
    sent_event: bool = False


@dataclass(frozen=True)
class StepPlannedOp:
    """A step found but not run (parallel group, or immediate execution disabled): send a
    targeted request for it. ``race``: the group's ``parallelMode`` is ``"race"``."""

    id: str
    display_name: str
    race: bool = False


@dataclass(frozen=True)
class StepErrorOp:
    """A step raised and the SDK thinks attempts remain: retry the request."""

    id: str
    display_name: str
    error: ErrorInfo


@dataclass(frozen=True)
class StepFailedOp:
    """A step raised on its last attempt: store ``error.memo()`` and continue the run."""

    id: str
    display_name: str
    error: ErrorInfo


@dataclass(frozen=True)
class SleepOp:
    """Sleep until ``until`` (aware UTC), then store ``None`` and continue. ``race``: a step
    of a race-mode group (``opts.parallelMode``), as on ``StepPlannedOp``."""

    id: str
    display_name: str
    until: datetime
    race: bool = False


@dataclass(frozen=True)
class WaitForEventOp:
    """Wait for ``event`` matching ``if_`` (``event`` = the run's trigger, ``async`` = the
    incoming event) for at most ``timeout``; store the event, or ``None`` on timeout.
    ``race``: a step of a race-mode group."""

    id: str
    display_name: str
    event: str
    timeout: timedelta
    if_: str | None = None
    race: bool = False


@dataclass(frozen=True)
class InvokeFunctionOp:
    """Invoke ``function_id`` (a slug) with ``data`` (and event version ``v``); store
    ``{"data": output}`` or ``{"error": ...}``; ``timeout`` ``None``: Inngest's one year.
    ``race``: a step of a race-mode group."""

    id: str
    display_name: str
    function_id: str
    data: Mapping[str, Any]
    v: str | None = None
    timeout: timedelta | None = None
    race: bool = False


@dataclass(frozen=True)
class AIGatewayOp:
    """``step.ai.infer``: the server POSTs ``body`` to ``url`` (auth by ``format``) and stores
    ``{"data": <response JSON>}``."""

    id: str
    display_name: str
    url: str
    format: str
    body: Any
    auth_key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunCompleteOp:
    """The run finished with ``data`` (JS 4.x, after async checkpointing)."""

    id: str
    data: Any


@dataclass(frozen=True)
class UnsupportedOp:
    """An op Stepline does not drive (``op`` names it; ``raw`` as sent)."""

    id: str
    op: str
    raw: Mapping[str, Any] = field(repr=False)


Op = (
    StepRunOp
    | StepPlannedOp
    | StepErrorOp
    | StepFailedOp
    | SleepOp
    | WaitForEventOp
    | InvokeFunctionOp
    | AIGatewayOp
    | RunCompleteOp
    | UnsupportedOp
)


def _duration(value: object, what: str) -> timedelta:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ProtocolError(f"{what}: expected a duration, got {value!r}")
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ProtocolError(f"{what}: {exc}") from exc


def _sleep_until(op: Mapping[str, Any], opts: Mapping[str, Any], now: datetime) -> datetime:
    if opts.get("duration") is not None:
        return now + _duration(opts["duration"], "Sleep opts.duration")
    name = op.get("name")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"Sleep without a time or duration: {dict(op)!r}")
    try:
        return parse_instant(name)
    except DurationError:
        return now + _duration(name, "Sleep name")


def read_op(op: object, now: datetime) -> Op:
    """Read one op object of a 206 reply; ``now`` (aware UTC) turns a relative sleep into a
    time. Raises ``ProtocolError`` for a malformed op."""
    if not isinstance(op, dict):
        raise ProtocolError(f"op: expected an object, got {op!r}")
    kind = op.get("op")
    if not isinstance(kind, str):
        raise ProtocolError(f"op without an 'op' name: {op!r}")
    step_id = op.get("id")
    if kind == "RunComplete":
        return RunCompleteOp(str(step_id or ""), op.get("data"))
    if not isinstance(step_id, str) or not step_id:
        raise ProtocolError(f"{kind} op without an id")
    problem = text_problem(step_id)
    if problem is not None:  # stored as text (the same on every store)
        raise ProtocolError(f"{kind} op id {step_id!r} {problem[0]}")
    opts = op.get("opts") if isinstance(op.get("opts"), dict) else {}
    assert isinstance(opts, dict)
    userland = op.get("userland") if isinstance(op.get("userland"), dict) else {}
    assert isinstance(userland, dict)
    # ``name`` is the user's step id, except for a sleep (a time) and a wait (an event name).
    named = op.get("name") if kind not in ("Sleep", "WaitForEvent") else None
    display = op.get("displayName") or userland.get("id") or named or step_id
    display_name = shown_text(str(display))  # a name shown, stored as text
    race = opts.get("parallelMode") == "race"
    if kind in ("StepRun", "Step"):
        sent = opts.get("type") == "step.sendEvent"
        return StepRunOp(step_id, display_name, op.get("data"), sent)
    if kind == "StepPlanned":
        return StepPlannedOp(step_id, display_name, race)
    if kind in ("StepError", "StepFailed"):
        raw_error = op.get("error")
        if raw_error is None:  # the JS SDK reports a step's final error in ``data``
            raw_error = op.get("data")
        error = ErrorInfo.read(raw_error)
        if kind == "StepError":
            return StepErrorOp(step_id, display_name, error)
        return StepFailedOp(step_id, display_name, error)
    if kind == "Sleep":
        return SleepOp(step_id, display_name, _sleep_until(op, opts, now), race)
    if kind == "WaitForEvent":
        event = opts.get("event") or op.get("name")
        if not isinstance(event, str) or not event:
            raise ProtocolError("WaitForEvent op without an event name")
        unmatchable = event_name_problem(event)
        if unmatchable is not None:  # no event can have it (check_event_name)
            raise ProtocolError(f"WaitForEvent event name {clipped(event)!r} {unmatchable}")
        condition = opts.get("if")
        return WaitForEventOp(
            step_id,
            display_name,
            event,
            _duration(opts.get("timeout"), "WaitForEvent opts.timeout"),
            condition if isinstance(condition, str) and condition else None,
            race,
        )
    if kind == "InvokeFunction":
        function_id = opts.get("function_id")
        if not isinstance(function_id, str) or not function_id:
            raise ProtocolError("InvokeFunction op without opts.function_id")
        payload = opts.get("payload") if isinstance(opts.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        data = payload.get("data")
        v = payload.get("v")
        timeout = opts.get("timeout")
        return InvokeFunctionOp(
            step_id,
            display_name,
            function_id,
            data if isinstance(data, dict) else {},
            v if isinstance(v, str) else None,
            None if timeout is None else _duration(timeout, "InvokeFunction opts.timeout"),
            race,
        )
    if kind == "AIGateway":
        url = opts.get("url")
        if not isinstance(url, str) or not url:
            raise ProtocolError("AIGateway op without opts.url")
        headers = opts.get("headers") if isinstance(opts.get("headers"), dict) else {}
        assert isinstance(headers, dict)
        auth_key = opts.get("auth_key")
        return AIGatewayOp(
            step_id,
            display_name,
            url,
            str(opts.get("format") or ""),
            opts.get("body"),
            auth_key if isinstance(auth_key, str) else None,
            {str(k): str(v) for k, v in headers.items()},
        )
    return UnsupportedOp(step_id, kind, op)
