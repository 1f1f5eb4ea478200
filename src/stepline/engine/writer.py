"""Group commit: one writer thread turns whatever write jobs are pending into one transaction.

Jobs queue while a transaction is in flight; the next transaction takes them all (up to
``max_batch``). Each job's result is handed back only after its transaction committed, so nothing
is acknowledged before it is durable, and N concurrent runs share one fsync instead of paying N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from stepline.store.interface import Store, StoreTx

T = TypeVar("T")
Job = Callable[[StoreTx], Any]


class BatchWriter:
    """Serializes this process's writes to a Store and batches them into shared transactions."""

    def __init__(self, store: Store, max_batch: int = 512) -> None:
        self._store = store
        self._max_batch = max_batch
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepline-writer")
        self._pending: list[tuple[Job, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.transactions = 0
        self.jobs = 0

    async def write(self, job: Callable[[StoreTx], T]) -> T:
        """Run ``job(tx)`` in the next transaction; returns once that transaction committed.
        An exception raised by the job is raised here (the job's own changes are rolled back;
        the other jobs of the batch still commit)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((job, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await future

    def submit_sync(self, job: Callable[[StoreTx], T]) -> T:
        """Run a job from a thread with no event loop (own transaction, on the writer thread)."""
        return self._thread.submit(self._apply_one, job).result()

    def _apply_one(self, job: Callable[[StoreTx], T]) -> T:
        with self._store.transaction() as tx:
            return job(tx)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                outcomes = await loop.run_in_executor(
                    self._thread, self._apply, [job for job, _ in batch]
                )
            except BaseException as exc:  # the transaction itself failed: nothing committed
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _apply(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self._store.transaction() as tx:
            for job in jobs:
                try:
                    outcomes.append((True, job(tx)))
                except Exception as exc:
                    outcomes.append((False, exc))
        self.transactions += 1
        self.jobs += len(jobs)
        return outcomes

    def close(self) -> None:
        """Stop the writer thread (pending jobs are finished first)."""
        self._thread.shutdown(wait=True)
