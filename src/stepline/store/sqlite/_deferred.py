"""What an ingest verb of the SQLite store writes at its end (see ``_SQLiteTx.ingest``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stepline.store._rows import json_or_none


@dataclass(slots=True)
class Deferred:
    """The writes an ingest verb makes for many events, each kind with one statement when the
    verb ends: the runs it cancelled (``cancels``, ``cancels_queued``; their rows read together
    in ``unfinished``), their queue items and cancel matchers (``runs``), the waits and RUNNING
    step marks of those that were leased (``leased``), their RUN_CANCELLED rows
    (``history``)."""

    # the runs to end with CANCEL_RUN, by its other parameters (ended at, error)
    cancels: dict[tuple[float, str | None], list[str]] = field(default_factory=dict)
    # those cancelled while QUEUED (never leased: CANCEL_QUEUED_RUN)
    cancels_queued: dict[tuple[float, str | None], list[str]] = field(default_factory=dict)
    # the runs read for mark_cancelled (UNFINISHED_RUN_FUNCTION's row; None: ended or missing)
    unfinished: dict[str, tuple[Any, ...] | None] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    leased: list[str] = field(default_factory=list)
    # INSERT_HISTORY's parameters, or INSERT_RUN_HISTORY's four for a run's own row (no NULL
    # to bind: RUN_CANCELLED), see ``_SQLiteTx.append_history``
    history: list[tuple[Any, ...]] = field(default_factory=list)
    # the JSON of the dicts of strings its cancellations repeat (see ``json_of``)
    texts: dict[tuple[tuple[Any, Any], ...], str | None] = field(default_factory=dict)
    # by reason: the JSON of a run's error and RUN_CANCELLED data (see ``cancelled_json``)
    reasons: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def cancelled_json(self, reason: str) -> tuple[str | None, str | None]:
        """``json_of`` the error and the RUN_CANCELLED data ``_ingest_rules.cancel`` gives a run
        it cancels for ``reason``: the same objects for every run (see ``json_of``)."""
        found = self.reasons.get(reason)
        if found is None:
            error = self.json_of({"name": "Cancelled", "message": reason})
            found = self.reasons[reason] = (error, self.json_of({"reason": reason}))
        return found

    def json_of(self, value: dict[str, Any] | None) -> str | None:
        """``json_or_none(value)``, remembered for a dict of strings: every run a verb cancels
        has the same error and RUN_CANCELLED data (encoded once, not once a run)."""
        if value is None:
            return None
        key = tuple(value.items())
        try:
            found = self.texts.get(key)  # only dicts of strings are kept: a hit is one
        except TypeError:  # a value that cannot be hashed (a dict, a list): not one
            return json_or_none(value)
        if found is None:
            for k, v in key:
                if type(k) is not str or type(v) is not str:
                    return json_or_none(value)
            found = self.texts[key] = json_or_none(value)
        return found


class ClaimLost(Exception):
    """A wait resolved inside ``ingest`` was not pending when claimed (its step was not
    PENDING when completed: schema 28)."""
