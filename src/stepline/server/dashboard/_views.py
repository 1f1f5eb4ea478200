"""What the pages show, built from the public run views: the timeline of a run's steps, and the
small formatting helpers the templates use. Pure functions, no I/O."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from stepline.sdk.function import FunctionDef
from stepline.sdk.run import HistoryEntry, Run

_PRETTY = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS


def pretty(value: Any) -> str:
    """JSON, indented (what outputs, payloads and errors look like on the pages)."""
    try:
        return orjson.dumps(value, option=_PRETTY, default=str).decode()
    except TypeError:
        return repr(value)


def compact(value: Any, limit: int = 120) -> str:
    """One-line JSON, cut at ``limit`` characters."""
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clock(at: datetime | float | None) -> str:
    """``HH:MM:SS.mmm`` UTC (empty for None)."""
    if at is None:
        return ""
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def stamp(at: datetime | float | None) -> str:
    """An ISO-8601 UTC time (the browser shows it in local time and relative form)."""
    if at is None:
        return ""
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def duration(seconds: float | None) -> str:
    """A short human duration: ``840 ms``, ``3.2 s``, ``4m 05s``, ``2h 10m``, ``3d 4h``."""
    if seconds is None:
        return ""
    s = max(0.0, seconds)
    if s < 0.001:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d {int(s % 86400 // 3600)}h"


def run_duration(run: Run, now: datetime) -> float | None:
    """Seconds from start (or creation) to end (or now)."""
    begin = run.started_at or run.created_at
    return ((run.ended_at or now) - begin).total_seconds()


# -- functions ----------------------------------------------------------------------------------
def function_triggers(fn: FunctionDef) -> list[str]:
    """A function's triggers as text: ``order/created if event.data.amount > 100``, crons."""
    found = []
    for trigger in fn.triggers:
        found.append(f"{trigger.name} if {trigger.if_}" if trigger.if_ else trigger.name)
    found += [f"cron {c.cron}" for c in fn.crons]
    return found


def function_options(fn: FunctionDef) -> list[tuple[str, str]]:
    """A function's flow control and cancellation, as (name, value) pairs."""
    o = fn.options
    found: list[tuple[str, str]] = [("retries", str(fn.retries))]
    for c in o.concurrency:
        found.append(("concurrency", _fields(c)))
    named: list[tuple[str, Any]] = [
        ("throttle", o.throttle),
        ("rate limit", o.rate_limit),
        ("debounce", o.debounce),
        ("batch", o.batch_events),
        ("priority", o.priority),
        ("singleton", o.singleton),
        ("timeouts", o.timeouts),
        ("checkpointing", o.checkpointing),
    ]
    found += [(name, _fields(value)) for name, value in named if value is not None]
    if o.idempotency is not None:
        found.append(("idempotency", o.idempotency.text))
    found += [("cancel on", _fields(c)) for c in o.cancel_on]
    return found


def _fields(option: Any) -> str:
    if not dataclasses.is_dataclass(option):
        return str(option)
    parts = []
    for f in dataclasses.fields(option):
        value = getattr(option, f.name)
        if not f.init or not f.repr or value is None:
            continue
        if isinstance(value, timedelta):
            value = duration(value.total_seconds())
        parts.append(f"{f.name.rstrip('_')}={value}")
    return ", ".join(parts)


def trigger_example(fn: FunctionDef) -> tuple[str, str]:
    """The event name and a JSON data template to send a test event to ``fn``: the data
    fields its trigger's filter and its keys read (``event.data.amount`` gives ``"amount"``)."""
    if not fn.triggers:
        return "", "{}"
    trigger = fn.triggers[0]
    o = fn.options
    texts: list[Any] = [trigger.if_, *(c.key for c in o.concurrency)]
    texts.append(o.idempotency.text if o.idempotency is not None else None)
    for option in (o.throttle, o.rate_limit, o.debounce, o.singleton, o.batch_events):
        texts.append(getattr(option, "key", None))
    data: dict[str, Any] = {}
    for text in texts:
        if not isinstance(text, str):
            continue
        for name, op, literal in _COMPARISON.findall(text):
            data.setdefault(name, _satisfying(op, literal))
        for name in re.findall(r"event\.data\.([A-Za-z_][A-Za-z0-9_]*)", text):
            data.setdefault(name, "")
    return trigger.name, pretty(data)


_COMPARISON = re.compile(
    r'event\.data\.([A-Za-z_][A-Za-z0-9_]*)\s*(==|>=|<=|>|<)\s*(-?[0-9]+(?:\.[0-9]+)?|"[^"]*")'
)


def _satisfying(op: str, literal: str) -> Any:
    """A value passing ``field <op> literal`` (so the prefilled event triggers the function)."""
    if literal.startswith('"'):
        return literal[1:-1]
    number = float(literal) if "." in literal else int(literal)
    return number + 1 if op == ">" else number - 1 if op == "<" else number


# -- the timeline --------------------------------------------------------------------------------
@dataclass
class Segment:
    """A span on a step's row: an attempt, a sleep, a wait or an invoke (``left``/``width`` in
    percent of the run's span)."""

    kind: str  # ok | failed | running | sleep | wait | invoke
    start: float
    end: float
    open: bool  # still going on (its end is now)
    label: str
    left: float = 0.0
    width: float = 0.0


@dataclass
class Attempt:
    """One attempt of a step: number (1-based), when, how long, and its error if it failed."""

    number: int
    start: float
    duration: float | None
    error: dict[str, Any] | None
    retry_at: float | None = None


@dataclass
class TimelineStep:
    """A row of the timeline: a step with its segments, attempts and result."""

    id: str
    kind: str
    status: str
    segments: list[Segment] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    output: str | None = None
    error: dict[str, Any] | None = None
    detail: str = ""

    @property
    def took(self) -> float | None:
        """The time its attempts took (None: none ended yet)."""
        ended = [a.duration for a in self.attempts if a.duration is not None]
        return sum(ended) if ended else None


@dataclass
class Timeline:
    """The run's span (``start``..``end``, epoch seconds) and its step rows."""

    start: float
    end: float
    steps: list[TimelineStep]
    ticks: list[tuple[float, str]]


def build_timeline(run: Run, history: list[HistoryEntry], now: datetime) -> Timeline:
    """The steps of a run on one time axis, from its history (attempts with their durations,
    sleeps and waits until they woke) and its steps (outputs, errors, what is running)."""
    start = run.created_at.timestamp()
    end = (run.ended_at or now).timestamp()
    rows: dict[str, TimelineStep] = {}
    for step in run.steps:
        output = pretty(step.output) if step.status == "COMPLETED" else None
        status = "QUEUED" if step.queued else step.status
        rows[step.id] = TimelineStep(step.id, step.kind, status, output=output)
        rows[step.id].error = step.error
        if step.status == "RUNNING" and step.started_at is not None:
            at = step.started_at.timestamp()
            label = f"attempt {step.attempts + 1} running"
            rows[step.id].segments.append(Segment("running", at, end, True, label))
    open_spans: dict[str, Segment] = {}
    for entry in history:
        at = entry.at.timestamp()
        data = entry.data or {}
        step_id = entry.step_id
        if step_id is None:
            continue
        row = rows.get(step_id)
        if row is None:
            row = rows[step_id] = TimelineStep(step_id, _kind_of(entry.kind), "?")
        if entry.kind in ("STEP_COMPLETED", "STEP_FAILED"):
            took = entry.duration or 0.0
            number = (entry.attempt or 0) + 1
            failed = entry.kind == "STEP_FAILED"
            error = data.get("error") if failed else None
            retry_at = data.get("retry_at")
            row.attempts.append(Attempt(number, at - took, entry.duration, error, retry_at))
            label = f"attempt {number} · {duration(took)}" + (" · failed" if failed else "")
            row.segments.append(Segment("failed" if failed else "ok", at - took, at, False, label))
        elif entry.kind in ("SLEEP", "WAIT", "INVOKE"):
            kind = entry.kind.lower()
            until = data.get("until")
            if entry.kind == "SLEEP":
                row.detail = f"sleep until {clock(until)}"
            elif entry.kind == "WAIT":
                row.detail = f"wait for {data.get('event', '?')}"
                if data.get("if"):
                    row.detail += f" if {data['if']}"
                if until is not None:
                    row.detail += f" · timeout {clock(until)}"
            else:
                row.detail = (
                    f"invoke {data.get('function_id', '?')} · run {data.get('child_run_id', '')}"
                )
            segment = Segment(kind, at, end, True, row.detail)
            row.segments.append(segment)
            open_spans[step_id] = segment
        elif entry.kind in ("WAIT_MATCHED", "WAIT_TIMED_OUT"):
            span_open = open_spans.pop(step_id, None)
            if span_open is not None:
                span_open.end, span_open.open = at, False
                span_open.label += " · matched" if entry.kind == "WAIT_MATCHED" else " · timed out"
    for row in rows.values():  # a sleep or invoke that settled ends when its step ended
        for segment in row.segments:
            if segment.open and segment.kind in ("sleep", "invoke") and row.status == "COMPLETED":
                settled = next((s for s in run.steps if s.id == row.id), None)
                if settled is not None and settled.ended_at is not None:
                    segment.end, segment.open = settled.ended_at.timestamp(), False
                elif segment.kind == "sleep":
                    segment.open = False
                    segment.end = min(segment.end, end)
    span = max(end - start, 1e-3)
    for row in rows.values():
        for segment in row.segments:
            segment.end = max(segment.end, segment.start)
            segment.left = max(0.0, min(100.0, (segment.start - start) / span * 100))
            width = (segment.end - segment.start) / span * 100
            segment.width = max(0.4, min(100.0 - segment.left, width))
    ticks = [(i * 25.0, "+" + duration(span * i / 4)) for i in range(5)]
    return Timeline(start, end, list(rows.values()), ticks)


def _kind_of(history_kind: str) -> str:
    return {"SLEEP": "sleep", "WAIT": "wait", "INVOKE": "invoke", "SEND_EVENT": "send"}.get(
        history_kind, "run"
    )
