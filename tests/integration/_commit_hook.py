"""Wrap a verb in every write transaction a store makes (``transaction()``, and the optimistic
ones and those committed on the event loop of a store that has them: PostgreSQL; its lone step
commits, made without a transaction's verbs, are then made as jobs), to count or refuse pass
commits, or to see leases."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from stepline.store.capabilities import OptimisticStore
from stepline.store.interface import LoneStepCommits, LoopCommits, Store, WouldBlock

CommitPass = Callable[[Any, float, Any], Any]
Verb = Callable[..., Any]


def hook_verb(store: Store, name: str, hook: Callable[[Verb], Verb]) -> None:
    """Every transaction's verb ``name`` becomes ``hook(that verb)``."""

    def hooked(transaction: Callable[[], Any]) -> Callable[[], Any]:
        @contextmanager
        def with_hook() -> Iterator[Any]:
            with transaction() as tx:
                setattr(tx, name, hook(getattr(tx, name)))
                yield tx

        return with_hook

    store.transaction = hooked(store.transaction)  # type: ignore[method-assign]
    if isinstance(store, OptimisticStore):
        optimistic = hooked(store.optimistic_transaction)
        store.optimistic_transaction = optimistic  # type: ignore[method-assign]
    if isinstance(store, LoopCommits):
        commit_on_loop = store.commit_on_loop
        hooked_txs: set[int] = set()  # the transactions whose verb is hooked (by id)

        def hooked_job(job: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def run(tx: Any) -> Any:
                if id(tx) not in hooked_txs:  # the batch's first job: hook its transaction
                    hooked_txs.add(id(tx))
                    setattr(tx, name, hook(getattr(tx, name)))
                return job(tx)

            return run

        async def on_loop(jobs: Sequence[Callable[[Any], Any]]) -> list[Any]:
            try:
                return await commit_on_loop([hooked_job(job) for job in jobs])
            finally:
                hooked_txs.clear()  # one transaction at a time: ids are not reused meanwhile

        store.commit_on_loop = on_loop  # type: ignore[method-assign]
    if isinstance(store, LoneStepCommits):  # its lone step commits: made as jobs, hooked

        async def as_jobs(commit: Any, now: float | None = None, loop: Any = None) -> bool:
            raise WouldBlock("a hooked store commits its lone steps as jobs")

        store.commit_steps_on_loop = as_jobs  # type: ignore[method-assign]


def hook_commit_pass(store: Store, hook: Callable[[CommitPass], CommitPass]) -> None:
    """Every transaction's ``commit_pass`` becomes ``hook(its commit_pass)``."""
    hook_verb(store, "commit_pass", hook)
