"""The live view of ``stepline dev``: poll the store, print each new history entry once, and
follow the runs that sent events started (and the runs those started) until they end."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime

from rich.console import Console
from rich.text import Text

from stepline.cli import _render as render
from stepline.sdk.app import App
from stepline.sdk.run import HistoryEntry, Run

_ENDINGS = frozenset({"RUN_COMPLETED", "RUN_FAILED", "RUN_CANCELLED"})


class RunWatcher:
    """Finds history entries that appeared since the last poll.

    Each poll lists the newest ``limit`` runs (plus any ids asked for) and reads the history of
    those that had not ended at the previous poll. A run is read once more after it ends, and its
    status is read before its history, so a finished run's history is complete.
    """

    def __init__(self, app: App, limit: int = 100) -> None:
        self.app = app
        self.limit = limit
        self.runs: dict[str, Run] = {}
        self.histories: dict[str, list[HistoryEntry]] = {}
        self._cursor: dict[str, int] = {}
        self._ended: set[str] = set()

    async def start(self) -> None:
        """Skip what the database already holds: only new entries are reported."""
        for run in await self.app.runs(limit=self.limit, with_steps=False):
            if run.done:
                self._ended.add(run.run_id)
            else:
                self._cursor[run.run_id] = len(await self.app.history(run.run_id))

    def ended(self, run_id: str) -> bool:
        """Whether the run has ended and all its history has been seen."""
        return run_id in self._ended and run_id in self.runs

    async def poll(self, also: Iterable[str] = ()) -> list[tuple[Run, HistoryEntry]]:
        """New history entries of every run in view, oldest first."""
        found = {run.run_id: run for run in await self.app.runs(limit=self.limit, with_steps=False)}
        for run_id in also:
            if run_id not in found and run_id not in self._ended:
                run = await self.app.get_run(run_id)
                if run is not None:
                    found[run_id] = run
        fresh: list[tuple[Run, HistoryEntry]] = []
        for run in found.values():
            if run.run_id in self._ended:
                continue
            history = await self.app.history(run.run_id)
            new = history[self._cursor.get(run.run_id, 0) :]
            if not run.done and any(e.kind in _ENDINGS for e in new):
                run = await self.app.get_run(run.run_id) or run  # it ended since: its output
            fresh.extend((run, entry) for entry in new)
            self._cursor[run.run_id] = len(history)
            self.histories[run.run_id] = history
            self.runs[run.run_id] = run
            if run.done:
                self._ended.add(run.run_id)
        fresh.sort(key=lambda pair: pair[1].at)
        return fresh


class RunTracker:
    """The runs started by some events, and their descendants: runs started by their
    ``send_event`` steps and by their ``invoke`` steps."""

    def __init__(self, app: App, event_ids: Iterable[str]) -> None:
        self.app = app
        self.run_ids: list[str] = []
        self._events: list[str] = list(event_ids)
        self._resolved: set[str] = set()

    async def discover(self, watcher: RunWatcher) -> None:
        """Add the runs that the tracked runs' histories show they started."""
        for run_id in list(self.run_ids):
            for entry in watcher.histories.get(run_id, []):
                data = entry.data or {}
                if entry.kind == "SEND_EVENT":
                    self._events.extend(data.get("event_ids", []))
                elif entry.kind == "INVOKE" and data.get("child_run_id"):
                    self._add(str(data["child_run_id"]))
        for event_id in self._events:
            if event_id not in self._resolved:
                self._resolved.add(event_id)
                for run in reversed(await self.app.runs(event_id=event_id)):
                    self._add(run.run_id)

    def _add(self, run_id: str) -> None:
        if run_id not in self.run_ids:
            self.run_ids.append(run_id)

    def done(self, watcher: RunWatcher) -> bool:
        """Whether every tracked run has ended (and been seen ending)."""
        return all(watcher.ended(run_id) for run_id in self.run_ids)


class LiveLog:
    """Prints history entries and log records as aligned, coloured lines, in time order.

    Log records are held until the next ``show`` so that they appear among the history entries
    of the same moment rather than ahead of them.
    """

    def __init__(self, console: Console, function_ids: Iterable[str]) -> None:
        self.console = console
        self.width = max((len(f) for f in function_ids), default=12)
        self._records: deque[logging.LogRecord] = deque()

    def hold(self, record: logging.LogRecord) -> None:
        """Keep a log record for the next ``show`` (thread-safe)."""
        self._records.append(record)

    def show(self, entries: list[tuple[Run, HistoryEntry]]) -> None:
        """Print new history entries and the log records held, oldest first."""
        lines: list[tuple[float, Text]] = [(e.at.timestamp(), self.entry(r, e)) for r, e in entries]
        while self._records:
            record = self._records.popleft()
            lines.append((record.created, self.record(record)))
        lines.sort(key=lambda line: line[0])
        for _, text in lines:
            self.console.print(text, soft_wrap=True)

    def _prefix(self, at: datetime, function_id: str, run_id: str) -> Text:
        text = Text(render.clock_time(at), style="dim")
        text.append(f"  {function_id:<{self.width}}", style="bold")
        text.append(f"  {render.short_id(run_id) if run_id else '':<8}", style="dim")
        return text

    def entry(self, run: Run, entry: HistoryEntry) -> Text:
        """One line for a history entry."""
        text = self._prefix(entry.at, run.function_id, run.run_id)
        text.append(f"  {entry.kind:<15}", style=render.kind_style(entry.kind))
        if entry.step_id:
            text.append(f"  {entry.step_id}", style="bold")
        attempt = render.attempt_label(entry)
        if attempt:
            text.append(f"  {attempt}", style="magenta")
        if entry.duration is not None:
            text.append(f"  {render.duration(entry.duration)}", style="dim")
        details = render.entry_details(entry)
        if entry.kind == "RUN_COMPLETED":
            details = f"→ {render.compact_json(run.output, 100)}"
        elif entry.kind == "RUN_REPLAYED" and entry.data and entry.data.get("of"):
            details = f"replay of {render.short_id(str(entry.data['of']))}"  # as the lines show it
        if details:
            text.append(f"  {details}", style=render.details_style(entry.kind))
        text.rstrip()
        return text

    def record(self, record: logging.LogRecord) -> Text:
        """One line for a log record (``ctx.logger`` adds the run and function ids)."""
        at = datetime.fromtimestamp(record.created, UTC)
        function_id = str(getattr(record, "function_id", record.name))
        text = self._prefix(at, function_id, str(getattr(record, "run_id", "")))
        style = (
            "red" if record.levelno >= logging.ERROR else "yellow" if record.levelno >= 30 else ""
        )
        text.append(f"  {'LOG ' + record.levelname:<15}", style=style or "blue")
        text.append(f"  {record.getMessage()}", style=style)
        if record.exc_info and record.exc_info[1] is not None:
            text.append(
                f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})", style="red"
            )
        return text


class LiveLogHandler(logging.Handler):
    """Routes stdlib log records (``ctx.logger`` included) to the live view."""

    def __init__(self, live: LiveLog, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.live = live

    def emit(self, record: logging.LogRecord) -> None:
        self.live.hold(record)
