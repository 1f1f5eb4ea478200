"""The runs list's state in its URL (or a bulk action's form): its filters, the page it shows
(a cursor below the previous page's last run) and how deep a payload search scans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from stepline._text import is_digits
from stepline.sdk.run import Run
from stepline.sdk.search import RunSearch
from stepline.sdk.waiting import WAITING_KINDS, WaitingOn
from stepline.store.records import TERMINAL_STATUSES, UNFINISHED_STATUSES

STATUSES = (*UNFINISHED_STATUSES, *sorted(TERMINAL_STATUSES))
PAGE_SIZE = 50
SEARCH_SCAN = 2_000  # runs a payload search reads by default (``scan=`` in the URL: more)
MAX_SEARCH_SCAN = 100_000


@dataclass(frozen=True)
class RunFilters:
    """The runs list's filters (from the URL, or a bulk action's form)."""

    function_id: str | None
    status: str | None
    waiting: str | None
    event_id: str | None
    query: str
    scan: int = SEARCH_SCAN
    older: tuple[float, str] | None = None  # the last run of the previous page

    @classmethod
    def of(cls, params: Mapping[str, str]) -> RunFilters:
        status = params.get("status") or None
        waiting = params.get("waiting") or None
        scan = params.get("scan") or ""
        return cls(
            params.get("function") or None,
            status if status in STATUSES else None,
            waiting if waiting in WAITING_KINDS else None,
            params.get("event") or None,
            (params.get("q") or "").strip(),
            min(int(scan), MAX_SEARCH_SCAN) if is_digits(scan) and int(scan) > 0 else SEARCH_SCAN,
            page_cursor(params.get("older") or ""),
        )

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return any((self.function_id, self.status, self.waiting, self.event_id, self.query))

    def as_dict(self) -> dict[str, str]:
        """As URL parameters (empty strings for unset filters)."""
        found = {
            "function": self.function_id or "",
            "status": self.status or "",
            "waiting": self.waiting or "",
            "event": self.event_id or "",
            "q": self.query,
        }
        if self.scan != SEARCH_SCAN:
            found["scan"] = str(self.scan)
        if self.older is not None:
            found["older"] = f"{self.older[0]!r}_{self.older[1]}"
        return found

    def page_after(self, last: Run | tuple[float, str]) -> str:
        """The URL of the next page (runs older than ``last``, a run or a position)."""
        if isinstance(last, tuple):
            created, run_id = last
        else:
            created = last.cursor[0] if last.cursor else last.created_at.timestamp()
            run_id = last.run_id
        position = f"{created!r}_{run_id}"
        params = {**self.as_dict(), "older": position}
        return "/runs?" + urlencode({k: v for k, v in params.items() if v})

    def deeper(self) -> str:
        """The URL of the same search scanning ten times more runs."""
        wider = {**self.as_dict(), "scan": str(min(self.scan * 10, MAX_SEARCH_SCAN))}
        return "/runs?" + urlencode({k: v for k, v in wider.items() if v})


@dataclass(frozen=True)
class Selection:
    """The runs the filters selected (a search's, if one ran), with why the first page's wait."""

    runs: list[Run]
    reasons: dict[str, WaitingOn]  # of the first PAGE_SIZE runs
    search: RunSearch | None
    search_error: str | None


def older_page(chosen: RunFilters, found: Selection, page_size: int) -> str | None:
    """The URL of the page after this one: below its last run when it is full; for a search
    with fewer matches than a page, below where the search stopped (its ``next_cursor``: the
    oldest run it scanned), unless it scanned every run the filters select. ``page_size``: runs
    a page shows."""
    if len(found.runs) > page_size or (not chosen.query and len(found.runs) == page_size):
        return chosen.page_after(found.runs[page_size - 1])
    if found.search is not None and found.search.next_cursor is not None:
        return chosen.page_after(found.search.next_cursor)
    return None


def page_cursor(text: str) -> tuple[float, str] | None:
    """A page position ``<created_at>_<run_id>`` (None if absent or malformed)."""
    created, _, run_id = text.partition("_")
    try:
        return (float(created), run_id) if run_id else None
    except ValueError:
        return None
