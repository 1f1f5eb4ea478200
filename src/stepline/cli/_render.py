"""How runs, steps and history entries look on a terminal and in JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from rich.text import Text

from stepline.sdk.run import HistoryEntry, Run, StepInfo
from stepline.sdk.triggers import TriggerEvent

STATUS_STYLES = {
    "COMPLETED": "green",
    "FAILED": "bold red",
    "CANCELLED": "yellow",
    "RUNNING": "blue",
    "QUEUED": "dim",
    "SLEEPING": "cyan",
    "WAITING": "cyan",
    "RETRYING": "magenta",
}


def trigger_text(trigger: object) -> str:
    """``order/created if event.data.amount > 0``, or ``cron 0 12 * * 5`` for a schedule."""
    if isinstance(trigger, TriggerEvent):
        return trigger.name + (f" if {trigger.if_}" if trigger.if_ else "")
    cron = getattr(trigger, "cron", None)
    return f"cron {cron}" if cron is not None else repr(trigger)


def count(n: int, noun: str) -> str:
    """``1 function``, ``2 functions``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def short_id(run_id: str) -> str:
    """The random tail of a run id (ids start with their time, so the tail tells runs apart);
    ``stepline runs show`` accepts it."""
    return run_id[-8:]


def clock_time(at: datetime) -> str:
    """``HH:MM:SS.mmm`` in local time."""
    return at.astimezone().strftime("%H:%M:%S.%f")[:-3]


def local_time(at: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in local time ("-" for None)."""
    return "-" if at is None else at.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short_time(at: datetime) -> str:
    """``MM-DD HH:MM:SS`` in local time."""
    return at.astimezone().strftime("%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """A compact duration: ``850µs``, ``12.3ms``, ``1.204s``, ``2m03s``, ``1h02m``."""
    if seconds is None:
        return ""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 0.9995:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 60:
        return f"{seconds:.3f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def offset(at: datetime, origin: datetime) -> str:
    """``+1.204s``: the time of ``at`` relative to ``origin``."""
    delta = (at - origin).total_seconds()
    return f"+{delta:.3f}s" if delta < 60 else f"+{duration(delta)}"


def compact_json(value: Any, limit: int | None = None) -> str:
    """One-line JSON, cut to ``limit`` characters."""
    text = orjson.dumps(value, default=str).decode()
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def pretty_json(value: Any) -> str:
    """Indented JSON."""
    return orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode()


def error_text(error: dict[str, Any] | None) -> str:
    """``Name: message`` of a stored error."""
    if not error:
        return ""
    return f"{error.get('name', 'Error')}: {error.get('message', '')}"


def _until(at: datetime, epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return ""
    target = datetime.fromtimestamp(epoch, at.tzinfo)
    return f"{clock_time(target)} (in {duration(max(0.0, (target - at).total_seconds()))})"


def entry_details(entry: HistoryEntry) -> str:
    """What a history entry says beyond its kind and step: errors, retry and wake-up times,
    events sent, children started."""
    data = entry.data or {}
    kind = entry.kind
    if kind in ("STEP_FAILED", "FUNCTION_FAILED"):
        text = error_text(data.get("error"))
        if "retry_at" in data:
            return f"{text} · retry at {_until(entry.at, data['retry_at'])}"
        return f"{text} · no more retries" if data.get("final") else text
    if kind == "RUN_FAILED":
        return error_text(data)
    if kind == "SLEEP":
        return f"until {_until(entry.at, data.get('until'))}"
    if kind == "WAIT":
        text = f"for {data.get('event')}"
        if data.get("if"):
            text += f" if {data['if']}"
        return (
            f"{text} · times out at {_until(entry.at, data['until'])}" if "until" in data else text
        )
    if kind == "WAIT_MATCHED":
        return f"event {data.get('event_id', '')}"
    if kind == "INVOKE":
        return f"{data.get('function_id')} · run {data.get('child_run_id')}"
    if kind == "SEND_EVENT":
        return "events " + ", ".join(data.get("event_ids", []))
    if kind == "RUN_CANCELLED":
        return str(data.get("reason", ""))
    if kind == "WARNING":
        return str(data.get("message", ""))
    return compact_json(data) if data else ""


def kind_style(kind: str) -> str:
    """The colour of a history entry's kind."""
    if kind.endswith("FAILED") or kind == "RUN_CANCELLED":
        return "red"
    if kind.endswith("COMPLETED") or kind == "WAIT_MATCHED":
        return "green"
    if kind == "WARNING":
        return "yellow"
    if kind in ("SLEEP", "WAIT", "INVOKE", "WAIT_TIMED_OUT"):
        return "cyan"
    return "dim"


def status_text(status: str) -> Text:
    """A run or step status, coloured."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def attempt_label(entry: HistoryEntry) -> str:
    """``attempt 2`` (1-based) for retries and failures; nothing for a first success."""
    if entry.attempt is None or (entry.attempt == 0 and not entry.kind.endswith("FAILED")):
        return ""
    return f"attempt {entry.attempt + 1}"


# -- JSON ------------------------------------------------------------------------------------------
def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def step_dict(step: StepInfo) -> dict[str, Any]:
    """A step as JSON."""
    return {
        "id": step.id,
        "kind": step.kind,
        "status": step.status,
        "attempts": step.attempts,
        "output": step.output,
        "error": step.error,
    }


def run_dict(run: Run) -> dict[str, Any]:
    """A run as JSON."""
    return {
        "run_id": run.run_id,
        "function_id": run.function_id,
        "status": run.status,
        "event_ids": run.event_ids,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "attempt": run.attempt,
        "output": run.output,
        "error": run.error,
        "steps": [step_dict(s) for s in run.steps],
    }


def history_dict(entry: HistoryEntry) -> dict[str, Any]:
    """A history entry as JSON."""
    return {
        "at": _iso(entry.at),
        "kind": entry.kind,
        "step_id": entry.step_id,
        "attempt": entry.attempt,
        "duration": entry.duration,
        "data": entry.data,
    }
