"""The garbage collector of a process the worker runner owns (``App.run_worker``, what
``stepline worker`` calls), set for the worker's life and put back after it.

The engine leaves the collector as the user set it (docs/design.md, "Garbage collection"); a
runner owns its process, and sets it as ``stepline server`` does (``server/serve.py``) and more:

- The objects made until the worker starts (the modules, the app, its store: ~45,000 tracked
  objects) are moved out of the collector's generations (``gc.freeze``): a full collection
  walks only what the worker made since. Each walked them all, 23-45 ms with the event loop
  blocked, one or two per 1,000 runs of the PostgreSQL throughput workload.
- A young collection runs once 20,000 more container objects are alive than at the last one,
  not CPython's 700. A worker's passes keep their objects (tasks, frames, their state) alive for
  the pass's life: at concurrency 100, 12,000-16,000 young objects alive while the passes run,
  none of them garbage. Each young collection walked them again and moved them to an older
  generation, whose collections then walked them too: ~190 young and ~17 middle collections per
  1,000 runs of that workload. Its engine makes little cyclic garbage (no more than a few hundred
  objects per 1,000 runs): what a young collection finds waits longer for it, at most 20,000
  objects, a few megabytes.

Measured on that workload (one process: 1,000 runs of 3 steps at concurrency 100, PostgreSQL,
alternated in the same minutes at load 9-10, 2026-12-07): the collector's CPU per 1,000 runs
84-94 ms → 0-4 ms; the event loop thread's CPU per run 0.35-0.38 → 0.26-0.29 ms, the writer
thread's 0.21-0.27 → 0.18-0.20 ms. ``gc.freeze`` alone: the collector's 37-50 ms, the loop's
0.32-0.38 ms (its young collections unchanged); the threshold at 10,000: 14-24 ms, 0.29-0.31 ms.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_OBJECTS = 20_000  # the young generation's threshold while a runner's worker runs


@contextmanager
def worker_collector() -> Iterator[None]:
    """For the block (a runner's worker, its app imported and its store opened): what exists
    is collected and frozen, and the young generation's threshold is ``YOUNG_OBJECTS``; the
    thresholds are put back after it. What it froze stays frozen (an unfreeze would hand every
    start-up object back to the next full collection)."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(before[0], YOUNG_OBJECTS), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
