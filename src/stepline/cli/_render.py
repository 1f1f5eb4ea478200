"""How runs, steps and history entries look on a terminal and in JSON."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from stepline._cursor import encode_cursor
from stepline.durations import format_duration
from stepline.sdk.function import FunctionDef
from stepline.sdk.run import HistoryEntry, Run
from stepline.sdk.search import RunSearch
from stepline.server.views import function_json, run_json
from stepline.store.records import SkipRecord

if TYPE_CHECKING:
    from rich.text import Text

DEFAULT_RETRIES = 4  # App.function's default: not worth showing

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


def trigger_text(trigger: dict[str, Any]) -> str:
    """``order/created if event.data.amount > 0``, or ``cron 0 12 * * 5`` for a schedule (a
    trigger as ``views.function_json`` gives it)."""
    if "cron" in trigger:
        return f"cron {trigger['cron']}"
    return str(trigger["event"]) + (f" if {trigger['if']}" if trigger.get("if") else "")


def function_triggers(fn: FunctionDef | dict[str, Any]) -> list[str]:
    """What starts a function: its event triggers and schedules; an ``on_failure`` handler says
    whose failures it handles (a function, or its JSON as the REST API gives it)."""
    data = _function_json(fn)
    if data.get("on_failure_of") is not None:
        return [f"failure of {data['on_failure_of']}"]
    return [trigger_text(t) for t in data["triggers"]]


def _function_json(fn: FunctionDef | dict[str, Any]) -> dict[str, Any]:
    """One shape for a function defined here and one a server describes."""
    return fn if isinstance(fn, dict) else function_json(fn, "", False)


def span(seconds: float | None) -> str:
    """A configured period: ``1h``, ``1m30s``, ``500ms``."""
    return "" if seconds is None else format_duration(seconds)


def _per(key: str | None) -> str:
    return f" per {key}" if key else ""


def function_options(fn: FunctionDef | dict[str, Any]) -> list[str]:
    """A function's flow control and cancellation options, one short phrase each
    (``rate limit 1/1h per event.data.userId``); retries when not the default 4."""
    data = _function_json(fn)
    o = data["flow_control"]
    parts: list[str] = []
    for c in o["concurrency"]:
        scope = " (app)" if c["scope"] == "app" else ""
        parts.append(f"concurrency {c['limit']}{_per(c['key'])}{scope}")
    if (t := o["throttle"]) is not None:
        burst = f" burst {t['burst']}" if t["burst"] else ""
        parts.append(f"throttle {t['limit']}/{span(t['period'])}{burst}{_per(t['key'])}")
    if (r := o["rate_limit"]) is not None:
        parts.append(f"rate limit {r['limit']}/{span(r['period'])}{_per(r['key'])}")
    if (d := o["debounce"]) is not None:
        most = f" (max {span(d['timeout'])})" if d["timeout"] is not None else ""
        parts.append(f"debounce {span(d['period'])}{most}{_per(d['key'])}")
    if (b := o["batch_events"]) is not None:
        only = f" if {b['if']}" if b["if"] else ""
        parts.append(f"batch {b['max_size']} or {span(b['timeout'])}{_per(b['key'])}{only}")
    if o["priority"] is not None:
        parts.append(f"priority {o['priority']['run']}")
    if (g := o["singleton"]) is not None:
        parts.append(f"singleton {g['mode']}{_per(g['key'])}")
    if o["idempotency"] is not None:
        parts.append(f"idempotency {o['idempotency']}")
    for cancel in data["cancel_on"]:
        condition = (
            f" match {cancel['match']}"
            if cancel["match"] is not None
            else f" if {cancel['if']}"
            if cancel["if"] is not None
            else ""
        )
        within = f" within {span(cancel['timeout'])}" if cancel["timeout"] else ""
        parts.append(f"cancel on {cancel['event']}{condition}{within}")
    if (limits := data["timeouts"]) is not None:
        given = [
            f"{name} {span(limits[name])}"
            for name in ("start", "finish")
            if limits[name] is not None
        ]
        parts.append("timeouts " + ", ".join(given))
    if data["retries"] != DEFAULT_RETRIES:
        parts.append(f"retries {data['retries']}")
    return parts


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
    if kind == "RUN_REPLAYED":
        return f"replay of {data.get('of', '?')}"
    if kind == "WARNING":
        return str(data.get("message", ""))
    return compact_json(data) if data else ""


def kind_style(kind: str) -> str:
    """The colour of a history entry's kind."""
    if kind.endswith("FAILED"):
        return "red"
    if kind == "RUN_CANCELLED":
        return STATUS_STYLES["CANCELLED"]
    if kind == "RUN_REPLAYED":
        return "blue"
    if kind.endswith("COMPLETED") or kind == "WAIT_MATCHED":
        return "green"
    if kind == "WARNING":
        return "yellow"
    if kind in ("SLEEP", "WAIT", "INVOKE", "WAIT_TIMED_OUT"):
        return "cyan"
    return "dim"


def details_style(kind: str) -> str:
    """The colour of a history entry's details: failures red, a cancellation's reason yellow."""
    if "FAILED" in kind:
        return "red"
    return STATUS_STYLES["CANCELLED"] if kind == "RUN_CANCELLED" else ""


def outcome_style(run: Run) -> str:
    """The colour of a run's error: yellow for a cancellation (not a failure), else red."""
    if run.error is None:
        return ""
    return STATUS_STYLES["CANCELLED"] if run.status == "CANCELLED" else "red"


def replayed_from(history: list[HistoryEntry]) -> str | None:
    """The id of the run a run replays, if it is a replay."""
    for entry in history:
        if entry.kind == "RUN_REPLAYED" and entry.data:
            return str(entry.data.get("of"))
    return None


def status_text(status: str) -> Text:
    """A run or step status, coloured."""
    from rich.text import Text  # rich is loaded for a human's output only, never for --json

    return Text(status, style=STATUS_STYLES.get(status, ""))


def attempt_label(entry: HistoryEntry) -> str:
    """``attempt 2`` (1-based) for retries and failures; nothing for a first success."""
    if entry.attempt is None or (entry.attempt == 0 and not entry.kind.endswith("FAILED")):
        return ""
    return f"attempt {entry.attempt + 1}"


# -- JSON ------------------------------------------------------------------------------------------
def search_dict(found: RunSearch) -> dict[str, Any]:
    """A search's page as JSON."""
    return {
        "runs": [run_json(r) for r in found.runs],
        "next_cursor": encode_cursor(found.next_cursor) if found.next_cursor else None,
        "scanned": found.scanned,
        "complete": found.complete,
        "failed": found.failed,
        "error": found.error,
    }


def search_summary(found: RunSearch) -> str:
    """How far a search's page looked, and whether evaluations failed."""
    how = "every run the filters select" if found.complete else "stopped there"
    line = f"Scanned {found.scanned:,} runs ({how})."
    if found.failed:
        line += f" The query failed on {found.failed:,} of them: {found.error}"
    return line


def function_dict(
    fn: FunctionDef | dict[str, Any], paused: bool, held: int | None
) -> dict[str, Any]:
    """A function as JSON: its triggers, options (as phrases), and whether it is paused."""
    data = _function_json(fn)
    return {
        "id": data["id"],
        "triggers": [trigger_text(t) for t in data["triggers"]],
        "on_failure_of": data["on_failure_of"],
        "retries": data["retries"],
        "options": function_options(data),
        "paused": paused,
        "held_runs": held,
        "sdk_app": data["sdk_app"],
    }


def skip_time(record: SkipRecord) -> datetime:
    """When flow control skipped the run."""
    return datetime.fromtimestamp(record.at).astimezone()


def skip_dict(record: SkipRecord, event_name: str | None) -> dict[str, Any]:
    """A skipped run as JSON."""
    return {
        "event_id": record.event_id,
        "event_name": event_name,
        "function_id": record.function_id,
        "reason": record.reason,
        "at": skip_time(record).isoformat(),
    }
