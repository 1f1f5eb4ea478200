"""Waking this process's workers when an event was handed to other apps' functions.

An event one app's sender ingests may be handed to another app's functions (an inbox row, taken
by that app's workers: ``Engine.take_inbox``). Workers of another process learn of it from a
``NOTIFY`` (PostgreSQL) or their poll; the engines of this process (two ``App``s in one
process) are woken at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Protocol

from stepline.store.records import IngestResult


class _Wakeable(Protocol):
    def wake_workers(self) -> None: ...


_ENGINES: weakref.WeakSet[_Wakeable] = weakref.WeakSet()


def listening(engine: _Wakeable) -> None:
    """Wake ``engine``'s workers whenever an event of this process is handed over."""
    _ENGINES.add(engine)


def handed_over(results: Sequence[IngestResult]) -> None:
    """Wake this process's workers if any of ``results`` handed its event to other apps'
    functions (one attribute check per result otherwise)."""
    if any(r.delivered for r in results):
        for engine in list(_ENGINES):
            engine.wake_workers()
